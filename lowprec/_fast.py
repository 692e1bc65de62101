"""The vectorised rounding loop for signed, sign-magnitude float formats with a zero.

The same answers as ``_kernels._round_bits`` (the tests compare every path with the oracle),
computed without per-element variable shifts or branches, so that LLVM emits SIMD code:

* normal range (|x| >= 2^EMIN): the format keeps MT of the work type's MW fraction bits, so
  the discarded part of the bits ``a`` of |x| is ``a & (2^D - 1)`` with the constant
  ``D = MW - MT``; adding ``inc << D`` to the truncated bits carries into the exponent
  exactly as a rounded value must, and overflow is one comparison with the largest value.
* subnormal range (|x| < 2^EMIN): the quantum is the constant ``Q = 2^(EMIN - MB)``. With
  ``C = Q * 2^MW`` the sum ``|x| + C`` lies in [C, 2C], a binade whose spacing is Q, so one
  IEEE addition rounds |x| to a multiple of Q (ties to even) and ``(|x| + C) - C`` is exact;
  the floor ``t`` follows by one comparison, the discarded part ``|x| - t`` is exact
  (Sterbenz), and ``t / Q`` is the fraction field of ``t + C``. Stochastic decisions there
  take ``floor(d * 2^32)`` from ``(|x| - t) * 2^(32 - log2 Q)``, exact in float32.

Inf and NaN inputs (and float64 inputs below 2^EMIN under stochastic rounding) go through
the general kernel, one chunk of ``CHUNK`` elements at a time, only where a chunk holds any.
Parameters: the array ``P`` of ``cast._params``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
from numba.extending import intrinsic

from ._kernels import (BW, EMIN, ERR, MB, MODE, MT, MW, NEGZ_OK, ODD, RNA, RNE, SBIT, SR, SRBITS,
                       SRFF, UP, DOWN, VARIANT, WSH, MAXPOS, _overflow, _rounds_away,
                       _sr_decide, fill_words, round_one)

U64 = np.uint64
I64 = np.int64


@intrinsic
def _as(typingctx, value, like):
    """The bits of ``value`` reinterpreted as the type of ``like`` (same width)."""
    if value.bitwidth != like.bitwidth:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))
    return like(value, like), codegen


CHUNK = 4096
PARALLEL_MIN_SIZE = 1 << 16


@nb.njit(nogil=True, cache=True, inline="always")
def _fast(b, rw, P, ft, ut):
    """(value bits, code) of round(x) for the W bits ``b`` of x, where not ``_general``."""
    wsh = ut(P[WSH])
    mw = P[MW]
    d = mw - P[MT]
    mode = P[MODE]
    s = ut(b >> wsh)
    a = ut(b & ut(~(ut(1) << wsh)))
    # normal range: the constant shift D
    rem_i = ut(a & ut((1 << d) - 1))
    half_i = ut((1 << d) >> 1)
    # the last kept significand bit; with no mantissa bits that is the hidden bit, always 1
    odd_i = (ut(ut(a >> ut(d)) & ut(1)) == ut(1)) if P[MT] > 0 else True
    # subnormal range: the magic constant C = Q * 2^MW
    qexp = P[EMIN] - P[MB]
    qsh = (qexp + P[BW]) << mw if qexp + P[BW] > 0 else 1 << (qexp + P[BW] + mw - 1)
    c = _as(ut((qexp + mw + P[BW]) << mw), ft(0))
    q = _as(ut(qsh), ft(0))
    af = _as(a, ft(0))
    rne = ft(ft(af + c) - c)
    t = ft(rne - q) if rne > af else rne
    rem_f = ft(af - t)
    tq = ut(_as(ft(t + c), ut(0)) & ut((1 << mw) - 1))
    below = a < ut((P[EMIN] + P[BW]) << mw)
    nz = (rem_f != ft(0)) if below else (rem_i != ut(0))
    odd = (tq & ut(1)) == ut(1) if below else odd_i
    gt = (rem_f > ft(q * ft(0.5))) if below else (rem_i > half_i)
    eq = (rem_f == ft(q * ft(0.5))) if below else (rem_i == half_i)
    inc = False
    if mode == RNE:
        inc = nz & (gt | (eq & odd))
    elif mode == RNA:
        inc = nz & (gt | eq)
    elif mode == UP:
        inc = nz & (s == ut(0))
    elif mode == DOWN:
        inc = nz & (s == ut(1))
    elif mode == ODD:
        inc = nz & ~odd
    elif mode == SR:
        r = P[SRBITS]
        if mw != 52:
            # |x| < 2^EMIN: y = d * 2^32 = rem_f * 2^(32 - qexp), exact (scaling by powers of
            # two; y < 2^32), so floor(d * 2^32) = uint32(y), and y != that iff bits are left.
            k = 32 - qexp
            y = ft(rem_f * _as(ut((min(k, 100) + 127) << 23), ft(0)))
            if k > 100:
                y = ft(y * _as(ut((k - 100 + 127) << 23), ft(0)))
            y32 = ut(y)
            d32 = y32 if below else ut(rem_i << ut(32 - d)) if d > 0 else ut(0)  # 0.32 fixed
        if mw != 52 and P[VARIANT] == SRFF:   # the default, in 32-bit lanes: floor(d 2^r) + R
            R32 = ut(rw) if r == 32 else ut(ut(rw) & ut((1 << r) - 1))
            if r == 32:
                inc = nz & (ut(d32 + R32) < d32)             # carry out of 32 bits
            else:
                inc = nz & (ut(ut(d32 >> ut(32 - r)) + R32) >= ut(1 << r))
        else:
            R = rw if r == 64 else rw & ((U64(1) << U64(r)) - U64(1))
            D = U64(rem_i) << U64(64 - d) if d > 0 else U64(0)      # 0.64 fixed point
            if mw != 52 and below:            # bit 0 sticky
                D = (U64(y32) << U64(32)) | U64(ft(y32) != y)
            inc = nz & _sr_decide(D, R, r, P[VARIANT])
    if below:
        vb = _as(ft(t + q), ut(0)) if inc else _as(t, ut(0))
        cm = ut(ut(tq + ut(inc)) << ut(P[MT] - P[MB]))
    else:
        vb = ut(ut(a - rem_i) + ut(ut(inc) << ut(d)))
        cm = ut(ut(vb >> ut(d)) - ut((P[EMIN] + P[BW] - 1) << P[MT]))
    if vb == ut(0) and (P[NEGZ_OK] == 0):
        s = ut(0)
    value = ut(vb | ut(s << wsh))
    code = ut(cm | ut(s << ut(P[SBIT])))
    if not below and cm > ut(P[MAXPOS]):          # overflow: IEEE 754 §7.4 / the policy
        oc, ov = _overflow(s == ut(1), _rounds_away(s, mode), P)
        value, code = ut(ov), ut(oc)
    return value, code


@nb.njit(nogil=True, cache=True, inline="always")
def _general(b, P, ut):
    """True where ``_fast`` does not apply and the general kernel decides: Inf and NaN, and
    float64 inputs in the subnormal range under stochastic rounding."""
    a = ut(b & ut(~(ut(1) << ut(P[WSH]))))
    out = a >= ut(((1 << (P[WSH] - P[MW])) - 1) << P[MW])
    if P[MW] == 52 and P[MODE] == SR:
        out = out | (a < ut((P[EMIN] + P[BW]) << P[MW]))
    return out


@nb.njit(nogil=True, cache=True, inline="always")
def _word(rsrc, rbits, words, i, c0):
    """Element i's random word: from ``rbits`` (rsrc 1), from the chunk's seeded ``words``
    (rsrc 2, filled from c0), or 0."""
    if rsrc == 1:
        return U64(rbits[i])
    if rsrc == 2:
        return U64(words[i - c0])
    return U64(0)


@nb.njit(nogil=True, cache=True, inline="always")
def _rows(xb, lo, hi, P, rsrc, rbits, seed, want_code, out, ft, ut):
    wide = P[SRBITS] > 32                          # 64-bit random words
    nerr = 0
    src = rsrc if P[MODE] == SR else 0             # words only where they are used
    words = np.empty(CHUNK if src == 2 else 0, ut)   # ut: the word type too (64-bit if wide)
    for c0 in range(lo, hi, CHUNK):                  # lo: a multiple of CHUNK
        c1 = min(hi, c0 + CHUNK)
        missed = 0
        if src == 2:                                 # seeded: four words per Philox block
            fill_words(seed, c0, c1 - c0, wide, words)
        for i in range(c0, c1):                      # one _fast: one copy to compile
            missed += _general(xb[i], P, ut)
            vb, c = _fast(xb[i], _word(src, rbits, words, i, c0), P, ft, ut)
            out[i] = c if want_code else vb
        if missed:
            for i in range(c0, c1):
                if _general(xb[i], P, ut):
                    c, v = round_one(I64(xb[i]), _word(src, rbits, words, i, c0), P)
                    nerr += c == ERR
                    out[i] = c if want_code else v
    return nerr


@nb.njit(nogil=True, cache=True)
def rows(xb, lo, hi, P, rsrc, rbits, seed, want_code, out, ft, ut):
    """Round ``xb[lo:hi]`` into ``out``, in chunks: a vectorised pass with ``_fast``, then the
    general kernel for the elements where ``_general`` holds. Returns how many inputs the
    format cannot represent. ``rsrc`` as in ``_kernels.round_array``."""
    return _rows(xb, lo, hi, P, rsrc, rbits, seed, want_code, out, ft, ut)


_SPECIALISED = {}
_POOL = {}


def run(xb, P, rsrc, rbits, seed, want_code, out, errs, specialise):
    """Round the work-type bits ``xb`` (uint32 or uint64) into ``out`` (codes or value bits);
    with ``specialise``, through a kernel compiled with ``P`` as constants (large arrays).
    The kernels release the GIL; large arrays are split over ``numba.get_num_threads()``
    threads."""
    wide = xb.dtype == np.uint64
    ft, ut = (np.float64, np.uint64) if wide else (np.float32, np.uint32)
    if specialise:
        key = (tuple(int(v) for v in P), int(rsrc), bool(want_code), wide)
        fn = _SPECIALISED.get(key)
        if fn is None:
            fn = _SPECIALISED[key] = _build_specialised(*key)
        work = lambda lo, hi: fn(xb, lo, hi, rbits, seed, out)  # noqa: E731
    else:
        work = lambda lo, hi: rows(xb, lo, hi, P, rsrc, rbits, seed, want_code, out, ft, ut)  # noqa: E731,E501
    parallel(xb.shape[0], work, errs)


def parallel(n, work, errs):
    """work(lo, hi) -> error count over [0, n), split over ``numba.get_num_threads()``
    threads (kernels that release the GIL) when n is large; the total goes to errs[0]."""
    k = nb.get_num_threads() if n >= PARALLEL_MIN_SIZE else 1
    if k == 1:
        errs[0] = work(0, n)
        return
    pool = _POOL.get(k) or _POOL.setdefault(k, ThreadPoolExecutor(max_workers=k))
    bounds = [(n * j // k) // CHUNK * CHUNK for j in range(k)] + [n]
    errs[0] = sum(pool.map(lambda j: work(bounds[j], bounds[j + 1]), range(k)))


def _build_specialised(PT, rsrc, want_code, wide):
    """``rows`` for one parameter tuple: the mode and format branches fold away and the loops
    vectorise. Compiled on first use, cached on disk (keyed by the constants)."""
    ft, ut = (np.float64, np.uint64) if wide else (np.float32, np.uint32)

    @nb.njit(nogil=True, cache=True)
    def kernel(xb, lo, hi, rbits, seed, out):
        return _rows(xb, lo, hi, PT, rsrc, rbits, seed, want_code, out, ft, ut)
    return kernel
