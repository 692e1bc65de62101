"""Numba kernels on bit patterns: the fast path behind ``lp.round``, ``lp.encode``, ``lp.decode``.

Every input is first read as the bits of a *work* float W (float32 or float64, chosen in
``cast.py`` so that W holds every value of the target format exactly). A value |x| is
``sig * 2^(E - MW)``; the target grid there has quantum ``2^(max(E, EMIN) - meff)`` where
``meff`` is the mantissa width of the binade (``MB`` below ``EMIN``: MT with subnormals, 0
without). Dropping ``sh`` low bits of ``sig`` and deciding the increment from the dropped bits is
the whole rounding; the result's code magnitude is ``((Et - EMIN) << MT) + (q << (MT - meff)) +
CODE_BASE``, monotone in |x|, so overflow is one comparison. Integer arithmetic only: no float
operation can round twice.

The kernels read a ``lowprec.Plan``, packed by ``params(plan)`` into one int64 array ``P``
(indices below; it never leaves the core's kernel modules) so that one compiled kernel serves
every format; ``specialised`` bakes it in as constants for large arrays.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numba as nb
import numpy as np

U64 = np.uint64
I64 = np.int64

# rounding modes and stochastic variants (numbering shared with rounding.py)
RNE, RNA, RZ, UP, DOWN, ODD, SR = 0, 1, 2, 3, 4, 5, 6
SRFF, SRF, SRC, SRODD, SRNODD = 0, 1, 2, 3, 4

# indices into the parameter array P
(MW, BW, WSH, MT, EMIN, MB, CODE_BASE, MAXPOS, MAXNEG, KIND, SBIT, CMASK, NEGZ_OK,
 NAN_POS_C, NAN_NEG_C, NAN_POS_V, NAN_NEG_V,
 OVF_POS_C, OVF_NEG_C, OVF_POS_V, OVF_NEG_V,
 SAT_POS_C, SAT_NEG_C, SAT_POS_V, SAT_NEG_V,
 ZIN_C, ZIN_V, MIN_C, MIN_V, SUBQ_BITS, MODE, SRBITS, VARIANT, NPARAM) = range(34)
KIND_SIGNMAG, KIND_TWOS, KIND_UNSIGNED = 0, 1, 2
ERR = -1          # a special code of -1 means "this input cannot be represented": count it

MODE_IDS = {"nearest_even": RNE, "nearest_away": RNA, "toward_zero": RZ, "up": UP,
            "down": DOWN, "odd": ODD, "stochastic": SR}
VARIANT_IDS = {"srff": SRFF, "srf": SRF, "src": SRC, "sr_odd": SRODD,
               "sr_nearest_odd": SRNODD}
KIND_IDS = {"sign_magnitude": KIND_SIGNMAG, "twos_complement": KIND_TWOS,
            "unsigned": KIND_UNSIGNED}
_FIELDS = {  # parameter slot <- Plan field
    MW: "work_man_bits", BW: "work_bias", MT: "man_bits", EMIN: "emin", MB: "sub_man_bits",
    CODE_BASE: "code_base", MAXPOS: "max_code_pos", MAXNEG: "max_code_neg", SBIT: "sign_bit",
    NAN_POS_C: "nan_pos_code", NAN_NEG_C: "nan_neg_code", NAN_POS_V: "nan_pos_bits",
    NAN_NEG_V: "nan_neg_bits", OVF_POS_C: "overflow_pos_code", OVF_NEG_C: "overflow_neg_code",
    OVF_POS_V: "overflow_pos_bits", OVF_NEG_V: "overflow_neg_bits", SAT_POS_C: "max_pos_code",
    SAT_NEG_C: "max_neg_code", SAT_POS_V: "max_pos_bits", SAT_NEG_V: "max_neg_bits",
    ZIN_C: "zero_in_code", ZIN_V: "zero_in_bits", MIN_C: "min_code", MIN_V: "min_bits",
    SRBITS: "sr_bits"}


@lru_cache(maxsize=4096)
def params(plan) -> np.ndarray:
    """``plan`` (a ``lowprec.Plan``) packed into the int64 parameter array these kernels read;
    64-bit patterns are stored as the int64 with the same bits."""
    P = np.zeros(NPARAM, dtype=np.int64)
    for slot, name in _FIELDS.items():
        v = int(getattr(plan, name))
        P[slot] = v - (1 << 64) if v >= 1 << 63 else v
    P[WSH] = plan.work_bits - 1
    P[CMASK] = plan.code_mask if plan.code_mask < 1 << 63 else -1
    P[NEGZ_OK] = int(plan.neg_zero)
    P[KIND] = KIND_IDS[plan.kind]
    P[MODE], P[VARIANT] = MODE_IDS[plan.mode], VARIANT_IDS[plan.sr_variant]
    P[SUBQ_BITS] = np.array([math.ldexp(1.0, plan.subnormal_step_exp)]).view(np.int64)[0]
    P.setflags(write=False)
    return P

_OPTS = dict(nogil=True, cache=True, inline="always")


@nb.njit(**_OPTS)
def _sr_decide(D, R, r, variant):
    """Stochastic rounding decision (docs/rounding.md). ``D``: the discarded fraction d as 0.64
    fixed point (bit 0 sticky), ``R``: r uniform random bits. True = round away from zero."""
    if variant == SRFF:
        if r == 64:
            return D + R < D                       # carry out of 64 bits
        t = D >> U64(64 - r)
        return t + R >= (U64(1) << U64(r))
    if variant == SRF:
        t2 = D >> U64(63 - r)
        return t2 + U64(2) * R + U64(1) >= (U64(1) << U64(r + 1))
    k = U64(64 - r)
    t = D >> k
    rr = D & ((U64(1) << k) - U64(1))
    if variant == SRC or variant == SRNODD:        # round d to r bits, nearest; a tie to
        h = U64(1) << (k - U64(1))                 # even (src) / odd (sr_nearest_odd)
        if rr > h or (rr == h and (t & U64(1)) == (U64(1) if variant == SRC else U64(0))):
            t += U64(1)
    else:                                          # SR-odd: round d to r bits, to odd
        if rr != U64(0):
            t |= U64(1)
    return t + R >= (U64(1) << U64(r))


@nb.njit(**_OPTS)
def _overflow(s, away, P):
    """(code, value bits) of an overflow: toward Inf (or what the policy puts there) when the
    rounding went away from zero, else the largest finite value (IEEE 754 §7.4)."""
    if away:
        if s:
            return P[OVF_NEG_C], P[OVF_NEG_V]
        return P[OVF_POS_C], P[OVF_POS_V]
    if s:
        return P[SAT_NEG_C], P[SAT_NEG_V]
    return P[SAT_POS_C], P[SAT_POS_V]


@nb.njit(**_OPTS)
def _rounds_away(s, mode):
    """True if ``mode`` moves a value of sign ``s`` away from zero when it overflows."""
    return mode == RNE or mode == RNA or mode == SR or (mode == UP and s == 0) or (
        mode == DOWN and s == 1)


@nb.njit(**_OPTS)
def _special_input(s, is_nan, P):
    """(code, value bits) for a NaN or +-Inf input (Inf is an overflow away from zero)."""
    if not is_nan:
        return _overflow(s, True, P)
    if s:
        return P[NAN_NEG_C], P[NAN_NEG_V]
    return P[NAN_POS_C], P[NAN_POS_V]


@nb.njit(**_OPTS)
def _round_bits(ub, rw, P):
    """Round one input (W bits ``ub`` as int64, random word ``rw`` as uint64) to the format
    described by ``P``. Returns (code, W bits of the value); code ERR if not representable."""
    mw = P[MW]
    s = (ub >> P[WSH]) & 1
    a = ub & ((I64(1) << P[WSH]) - 1)
    winf = ((I64(1) << (P[WSH] - mw)) - 1) << mw
    if a >= winf:
        return _special_input(s, a > winf, P)
    ew = a >> mw
    sig = (a & ((I64(1) << mw) - 1)) | (I64(ew != 0) << mw)
    E = max(ew, I64(1)) - P[BW]
    Et, below, meff = _grid(E, P)
    if ew == 0 and E <= P[EMIN]:        # a work-type subnormal lies below 2^EMIN as well
        below, meff = True, P[MB]
    sh = mw - meff + (Et - E)
    if sh < 64:
        q = sig >> sh
        rem = sig & ((I64(1) << sh) - 1)
        D = U64(rem) << U64(64 - sh) if rem != 0 else U64(0)
    else:
        q = I64(0)
        k = min(sh - 64, I64(63))
        D = (U64(sig) >> U64(k)) | U64((sig & ((I64(1) << k) - 1)) != 0)
    return _finish(s, q, D, Et, below, meff, a == 0, rw, P)


@nb.njit(**_OPTS)
def _grid(E, P):
    """Where a value with exponent ``E`` (2^E <= |v| < 2^(E+1)) falls on the format's grid:
    (grid exponent Et = max(E, EMIN), below the normal range?, mantissa bits kept there);
    the quantum is 2^(Et - meff)."""
    emin = P[EMIN]
    below = E < emin
    return max(E, emin), below, (P[MB] if below else P[MT])


@nb.njit(**_OPTS)
def _finish(s, q, D, Et, below, meff, zero_in, rw, P):
    """Round |v| = (q + d) * 2^(Et - meff) of sign ``s`` (the grid of ``_grid``), with the
    discarded fraction d given as 0.64 fixed point ``D`` (bit 0 sticky: any further nonzero
    bit sets it). ``zero_in``: v is exactly 0. Returns (code, W bits of the value)."""
    emin = P[EMIN]
    mode = P[MODE]
    inc = False
    if D != 0:
        half = U64(1) << U64(63)
        if mode == RNE:
            inc = D > half or (D == half and (q & 1) == 1)
        elif mode == RNA:
            inc = D >= half
        elif mode == UP:
            inc = s == 0
        elif mode == DOWN:
            inc = s == 1
        elif mode == ODD:
            inc = (q & 1) == 0
        elif mode == SR:
            r = P[SRBITS]
            R = rw if r == 64 else rw & ((U64(1) << U64(r)) - U64(1))
            inc = _sr_decide(D, R, r, P[VARIANT])
    q += I64(inc)
    cm = ((Et - emin) << P[MT]) + (q << (P[MT] - meff)) + P[CODE_BASE]
    maxm = P[MAXNEG] if s else P[MAXPOS]
    if cm > maxm or (s == 1 and maxm < 0):
        return _overflow(s, _rounds_away(s, mode), P)
    if cm <= 0:
        if cm < 0 or P[CODE_BASE] < 0:                   # format without zero (E8M0)
            if zero_in:
                return P[ZIN_C], P[ZIN_V]
            return P[MIN_C], P[MIN_V]
        neg = s == 1 and P[NEGZ_OK] == 1
        return (I64(1) << P[SBIT]) if neg else I64(0), (I64(1) << P[WSH]) if neg else I64(0)
    mw = P[MW]
    if below:                                        # q * 2^(EMIN - MB), exact
        v = np.float64(q) * np.int64(P[SUBQ_BITS]).view(np.float64)
        vb = np.float64(v).view(np.int64) if mw == 52 else I64(np.float32(v).view(np.int32))
    else:
        vb = ((Et + P[BW] - 1) << mw) + (q << (mw - P[MT]))
    kind = P[KIND]
    if kind == KIND_TWOS:
        code = ((-cm) & P[CMASK]) if s else cm
    else:
        code = cm | (s << P[SBIT]) if kind == KIND_SIGNMAG else cm
    return code, vb | (s << P[WSH])


U32 = np.uint32


@nb.njit(cache=True, inline="always")
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al., SC'11), the generator of Triton's ``tl.randint``: key
    (k0, k1), counter (c0..c3), all uint32; returns the four output words. Each round:
    (hi0, lo0) = 0xD2511F53 * c0, (hi1, lo1) = 0xCD9E8D57 * c2,
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0), then the key grows by (0x9E3779B9, 0xBB67AE85).
    Kept in 32-bit lanes (one 32x32->64 multiply each) so that loops over it vectorise."""
    for _ in range(10):
        p0 = U64(U32(0xD2511F53)) * U64(c0)
        p1 = U64(U32(0xCD9E8D57)) * U64(c2)
        c0, c1, c2, c3 = (U32(U32(p1 >> U64(32)) ^ c1 ^ k0), U32(p1),
                          U32(U32(p0 >> U64(32)) ^ c3 ^ k1), U32(p0))
        k0 = U32(k0 + U32(0x9E3779B9))
        k1 = U32(k1 + U32(0xBB67AE85))
    return c0, c1, c2, c3


@nb.njit(cache=True, inline="always")
def _philox_block(seed, q):
    """The four words of Philox4x32-10 at counter (q_lo, q_hi, 0, 0), key (seed_lo, seed_hi):
    stream words 4q .. 4q+3 of ``seed`` (Triton's ``tl.randint4x(seed, q)``)."""
    return philox4x32(U32(q), U32(U64(q) >> U64(32)), U32(0), U32(0),
                      U32(seed), U32(U64(seed) >> U64(32)))


@nb.njit(cache=True, inline="always")
def _seed_word(seed, index, wide):
    """Random word of element ``index`` for ``seed`` (``lowprec.rounding``): stream word
    ``index`` (word index % 4 of the Philox block at counter index // 4); when ``wide``, stream
    words 2 index (low half) and 2 index + 1 (high half), i.e. words 2j, 2j + 1 (j = index % 2)
    of the block at counter index // 2. One element at a time (the vectorised paths fill four
    words per block, ``fill_words``)."""
    if wide:
        w0, w1, w2, w3 = _philox_block(seed, U64(index) >> U64(1))
        if U64(index) & U64(1):
            return U64(w2) | (U64(w3) << U64(32))
        return U64(w0) | (U64(w1) << U64(32))
    w0, w1, w2, w3 = _philox_block(seed, U64(index) >> U64(2))
    j = U64(index) & U64(3)
    w = w0 if j == U64(0) else (w1 if j == U64(1) else (w2 if j == U64(2) else w3))
    return U64(w)


@nb.njit(cache=True, inline="always")
def fill_words(seed, start, n, wide, buf):
    """``buf[i] = _seed_word(seed, start + i, wide)`` for i < n, one Philox block per four
    32-bit stream words (``start`` a multiple of 4)."""
    per = 2 if wide else 4                        # elements per Philox block
    q0 = U64(start // per)
    for q in range(n // per):                     # whole blocks: no branches, vectorises
        w0, w1, w2, w3 = _philox_block(seed, q0 + U64(q))
        if wide:
            buf[2 * q] = U64(w0) | (U64(w1) << U64(32))
            buf[2 * q + 1] = U64(w2) | (U64(w3) << U64(32))
        else:
            buf[4 * q] = w0
            buf[4 * q + 1] = w1
            buf[4 * q + 2] = w2
            buf[4 * q + 3] = w3
    for i in range(n - n % per, n):               # the tail
        buf[i] = _seed_word(seed, start + i, wide)


@nb.njit(cache=True, parallel=True)
def round_array(xb, P, rsrc, rbits, seed, offset, want_code, out, errs):
    """Round every element of ``xb`` (W bits, 1-D). ``rsrc``: 0 no random bits, 1 ``rbits``
    (same length), 2 Philox from ``seed`` at flat index ``offset + i``. Writes codes
    (``want_code``) or W bits into ``out``; counts unrepresentable inputs into ``errs[0]``."""
    n = xb.shape[0]
    wide = P[SRBITS] > 32                  # 64-bit random words
    nerr = 0
    for i in nb.prange(n):
        rw = U64(0)
        if rsrc == 1:
            rw = U64(rbits[i])
        elif rsrc == 2:
            rw = _seed_word(seed, offset + i, wide)
        code, vb = _round_bits(I64(xb[i]), rw, P)
        if code == ERR:
            nerr += 1
        out[i] = code if want_code else vb
    errs[0] = nerr


@nb.njit(nogil=True, cache=True, inline="always")
def _random_word(rsrc, rbits, seed, i, wide):
    """Element i's random word: ``rbits[i]`` (rsrc 1), the seeded stream's (rsrc 2), or 0."""
    if rsrc == 1:
        return U64(rbits[i])
    if rsrc == 2:
        return _seed_word(seed, i, wide)
    return U64(0)


@nb.njit(nogil=True, cache=True)
def round_one(b, rw, P):
    """``_round_bits`` behind a call (not inlined): one compiled copy serves every kernel's
    general path (Inf, NaN, the rare inputs the vectorised kernels leave), which keeps their
    compile times down."""
    return _round_bits(b, rw, P)


@nb.njit(cache=True, parallel=True)
def random_words(seed, offset, n, wide, out):
    """The random words the seeded generator gives elements ``offset .. offset+n-1``."""
    for i in nb.prange(n):
        out[i] = _seed_word(seed, offset + i, wide)


# ---- table formats (tapered: HiFloat8) ------------------------------------------------------

@nb.njit(**_OPTS)
def _round_table(ub, rw, TV, TC, P):
    """Round float64 bits ``ub`` to a table format. ``TV``: float64 bits (as int64) of the
    non-negative finite values ascending, then the overflow value; ``TC``: their codes.
    Ties to even/odd look at the code's last bit. Same P layout for specials and mode."""
    s = (ub >> 63) & 1
    a = ub & ((I64(1) << 63) - 1)
    winf = I64(0x7FF) << 52
    if a >= winf:
        return _special_input(s, a > winf, P)
    n = TV.shape[0] - 1                       # finite values; TV[n] is the overflow value
    j = np.searchsorted(TV, a, side="right") - 1
    mode = P[MODE]
    pick = j
    if j >= n:
        pick = n                              # at or beyond the overflow value
    elif TV[j] != a:
        lo = np.int64(TV[j]).view(np.float64)
        hi = np.int64(TV[j + 1]).view(np.float64)
        x = np.int64(a).view(np.float64)
        mid = (lo + hi) * 0.5
        up = False
        if mode == RNE:
            up = x > mid or (x == mid and (TC[j] & 1) == 1)
        elif mode == RNA:
            up = x >= mid
        elif mode == UP:
            up = s == 0
        elif mode == DOWN:
            up = s == 1
        elif mode == ODD:
            up = (TC[j] & 1) == 0
        elif mode == SR:
            f = (x - lo) / (hi - lo) * 18446744073709551616.0
            D = U64(f) if f < 18446744073709551616.0 else U64(0xFFFFFFFFFFFFFFFF)
            if f < 9007199254740992.0 and np.float64(D) != f:
                D |= U64(1)
            r = P[SRBITS]
            R = rw if r == 64 else rw & ((U64(1) << U64(r)) - U64(1))
            up = _sr_decide(D, R, r, P[VARIANT])
        if up:
            pick = j + 1
    if pick >= n:
        return _overflow(s, _rounds_away(s, mode), P)
    code = TC[pick]
    vb = TV[pick]
    if vb == 0:
        neg = s == 1 and P[NEGZ_OK] == 1
        return (code | (I64(1) << P[SBIT])) if neg else code, (I64(1) << 63) if neg else I64(0)
    return code | (s << P[SBIT]), vb | (s << 63)


@nb.njit(cache=True, parallel=True)
def round_table_array(xb, TV, TC, P, rsrc, rbits, seed, offset, want_code, out, errs):
    """``round_array`` for table formats (float64 work type)."""
    n = xb.shape[0]
    nerr = 0
    for i in nb.prange(n):
        rw = U64(0)
        if rsrc == 1:
            rw = U64(rbits[i])
        elif rsrc == 2:
            rw = _seed_word(seed, offset + i, P[SRBITS] > 32)
        code, vb = _round_table(I64(xb[i]), rw, TV, TC, P)
        if code == ERR:
            nerr += 1
        out[i] = code if want_code else vb
    errs[0] = nerr


@nb.njit(cache=True, parallel=True)
def decode_array(codes, lut, out):
    """Decode by table lookup: ``out[i] = lut[codes[i]]`` (formats of at most 16 bits)."""
    for i in nb.prange(codes.shape[0]):
        out[i] = lut[codes[i]]


# ---- specialised kernels: the same _round_bits with P frozen as compile-time constants ------

_SPECIALISED = {}


def specialised(P, rsrc, want_code):
    """``round_array`` for one parameter set: ``P`` becomes a tuple of constants, so the mode
    and format branches fold away and the loop vectorises. Same scalar code, same outputs
    (``kernel(xb, rbits, seed, out, errs)``). Compiled on first use (and cached on disk)."""
    key = (tuple(int(v) for v in P), int(rsrc), bool(want_code))
    fn = _SPECIALISED.get(key)
    if fn is None:
        fn = _build_specialised(*key)
        _SPECIALISED[key] = fn
    return fn


def _build_specialised(PT, rsrc, want_code):
    wide = PT[SRBITS] > 32

    @nb.njit(cache=True, parallel=True)
    def kernel(xb, rbits, seed, out, errs):
        nerr = 0
        for i in nb.prange(xb.shape[0]):
            rw = U64(0)
            if rsrc == 1:
                rw = U64(rbits[i])
            elif rsrc == 2:
                rw = _seed_word(seed, i, wide)
            code, vb = _round_bits(I64(xb[i]), rw, PT)
            nerr += code == ERR
            if want_code:
                out[i] = code
            else:
                out[i] = vb
        errs[0] = nerr
    return kernel
