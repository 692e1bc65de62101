"""The core's rounding step as a Triton device function on uint32 lanes (float32 work type):
``lowprec_jax._round.round_bits_impl`` (and ``lowprec.xstep``) line for line, reading the
rounding plan (``lowprec.Plan``) as a constexpr tuple that ``kernel_params`` fills by field
name, so each format and mode compiles to its own branch-free code. Integer bit operations only (the Triton interpreter's float8/bfloat16
casts are wrong), every constant typed, every shift amount kept below 32.
"""
from __future__ import annotations

import triton
import triton.language as tl

# the slots of kernel_params' tuple and the mode numbers, as constexpr globals for Triton
MW = tl.constexpr(0)
BW = tl.constexpr(1)
MT = tl.constexpr(3)
EMIN = tl.constexpr(4)
MB = tl.constexpr(5)
CODE_BASE = tl.constexpr(6)
MAXPOS = tl.constexpr(7)
MAXNEG = tl.constexpr(8)
KIND = tl.constexpr(9)
SBIT = tl.constexpr(10)
CMASK = tl.constexpr(11)
NEGZ_OK = tl.constexpr(12)
NAN_POS_C = tl.constexpr(13)
NAN_NEG_C = tl.constexpr(14)
NAN_POS_V = tl.constexpr(15)
NAN_NEG_V = tl.constexpr(16)
OVF_POS_C = tl.constexpr(17)
OVF_NEG_C = tl.constexpr(18)
OVF_POS_V = tl.constexpr(19)
OVF_NEG_V = tl.constexpr(20)
SAT_POS_C = tl.constexpr(21)
SAT_NEG_C = tl.constexpr(22)
SAT_POS_V = tl.constexpr(23)
SAT_NEG_V = tl.constexpr(24)
ZIN_C = tl.constexpr(25)
ZIN_V = tl.constexpr(26)
MIN_C = tl.constexpr(27)
MIN_V = tl.constexpr(28)
SUBQ_EXP = tl.constexpr(29)      # replaced by the subnormal quantum's exponent (see prepare)
MODE = tl.constexpr(30)
SRBITS = tl.constexpr(31)
VARIANT = tl.constexpr(32)
RNE = tl.constexpr(0)
RNA = tl.constexpr(1)
UP = tl.constexpr(3)
DOWN = tl.constexpr(4)
ODD = tl.constexpr(5)
SR = tl.constexpr(6)
SRFF = tl.constexpr(0)
SRF = tl.constexpr(1)
SRC = tl.constexpr(2)
SRNODD = tl.constexpr(4)
KIND_SIGNMAG = tl.constexpr(0)
KIND_TWOS = tl.constexpr(1)


_SLOTS = (  # slot -> Plan field (slots 2 and 11 unused: the work type is float32)
    "work_man_bits", "work_bias", None, "man_bits", "emin", "sub_man_bits", "code_base",
    "max_code_pos", "max_code_neg", "kind", "sign_bit", "code_mask", "neg_zero",
    "nan_pos_code", "nan_neg_code", "nan_pos_bits", "nan_neg_bits", "overflow_pos_code",
    "overflow_neg_code", "overflow_pos_bits", "overflow_neg_bits", "max_pos_code",
    "max_neg_code", "max_pos_bits", "max_neg_bits", "zero_in_code", "zero_in_bits",
    "min_code", "min_bits", "subnormal_step_exp", "mode", "sr_bits", "sr_variant")
_IDS = {"nearest_even": 0, "nearest_away": 1, "toward_zero": 2, "up": 3, "down": 4, "odd": 5,
        "stochastic": 6, "srff": 0, "srf": 1, "src": 2, "sr_odd": 3, "sr_nearest_odd": 4,
        "sign_magnitude": 0,
        "twos_complement": 1, "unsigned": 2}


def kernel_params(plan):
    """The rounding plan (float32 work type) as the constexpr tuple the kernels here read
    through the named slots above."""
    if plan.work_bits != 32:
        raise ValueError(f"the Triton kernels use a float32 work type; {plan.format} needs "
                         "float64")
    out = []
    for name in _SLOTS:
        v = 0 if name is None else getattr(plan, name)
        out.append(_IDS[v] if isinstance(v, str) else int(v))
    return tuple(out)


@triton.jit
def _u(v):
    """A constant as uint32 (two's complement for negative ints)."""
    return tl.full((1,), v & 0xFFFFFFFF, tl.uint32)


@triton.jit
def _shr(x, k):
    """x >> k (uint32 x, int32 k >= 0), 0 when k >= 32."""
    kk = tl.minimum(tl.maximum(k, 0), 31).to(tl.uint32)
    return tl.where(k >= 32, _u(0), x >> kk)


@triton.jit
def _shl(x, k):
    """x << k (uint32 x, int32 k >= 0), 0 when k >= 32."""
    kk = tl.minimum(tl.maximum(k, 0), 31).to(tl.uint32)
    return tl.where(k >= 32, _u(0), x << kk)


@triton.jit
def _mask(k):
    """The low k bits set (0 <= k <= 32), uint32."""
    return tl.where(k >= 32, _u(0xFFFFFFFF), _shl(_u(1), k) - _u(1))


@triton.jit
def _gt(ah, al, bh, bl):
    return (ah > bh) | ((ah == bh) & (al > bl))


@triton.jit
def _shr64(h, l, k):
    """(h, l) >> k for 0 <= k (per element), on uint32 halves."""
    hk = _shr(h, k)
    lk = _shr(l, k) | _shl(h, 32 - k)
    lk = tl.where(k == 0, l, lk)
    lk = tl.where(k >= 32, _shr(h, k - 32), lk)
    return tl.where(k >= 64, _u(0), hk), tl.where(k >= 64, _u(0), lk)


@triton.jit
def _low64(h, l, k):
    lo = tl.where(k >= 32, l, l & _mask(k))
    hi = tl.where(k >= 32, h & _mask(k - 32), _u(0))
    return hi, lo


@triton.jit
def _sum_reaches(th, tl_, Rh, Rl, r: tl.constexpr):
    """t + R >= 2^r for 64-bit pairs t, R < 2^r (r <= 33)."""
    lo = tl_ + Rl
    carry = (lo < tl_).to(tl.uint32)
    hi = th + Rh + carry
    if r >= 32:
        return hi >= _u(1 << (r - 32))
    else:
        return (hi != _u(0)) | (lo >= _u(1 << r))


@triton.jit
def _sr_decide(Dh, Dl, Rh, Rl, r: tl.constexpr, variant: tl.constexpr):
    """``_sr_decide`` (lowprec/_kernels.py) for r <= 32 random bits on (hi, lo) pairs."""
    zero = (Dh * 0).to(tl.int32)
    Rh, Rl = _low64(Rh, Rl, zero + r)
    if variant == SRFF:
        th, tl_ = _shr64(Dh, Dl, zero + (64 - r))
        up = _sum_reaches(th, tl_, Rh, Rl, r)
    elif variant == SRF:
        th, tl_ = _shr64(Dh, Dl, zero + (63 - r))
        R2h = (Rh << 1) | (Rl >> 31)
        R2l = (Rl << 1) | _u(1)
        up = _sum_reaches(th, tl_, R2h, R2l, r + 1)
    else:
        th, tl_ = _shr64(Dh, Dl, zero + (64 - r))
        rh, rl = _low64(Dh, Dl, zero + (64 - r))
        if variant == SRC or variant == SRNODD:     # nearest; a tie to even / odd
            k: tl.constexpr = 64 - r
            if k - 1 >= 32:
                hh = _u(1 << (k - 33))
                hl = _u(0)
            else:
                hh = _u(0)
                hl = _u(1 << (k - 1))
            odd_tie: tl.constexpr = 1 if variant == SRC else 0
            inc = _gt(rh, rl, hh, hl) | ((rh == hh) & (rl == hl) &
                                         ((tl_ & _u(1)) == _u(odd_tie)))
            t2 = tl_ + inc.to(tl.uint32)
            th = th + (t2 < tl_).to(tl.uint32)
            tl_ = t2
        else:
            tl_ = tl_ | ((rh | rl) != _u(0)).to(tl.uint32)
        up = _sum_reaches(th, tl_, Rh, Rl, r)
    return up


@triton.jit
def _msb_step(q, m, s: tl.constexpr):
    """One step of the leading-one binary search (any unsigned width)."""
    t = q >> s
    c = t != 0
    return tl.where(c, t, q), m + c.to(tl.int32) * s


@triton.jit
def _msb_below32(q, m):
    """m + the index of the leading one of q < 2^32 (the steps 16, 8, 4, 2, 1)."""
    q, m = _msb_step(q, m, 16)
    q, m = _msb_step(q, m, 8)
    q, m = _msb_step(q, m, 4)
    q, m = _msb_step(q, m, 2)
    q, m = _msb_step(q, m, 1)
    return m


@triton.jit
def _msb(q):
    """Index of the leading one of uint32 q > 0 (0 for q = 0), int32: binary search."""
    return _msb_below32(q, (q * 0).to(tl.int32))


@triton.jit
def _pow2_bits(q, s: tl.constexpr):
    """float32 bits of q * 2^s for integers 0 <= q < 2^31 whose product is a float32 value."""
    msb = _msb(q)
    e = msb + s
    norm = ((e + 127).to(tl.uint32) << 23) | (_shl(q, 23 - msb) & _u(0x7FFFFF))
    sub = _shl(q, (msb * 0) + (s + 126 + 23))
    return tl.where(q == _u(0), _u(0), tl.where(e >= -126, norm, sub))


@triton.jit
def _overflow(neg, away, P: tl.constexpr):
    code = tl.where(away, tl.where(neg, _u(P[OVF_NEG_C]), _u(P[OVF_POS_C])),
                    tl.where(neg, _u(P[SAT_NEG_C]), _u(P[SAT_POS_C])))
    val = tl.where(away, tl.where(neg, _u(P[OVF_NEG_V]), _u(P[OVF_POS_V])),
                   tl.where(neg, _u(P[SAT_NEG_V]), _u(P[SAT_POS_V])))
    return code, val


@triton.jit
def round_bits(ub, Rh, Rl, P: tl.constexpr):
    """(code, value bits) of float32 bits ``ub`` (uint32) rounded as P says; the code is
    0xFFFFFFFF where the core would raise. Rh, Rl: random words (uint32 halves)."""
    mw: tl.constexpr = P[MW]
    bw: tl.constexpr = P[BW]
    mt: tl.constexpr = P[MT]
    emin: tl.constexpr = P[EMIN]
    mb: tl.constexpr = P[MB]
    neg = (ub >> 31) == _u(1)
    a = ub & _u(0x7FFFFFFF)
    winf: tl.constexpr = ((1 << (31 - mw)) - 1) << mw
    special = a >= _u(winf)
    isnan = a > _u(winf)
    ew = (a >> mw).to(tl.int32)
    sig = (a & _u((1 << mw) - 1)) | ((ew != 0).to(tl.uint32) << mw)
    E = tl.maximum(ew, 1) - bw
    below = (E < emin) | ((ew == 0) & (E <= emin))    # a work-type subnormal is below too
    Et = tl.maximum(E, emin)
    meff = tl.where(below, mb, mt)
    sh = mw - meff + (Et - E)
    q = _shr(sig, sh).to(tl.int32)
    rem = sig & _mask(tl.minimum(sh, 32))
    hi = tl.where(sh <= 32, _shl(rem, 32 - sh), _shr(sig, sh - 32))
    lo = tl.where((sh > 32) & (sh < 64), _shl(sig, 64 - sh), _u(0))
    k = tl.minimum(sh - 64, 63)
    deep = _shr(sig, k) | ((sig & _mask(tl.minimum(tl.maximum(k, 0), 32))) != _u(0)).to(
        tl.uint32)
    Dh = tl.where(sh >= 64, _u(0), hi)
    Dl = tl.where(sh >= 64, deep, lo)
    return _finish(neg, a == _u(0), special, isnan, q, Dh, Dl, Et, below, meff, Rh, Rl, P)


@triton.jit
def _finish(neg, a_zero, special, isnan, q, Dh, Dl, Et, below, meff, Rh, Rl, P: tl.constexpr):
    """``_finish`` (lowprec/_kernels.py) and the special inputs: round |v| = (q + D) * 2^(Et -
    meff) of sign ``neg``; (code, float32 value bits)."""
    mw: tl.constexpr = 23
    bw: tl.constexpr = P[BW]
    mt: tl.constexpr = P[MT]
    emin: tl.constexpr = P[EMIN]
    mode: tl.constexpr = P[MODE]
    nz = (Dh | Dl) != _u(0)
    if mode == RNE:
        inc = _gt(Dh, Dl, _u(1 << 31), _u(0)) | ((Dh == _u(1 << 31)) & (Dl == _u(0)) & (
            (q & 1) == 1))
    elif mode == RNA:
        inc = Dh >= _u(1 << 31)
    elif mode == UP:
        inc = nz & (~neg)
    elif mode == DOWN:
        inc = nz & neg
    elif mode == ODD:
        inc = nz & ((q & 1) == 0)
    elif mode == SR:
        inc = nz & _sr_decide(Dh, Dl, Rh, Rl, P[SRBITS], P[VARIANT])
    else:
        inc = nz & (q < 0)                                 # toward zero: never
    q = q + inc.to(tl.int32)
    cm = ((Et - emin).to(tl.int64) << mt) + (q.to(tl.int64) << (mt - meff)) + P[CODE_BASE]
    maxm = tl.where(neg, P[MAXNEG], P[MAXPOS])
    ovf = (cm > maxm) | (neg & (maxm < 0))
    if mode == RNE or mode == RNA or mode == SR:
        away = neg | (~neg)
    elif mode == UP:
        away = ~neg
    elif mode == DOWN:
        away = neg
    else:
        away = neg & (~neg)
    vb_sub = _pow2_bits(q.to(tl.uint32), P[SUBQ_EXP])
    vb_norm = (((Et + bw - 1) << mw) + (q << (mw - mt))).to(tl.uint32)
    vb = tl.where(below, vb_sub, vb_norm) | (neg.to(tl.uint32) << 31)
    if P[KIND] == KIND_TWOS:
        code = tl.where(neg, (-cm) & P[CMASK], cm).to(tl.uint32)
    elif P[KIND] == KIND_SIGNMAG:
        code = cm.to(tl.uint32) | (neg.to(tl.uint32) << P[SBIT])
    else:
        code = cm.to(tl.uint32)
    zero = cm <= 0
    nozero = (cm < 0) | (P[CODE_BASE] < 0)
    negz = neg & (P[NEGZ_OK] == 1)
    z_code = tl.where(nozero, tl.where(a_zero, _u(P[ZIN_C]), _u(P[MIN_C])),
                      tl.where(negz, _u(1 << P[SBIT]), _u(0)))
    z_val = tl.where(nozero, tl.where(a_zero, _u(P[ZIN_V]), _u(P[MIN_V])),
                     tl.where(negz, _u(1 << 31), _u(0)))
    code = tl.where(zero, z_code, code)
    vb = tl.where(zero, z_val, vb)
    oc, ov = _overflow(neg, away, P)
    code = tl.where(ovf, oc, code)
    vb = tl.where(ovf, ov, vb)
    sc, sv = _overflow(neg, neg | (~neg), P)
    nc = tl.where(neg, _u(P[NAN_NEG_C]), _u(P[NAN_POS_C]))
    nv = tl.where(neg, _u(P[NAN_NEG_V]), _u(P[NAN_POS_V]))
    code = tl.where(special, tl.where(isnan, nc, sc), code)
    vb = tl.where(special, tl.where(isnan, nv, sv), vb)
    return code, vb


@triton.jit
def msb64(m):
    """Index of the leading one of uint64 m > 0 (0 for m = 0), int32: binary search."""
    m, r = _msb_step(m, (m * 0).to(tl.int32), 32)
    return _msb_below32(m, r)


@triton.jit
def round_int(neg, mag, x, P: tl.constexpr):
    """(code, float32 value bits) of +-mag * 2^x rounded once as P says (deterministic
    modes), for integers 0 <= mag < 2^63 (uint64) and int32 exponents x."""
    emin: tl.constexpr = P[EMIN]
    mb: tl.constexpr = P[MB]
    mt: tl.constexpr = P[MT]
    msb = msb64(mag)
    E = tl.where(mag == 0, -2000, tl.minimum(tl.maximum(msb + x, -2000), 1000))  # leading bit
    below = E < emin
    Et = tl.maximum(E, emin)
    meff = tl.where(below, mb, mt)
    sh = msb - meff + (Et - E)                                 # bits of mag to discard
    shc = tl.minimum(tl.maximum(sh, 0), 63).to(tl.uint64)
    q = tl.where(sh >= 0, tl.where(sh >= 64, mag * 0, mag >> shc),
                 mag << tl.minimum(tl.maximum(-sh, 0), 63).to(tl.uint64))
    one = mag * 0 + 1
    low = mag & ((one << shc) - one)                           # the discarded bits (sh < 64)
    D = tl.where(sh <= 0, mag * 0, tl.where(
        sh < 64, low << (64 - tl.minimum(tl.maximum(sh, 1), 63)).to(tl.uint64),
        (mag >> tl.minimum(sh - 64, 63).to(tl.uint64)) | (
            (mag & ((one << tl.minimum(sh - 64, 63).to(tl.uint64)) - one)) != 0).to(tl.uint64)))
    D = tl.where((sh > 0) & (sh < 64) & (low == 0), mag * 0, D)
    Dh = (D >> 32).to(tl.uint32)
    Dl = (D & 0xFFFFFFFF).to(tl.uint32)
    f = neg & (~neg)
    return _finish(neg, mag == 0, f, f, q.to(tl.int32), Dh, Dl, Et, below, meff, Dh, Dl, P)


@triton.jit
def seed_words(i, seed_lo, seed_hi):
    """The core's seeded word of flat index ``i`` (int32, < 2^31; ``lowprec.rounding``):
    word i % 4 of Philox4x32-10 at counter (i // 4, 0, 0, 0), key (seed_lo, seed_hi), in the
    kernel (each lane runs the block of its four; ``tl.umulhi`` for the high products)."""
    q = (i // 4).to(tl.uint32)
    z = q & _u(0)
    c0, c1, c2, c3 = q, z, z, z
    k0 = z + seed_lo.to(tl.uint32)
    k1 = z + seed_hi.to(tl.uint32)
    for _ in tl.static_range(10):
        h0 = tl.umulhi(c0, _u(0xD2511F53))
        l0 = c0 * _u(0xD2511F53)
        h1 = tl.umulhi(c2, _u(0xCD9E8D57))
        l1 = c2 * _u(0xCD9E8D57)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = k0 + _u(0x9E3779B9)
        k1 = k1 + _u(0xBB67AE85)
    j = i % 4
    return tl.where(j == 0, c0, tl.where(j == 1, c1, tl.where(j == 2, c2, c3)))
