"""Exact results of + - * / fma sqrt on float64 values with Python integers, for small arrays.

The same results as the Numba kernels of ``lowprec._exact`` (which serve large arrays), without
compiling anything: each element's exact result is either a float64 (a zero, Inf, NaN or an
operand, IEEE 754-2019 §6) or a finite nonzero value ``(N + f) * 2^e`` with ``f`` in [0, 1)
nonzero exactly when ``sticky`` (quotients and square roots carry at least 130 bits, beyond the
53 bits a result keeps plus the 64-bit discarded fraction stochastic rounding reads). It is
then cut at the format's grid and rounded once by the array-API step
(``lowprec.xstep.round_parts`` / ``round_bits``): one rule, no double rounding.
"""
from __future__ import annotations

from math import isqrt

import numpy as np

from . import xstep

ADD, SUB, MUL, FMA, DIV, SQRT = 0, 1, 2, 3, 4, 5      # as lowprec._exact
_SIGN = 1 << 63
_EXP = 0x7FF << 52
_NAN = 0x7FF8 << 48
_GUARD = 130                                           # bits of a quotient or root


def _unpack(b):
    """|x| = m * 2^e for the float64 bits ``b`` of a finite x."""
    a = b & ~_SIGN
    ew = a >> 52
    return (a & ((1 << 52) - 1)) | ((ew != 0) << 52), max(ew, 1) - 1075


def _zero_sign(sa, sb, down):
    """Sign of an exact zero sum of terms with signs sa, sb (IEEE 754 §6.3)."""
    return sa if sa == sb else int(down)


def _fma(xb, yb, zb, has_z, down):
    """x * y (+ z): ("bits", float64 bits) or ("value", s, N, e, sticky)."""
    sx, sy, sz = xb >> 63, yb >> 63, zb >> 63
    ax, ay, az = xb & ~_SIGN, yb & ~_SIGN, (zb & ~_SIGN) if has_z else 0
    sp = sx ^ sy
    for a, b in ((ax, xb), (ay, yb), (az, zb)):
        if a > _EXP:
            return ("bits", b)                                  # NaN operand propagates
    pinf = ax == _EXP or ay == _EXP
    if pinf and (ax == 0 or ay == 0):
        return ("bits", _NAN)                                   # 0 * Inf
    if has_z and az == _EXP:
        return ("bits", _NAN) if pinf and sp != sz else ("bits", zb)
    if pinf:
        return ("bits", _EXP | (sp << 63))
    if ax == 0 or ay == 0:                                      # x * y is a signed zero
        if not has_z:
            return ("bits", sp << 63)
        return ("bits", _zero_sign(sp, sz, down) << 63) if az == 0 else ("bits", zb)
    (mx, ex), (my, ey) = _unpack(xb), _unpack(yb)
    p, ep = mx * my, ex + ey
    if not has_z or az == 0:
        return ("value", sp, p, ep, False)
    mz, ez = _unpack(zb)
    e = min(ep, ez)
    v = (-1) ** sp * (p << (ep - e)) + (-1) ** sz * (mz << (ez - e))
    if v == 0:
        return ("bits", _zero_sign(sp, sz, down) << 63)
    return ("value", int(v < 0), abs(v), e, False)


def _div(xb, yb):
    s = (xb ^ yb) >> 63
    ax, ay = xb & ~_SIGN, yb & ~_SIGN
    if ax > _EXP:
        return ("bits", xb)
    if ay > _EXP:
        return ("bits", yb)
    if (ax == _EXP and ay == _EXP) or (ax == 0 and ay == 0):
        return ("bits", _NAN)                                   # Inf/Inf, 0/0
    if ax == _EXP or ay == 0:
        return ("bits", _EXP | (s << 63))
    if ax == 0 or ay == _EXP:
        return ("bits", s << 63)
    (mx, ex), (my, ey) = _unpack(xb), _unpack(yb)
    k = _GUARD + my.bit_length() - mx.bit_length()
    N, rem = divmod(mx << k, my)
    return ("value", s, N, ex - ey - k, rem != 0)


def _sqrt(xb):
    a = xb & ~_SIGN
    if a > _EXP or a == 0:
        return ("bits", xb)                                     # NaN, +-0
    if xb >> 63:
        return ("bits", _NAN)
    if a == _EXP:
        return ("bits", xb)
    m, e = _unpack(xb)
    k = 2 * _GUARD - m.bit_length()
    k += (e - k) & 1                                            # e - k even
    R = m << k
    N = isqrt(R)
    return ("value", 0, N, (e - k) // 2, N * N != R)


def _cut(N, e, sticky, p):
    """(q, D, T) of |v| = (N + f) 2^e on the plan's grid: T the leading bit's exponent
    (clamped to 1024), q the kept magnitude, D the 0.64 discarded fraction with sticky bit."""
    T = N.bit_length() - 1 + e
    if T > 1024:                                # beyond every range: still an overflow
        e -= T - 1024
        T = 1024
    Et = max(T, p.emin)
    kept = p.sub_man_bits if T < p.emin else p.man_bits
    shift = (Et - kept) - e
    if shift <= 0:
        return N << -shift, int(sticky), T      # sticky only with >= 130 bits: never here
    q, rem = N >> shift, N & ((1 << shift) - 1)
    D = (rem << 64) >> shift
    low = (rem << 64) & ((1 << shift) - 1)
    return q, D | int(sticky or low != 0), T


def arith_small(op, xb, yb, zb, p, Rh, Rl):
    """(code, float64 bits) arrays (int64) of round(op(x, y, z)) for the float64 bits of the
    operands (uint64 arrays of equal length), as ``lowprec._exact.arith_array``."""
    down = p.mode == "down"
    n = xb.shape[0]
    bits = np.zeros(n, np.int64)
    is_bits = np.zeros(n, bool)
    neg = np.zeros(n, bool)
    q = np.zeros(n, np.int64)
    Dh = np.zeros(n, np.int64)
    Dl = np.zeros(n, np.int64)
    T = np.zeros(n, np.int64)
    for i, (x, y, z) in enumerate(zip(xb.tolist(), yb.tolist(), zb.tolist())):
        if op == SQRT:
            r = _sqrt(x)
        elif op == DIV:
            r = _div(x, y)
        elif op == ADD:
            r = _fma(x, 0x3FF << 52, y, True, down)
        elif op == SUB:
            r = _fma(x, 0x3FF << 52, y ^ _SIGN, True, down)
        else:
            r = _fma(x, y, z, op == FMA, down)
        if r[0] == "bits":
            is_bits[i] = True
            bits[i] = r[1] - (1 << 64) if r[1] >= _SIGN else r[1]
        else:
            _, s, N, e, sticky = r
            qi, D, T[i] = _cut(N, e, sticky, p)
            neg[i], q[i], Dh[i], Dl[i] = bool(s), qi, D >> 32, D & xstep.M32
    c1, v1 = xstep.round_bits(np, bits, Rh, Rl, p)
    c2, v2 = xstep.round_parts(np, neg, q, Dh, Dl, T, Rh, Rl, p)
    return np.where(is_bits, c1, c2), np.where(is_bits, v1, v2)
