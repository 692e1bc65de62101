"""Vectorisable rounding kernel for signed, sign-magnitude float formats with a zero.

The same answers as ``_kernels._round_bits`` (the tests compare both with the oracle), computed
without per-element variable shifts, so that LLVM turns the loop into SIMD code:

* normal range (|x| >= 2^EMIN): the format keeps MT of the work type's MW fraction bits, so
  the discarded part of the bits ``a`` of |x| is ``a & (2^D - 1)`` with the constant
  ``D = MW - MT``; adding ``inc << D`` to the truncated bits carries into the exponent
  exactly as a rounded value must.
* subnormal range (|x| < 2^EMIN): the quantum is the constant ``Q = 2^(EMIN - MB)``. With
  ``C = Q * 2^MW`` the float sum ``|x| + C`` lies in [C, 2C), a binade whose spacing is Q, so
  one IEEE addition rounds |x| to the nearest multiple of Q (ties to even) and
  ``(|x| + C) - C`` is exact. The floor ``t`` follows by one comparison, the discarded part
  ``|x| - t`` is exact (Sterbenz), and ``t / Q`` is the fraction field of ``t + C``.

Every operation is either integer or an exact float operation, so nothing rounds twice.
Parameters come from ``cast._params`` (same array ``P`` as the generic kernel).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ._kernels import (BW, EMIN, ERR, MB, MODE, MT, MW, NAN_NEG_C, NAN_NEG_V, NAN_POS_C,
                       NAN_POS_V, NEGZ_OK, ODD, RNA, RNE, SBIT, SR, SRBITS, UP, DOWN, VARIANT,
                       WSH, MAXPOS, SAT_POS_V, _overflow, _rounds_away, _sr_decide, _seed_word)

U64 = np.uint64
I64 = np.int64


def _make_kernels(ft, ut):
    """(value kernel, code kernel, scalar value function, scalar code function) for the
    work float ``ft`` whose bits are the unsigned ``ut``."""

    @nb.njit(nogil=True, cache=True, inline="always")
    def magnitude(a, s, rw, P):
        """Rounded |x| for the bits ``a`` of a finite |x|: (its W bits, below 2^EMIN,
        t / Q in the subnormal range, the increment)."""
        mw = P[MW]
        d = mw - P[MT]
        mode = P[MODE]
        # normal range: the constant shift D
        rem_i = ut(a & ut((1 << d) - 1))
        half_i = ut((1 << d) >> 1)
        lsb_i = ut(ut(a >> ut(d)) & ut(1))
        # subnormal range: the magic constant C = Q * 2^MW
        qexp = P[EMIN] - P[MB]
        qsh = (qexp + P[BW]) << mw if qexp + P[BW] > 0 else 1 << (qexp + P[BW] + mw - 1)
        c = ut((qexp + mw + P[BW]) << mw).view(ft)
        q = ut(qsh).view(ft)
        af = a.view(ft)
        rne = ft(ft(af + c) - c)
        t = ft(rne - q) if rne > af else rne
        rem_f = ft(af - t)
        half_f = ft(q * ft(0.5))
        tq = ut(ft(t + c).view(ut) & ut((1 << mw) - 1))
        below = a < ut((P[EMIN] + P[BW]) << mw)
        nz = (rem_f != ft(0)) if below else (rem_i != ut(0))
        odd = (tq & ut(1)) == ut(1) if below else lsb_i == ut(1)
        gt = (rem_f > half_f) if below else (rem_i > half_i)
        eq = (rem_f == half_f) if below else (rem_i == half_i)
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
            if below:
                f = (rem_f / q) * ft(18446744073709551616.0)
                D = U64(f)
                if ft(D) != f:
                    D |= U64(1)
            else:
                D = U64(rem_i) << U64(64 - d)
            r = P[SRBITS]
            R = rw if r == 64 else rw & ((U64(1) << U64(r)) - U64(1))
            inc = nz & _sr_decide(D, R, r, P[VARIANT])
        if below:
            vb = ft(t + q).view(ut) if inc else ft(t).view(ut)
        else:
            vb = ut(ut(a - rem_i) + ut(ut(inc) << ut(d)))
        return vb, below, tq, inc

    @nb.njit(nogil=True, cache=True, inline="always")
    def value_bits(b, rw, P):
        """W bits of round(x) for the W bits ``b`` of x."""
        wsh = ut(P[WSH])
        s = ut(b >> wsh)
        a = ut(b & ut(~(ut(1) << wsh)))
        winf = ut(((1 << (P[WSH] - P[MW])) - 1) << P[MW])
        vb, _, _, _ = magnitude(a, s, rw, P)
        out = ut(vb | ut(s << wsh))
        if vb > ut(P[SAT_POS_V]):
            out = ut(_overflow(s == ut(1), _rounds_away(s, P[MODE]), P)[1])
        if vb == ut(0) and P[NEGZ_OK] == 0:
            out = ut(0)
        if a >= winf:
            if a > winf:
                out = ut(P[NAN_NEG_V]) if s == ut(1) else ut(P[NAN_POS_V])
            else:
                out = ut(_overflow(s == ut(1), True, P)[1])
        return out

    @nb.njit(nogil=True, cache=True, inline="always")
    def code(b, rw, P):
        """The code of round(x) for the W bits ``b`` of x, as ``ut``, and whether x is a NaN
        that the format cannot represent."""
        wsh = ut(P[WSH])
        s = ut(b >> wsh)
        a = ut(b & ut(~(ut(1) << wsh)))
        winf = ut(((1 << (P[WSH] - P[MW])) - 1) << P[MW])
        vb, below, tq, inc = magnitude(a, s, rw, P)
        if below:
            cm = ut(ut(tq + ut(inc)) << ut(P[MT] - P[MB]))
        else:
            cm = ut(ut(vb >> ut(P[MW] - P[MT])) - ut((P[EMIN] + P[BW] - 1) << P[MT]))
        out = ut(cm | ut(s << ut(P[SBIT])))
        if cm > ut(P[MAXPOS]):
            out = ut(_overflow(s == ut(1), _rounds_away(s, P[MODE]), P)[0])
        if cm == ut(0) and P[NEGZ_OK] == 0:
            out = ut(0)
        if a >= winf:
            if a > winf:
                out = ut(P[NAN_NEG_C]) if s == ut(1) else ut(P[NAN_POS_C])
            else:
                out = ut(_overflow(s == ut(1), True, P)[0])
        return out, (a > winf) & (P[NAN_POS_C] == ERR)

    @nb.njit(cache=True, parallel=True)
    def values_array(xb, P, rsrc, rbits, seed, offset, out):
        """``out[i]`` = W bits of round(x[i]); ``rsrc`` as in ``_kernels.round_array``."""
        wide = P[MW] == 52
        for i in nb.prange(xb.shape[0]):
            out[i] = value_bits(xb[i], _random_word(rsrc, rbits, seed, offset + i, i, wide), P)

    @nb.njit(cache=True, parallel=True)
    def codes_array(xb, P, rsrc, rbits, seed, offset, out, errs):
        """``out[i]`` = code of round(x[i]); counts NaNs the format cannot hold into
        ``errs[0]``."""
        wide = P[MW] == 52
        nerr = 0
        for i in nb.prange(xb.shape[0]):
            c, bad = code(xb[i], _random_word(rsrc, rbits, seed, offset + i, i, wide), P)
            nerr += bad
            out[i] = c
        errs[0] = nerr

    return values_array, codes_array, value_bits, code


@nb.njit(nogil=True, cache=True, inline="always")
def _random_word(rsrc, rbits, seed, index, i, wide):
    if rsrc == 1:
        return U64(rbits[i])
    if rsrc == 2:
        return _seed_word(seed, index, wide)
    return U64(0)


values32, codes32, _value32, _code32 = _make_kernels(np.float32, np.uint32)
values64, codes64, _value64, _code64 = _make_kernels(np.float64, np.uint64)
_SPECIALISED = {}


def run(xb, P, rsrc, rbits, seed, want_code, out, errs, specialise):
    """Round the work-type bits ``xb`` (uint32 or uint64) into ``out`` (codes or value bits);
    with ``specialise``, through a kernel compiled with ``P`` as constants (large arrays)."""
    wide = xb.dtype == np.uint64
    if specialise:
        key = (tuple(int(v) for v in P), int(rsrc), bool(want_code), wide)
        fn = _SPECIALISED.get(key)
        if fn is None:
            fn = _SPECIALISED[key] = _build_specialised(*key)
        fn(xb, rbits, seed, out, errs)
    elif want_code:
        (codes64 if wide else codes32)(xb, P, rsrc, rbits, seed, 0, out, errs)
    else:
        (values64 if wide else values32)(xb, P, rsrc, rbits, seed, 0, out)


def _build_specialised(PT, rsrc, want_code, wide):
    """The array kernel for one parameter tuple: the mode and format branches fold away and
    the loop vectorises. Compiled on first use, cached on disk (keyed by the constants)."""
    if want_code:
        @nb.njit(cache=True, parallel=True)
        def kernel(xb, rbits, seed, out, errs):
            nerr = 0
            for i in nb.prange(xb.shape[0]):
                rw = _random_word(rsrc, rbits, seed, i, i, wide)
                c, bad = _code64(xb[i], rw, PT) if wide else _code32(xb[i], rw, PT)
                nerr += bad
                out[i] = c
            errs[0] = nerr
    else:
        @nb.njit(cache=True, parallel=True)
        def kernel(xb, rbits, seed, out, errs):
            for i in nb.prange(xb.shape[0]):
                rw = _random_word(rsrc, rbits, seed, i, i, wide)
                out[i] = _value64(xb[i], rw, PT) if wide else _value32(xb[i], rw, PT)
    return kernel
