"""Exact results of + - * / fma sqrt on float64 values, as 127-bit integers, rounded once.

A finite nonzero result is held as ``(s, H, L, st, T)``: the value is
``(-1)^s * (H * 2^64 + L + f) * 2^(T - 126)`` with ``2^62 <= H < 2^63`` (the leading bit at
position 126), and ``f`` in [0, 1) a remainder that is nonzero exactly when the sticky flag ``st``
is set. 127 bits cover the 53 bits a result can keep plus the 64-bit discarded fraction that
stochastic rounding reads, so ``_round_exact`` makes every decision of ``_kernels._finish``
exactly as it would on the infinitely precise value: one rounding, no double rounding.

Products of two 53-bit significands are exact in 106 bits; sums align the smaller operand to
the larger one's window (bits that fall off only ever belong to an operand at least 2^20 times
smaller, so at most one bit cancels and the sticky flag stays a valid remainder); quotients and
square roots are formed bit by bit with the remainder's nonzero-ness as sticky.
Zeros, infinities and NaN follow IEEE 754-2019 §6 and go through ``_kernels._round_bits``.
"""
from __future__ import annotations

import numba as nb
from numba.cpython.unsafe.numbers import leading_zeros

from ._kernels import _random_word
from ._kernels import DOWN, ERR, MODE, I64, SRBITS, U64, _finish, _grid, _round_bits

_OPTS = dict(nogil=True, cache=True, inline="always")
_CALL = dict(nogil=True, cache=True)          # kept as calls: inlining every path explodes compile time

ADD, SUB, MUL, FMA, DIV, SQRT = 0, 1, 2, 3, 4, 5

_EXP = I64(0x7FF) << 52
_NAN = I64(0x7FF8) << 48
_SIGN = I64(1) << 63
_ONE = I64(0x3FF) << 52
_M64 = U64(0xFFFFFFFFFFFFFFFF)


@nb.njit(**_OPTS)
def _mask(k):
    """Low ``k`` bits set (0 <= k <= 64)."""
    return _M64 if k >= 64 else (U64(1) << U64(k)) - U64(1)


@nb.njit(**_OPTS)
def _unpack(b):
    """|x| = m * 2^e for the float64 bits ``b`` of a finite x (m < 2^53)."""
    a = b & ~_SIGN
    ew = a >> 52
    m = (a & ((I64(1) << 52) - 1)) | (I64(ew != 0) << 52)
    return U64(m), max(ew, I64(1)) - 1075


@nb.njit(**_OPTS)
def _mul64(a, b):
    """(hi, lo) of the 128-bit product of two uint64."""
    m32 = U64(0xFFFFFFFF)
    a0, a1 = a & m32, a >> U64(32)
    b0, b1 = b & m32, b >> U64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> U64(32)) + (p01 & m32) + (p10 & m32)
    lo = (p00 & m32) | (mid << U64(32))
    hi = p11 + (p01 >> U64(32)) + (p10 >> U64(32)) + (mid >> U64(32))
    return hi, lo


@nb.njit(**_OPTS)
def _shl(H, L, k):
    """(H, L) << k for 0 <= k < 128 (bits shifted past 128 are dropped)."""
    if k == 0:
        return H, L
    if k >= 64:
        return L << U64(k - 64), U64(0)
    return (H << U64(k)) | (L >> U64(64 - k)), L << U64(k)


@nb.njit(**_OPTS)
def _shr(H, L, k):
    """(H, L) >> k for k >= 0, and whether any nonzero bit was shifted out."""
    if k == 0:
        return H, L, False
    if k >= 128:
        return U64(0), U64(0), (H | L) != U64(0)
    if k >= 64:
        j = k - 64
        return U64(0), H >> U64(j), L != U64(0) or (H & _mask(j)) != U64(0)
    return H >> U64(k), (L >> U64(k)) | (H << U64(64 - k)), (L & _mask(k)) != U64(0)


@nb.njit(**_OPTS)
def _top(H, L):
    """Position of the leading 1 of the nonzero 128-bit (H, L)."""
    if H != U64(0):
        return 127 - I64(leading_zeros(H))
    return 63 - I64(leading_zeros(L))


@nb.njit(**_OPTS)
def _normal(H, L, st, e):
    """The value (H * 2^64 + L + f) * 2^e (nonzero) with its leading bit moved to 126:
    (H, L, sticky, T) with T the exponent of the leading bit."""
    t = _top(H, L)
    if t > 126:
        H, L, lost = _shr(H, L, t - 126)
        st = st or lost
    else:
        H, L = _shl(H, L, 126 - t)
    return H, L, st, e + t


@nb.njit(**_CALL)
def _round_exact(s, H, L, st, T, rw, P):
    """Round the exact value (s, H, L, st, T) (module docstring) once with ``_finish``."""
    T = min(T, I64(1024))                    # past every format's range: still an overflow,
    Et, below, meff = _grid(T, P)            # and the code arithmetic stays within int64
    sh = 126 - meff + (Et - T)               # >= 74: bits below the kept quantum
    if sh < 128:
        k = sh - 64
        q = H >> U64(k)
        D = ((H & _mask(k)) << U64(64 - k)) | (L >> U64(k))
        st = st or (L & _mask(k)) != U64(0)
    elif sh < 192:
        k = sh - 128
        q = U64(0)
        D = H >> U64(k)
        st = st or L != U64(0) or (H & _mask(k)) != U64(0)
    else:
        q, D, st = U64(0), U64(0), True
    return _finish(s, I64(q), D | U64(st), Et, below, meff, False, rw, P)


@nb.njit(**_OPTS)
def _special(bits):
    """An op's result that is a float64 (zero, Inf, NaN or an operand): its bits."""
    return True, bits, I64(0), U64(0), U64(0), False, I64(0)


@nb.njit(**_OPTS)
def _zero_sum(sa, sb, P):
    """Sign of an exact zero sum of terms with signs sa, sb (IEEE 754 §6.3)."""
    if sa == sb:
        return sa
    return I64(1) if P[MODE] == DOWN else I64(0)


@nb.njit(**_CALL)
def _fma(xb, yb, zb, has_z, P):
    """x * y + z (``has_z``) or x * y, from float64 bits, as ``_special`` or an exact value."""
    sx, sy, sz = (xb >> 63) & 1, (yb >> 63) & 1, (zb >> 63) & 1
    ax, ay, az = xb & ~_SIGN, yb & ~_SIGN, zb & ~_SIGN
    sp = sx ^ sy
    for a, b in ((ax, xb), (ay, yb), (az if has_z else I64(0), zb)):
        if a > _EXP:
            return _special(b)                          # NaN operand propagates
    pinf = ax == _EXP or ay == _EXP
    if pinf and (ax == 0 or ay == 0):
        return _special(_NAN)                           # 0 * Inf
    if has_z and az == _EXP:
        if pinf and sp != sz:
            return _special(_NAN)                       # Inf - Inf
        return _special(zb)
    if pinf:
        return _special(_EXP | (sp << 63))
    if ax == 0 or ay == 0:                                        # x * y is a signed zero
        if not has_z:
            return _special(sp << 63)
        if az == 0:
            return _special(_zero_sum(sp, sz, P) << 63)
        return _special(zb)                             # exactly z
    mx, ex = _unpack(xb)
    my, ey = _unpack(yb)
    PH, PL = _mul64(mx, my)
    ep = ex + ey
    if not has_z or az == 0:
        H, L, st, T = _normal(PH, PL, False, ep)
        return False, I64(0), sp, H, L, st, T
    mz, ez = _unpack(zb)
    tp = _top(PH, PL) + ep                    # exponents of the leading bits
    tz = _top(U64(0), mz) + ez
    if tp >= tz:                              # A: the larger-exponent operand
        AH, AL, ea, sa = PH, PL, ep, sp
        BH, BL, eb, sb = U64(0), mz, ez, sz
    else:
        AH, AL, ea, sa = U64(0), mz, ez, sz
        BH, BL, eb, sb = PH, PL, ep, sp
    ta = _top(AH, AL)
    AH, AL = _shl(AH, AL, 125 - ta)           # A's leading bit at 125: one bit of headroom
    base = ea + ta - 125                      # exponent of bit 0
    d = eb - base
    lost = False
    if d >= 0:
        BH, BL = _shl(BH, BL, d)
    else:
        BH, BL, lost = _shr(BH, BL, -d)
    if sa == sb:
        L = AL + BL
        H = AH + BH + U64(L < AL)
        s = sa
    else:
        if BH > AH or (BH == AH and BL > AL):                    # B larger: nothing was lost
            AH, AL, BH, BL, sa = BH, BL, AH, AL, sb
        L = AL - BL
        H = AH - BH - U64(AL < BL)
        s = sa
        if lost:                              # A - (B + f) = (A - B - 1) + (1 - f)
            H = H - U64(L == U64(0))
            L = L - U64(1)
        if H == U64(0) and L == U64(0) and not lost:
            return _special(_zero_sum(sa, sb, P) << 63)
    H, L, st, T = _normal(H, L, lost, base)
    return False, I64(0), s, H, L, st, T


@nb.njit(**_CALL)
def _div(xb, yb):
    """x / y from float64 bits (as ``_fma``)."""
    s = ((xb ^ yb) >> 63) & 1
    ax, ay = xb & ~_SIGN, yb & ~_SIGN
    if ax > _EXP:
        return _special(xb)
    if ay > _EXP:
        return _special(yb)
    if (ax == _EXP and ay == _EXP) or (ax == 0 and ay == 0):
        return _special(_NAN)                           # Inf/Inf, 0/0
    if ax == _EXP or ay == 0:
        return _special(_EXP | (s << 63))               # exact infinity
    if ax == 0 or ay == _EXP:
        return _special(s << 63)
    mx, ex = _unpack(xb)
    my, ey = _unpack(yb)
    lx, ly = I64(leading_zeros(mx)) - 11, I64(leading_zeros(my)) - 11
    mx, my = mx << U64(lx), my << U64(ly)     # both in [2^52, 2^53)
    rem = mx
    H, L = U64(0), U64(0)
    for _ in range(127):                      # Q = floor(mx / my * 2^126), bit by bit
        bit = rem >= my
        if bit:
            rem -= my
        H = (H << U64(1)) | (L >> U64(63))
        L = (L << U64(1)) | U64(bit)
        rem <<= U64(1)
    H, L, st, T = _normal(H, L, rem != U64(0), (ex - lx) - (ey - ly) - 126)
    return False, I64(0), s, H, L, st, T


@nb.njit(**_CALL)
def _sqrt(xb):
    """sqrt(x) from float64 bits (as ``_fma``)."""
    s = (xb >> 63) & 1
    a = xb & ~_SIGN
    if a > _EXP or a == 0:
        return _special(xb)                             # NaN, +-0
    if s == 1:
        return _special(_NAN)                           # sqrt of x < 0
    if a == _EXP:
        return _special(xb)
    m, e = _unpack(xb)
    lz = I64(leading_zeros(m)) - 11
    m, e = m << U64(lz), e - lz               # m in [2^52, 2^53)
    if e & 1:
        m, e = m << U64(1), e - 1             # e even, m < 2^54: 27 bit pairs
    RH, RL = U64(0), U64(0)                   # root, remainder as 128-bit numbers
    QH, QL = U64(0), U64(0)
    for i in range(125):                      # radicand m * 2^196, two bits at a time
        pair = (m >> U64(52 - 2 * i)) & U64(3) if i < 27 else U64(0)
        QH, QL = _shl(QH, QL, 2)
        QL |= pair
        TH, TL = _shl(RH, RL, 2)
        TL |= U64(1)
        RH, RL = _shl(RH, RL, 1)
        if QH > TH or (QH == TH and QL >= TL):
            QH, QL = QH - TH - U64(QL < TL), QL - TL
            RL |= U64(1)
    H, L, st, T = _normal(RH, RL, (QH | QL) != U64(0), (e >> 1) - 98)
    return False, I64(0), I64(0), H, L, st, T


@nb.njit(**_CALL)
def _round_special(bits, rw, P):
    return _round_bits(bits, rw, P)


@nb.njit(cache=True, parallel=True)
def arith_array(op, xb, yb, zb, P, rsrc, rbits, seed, out, errs):
    """``out[i]`` = float64 bits of round(op(x[i], y[i], z[i])); ``rsrc`` as in
    ``_kernels.round_array``. Counts results the format cannot represent into ``errs[0]``."""
    nerr = 0
    for i in nb.prange(xb.shape[0]):
        rw = _random_word(rsrc, rbits, seed, i, P[SRBITS] > 32)
        x = I64(xb[i])
        if op == SQRT:
            r = _sqrt(x)
        elif op == DIV:
            r = _div(x, I64(yb[i]))
        elif op == ADD:
            r = _fma(x, _ONE, I64(yb[i]), True, P)
        elif op == SUB:
            r = _fma(x, _ONE, I64(yb[i]) ^ _SIGN, True, P)
        else:
            r = _fma(x, I64(yb[i]), I64(zb[i]), op == FMA, P)
        special, bits, s, H, L, st, T = r
        if special:
            code, vb = _round_special(bits, rw, P)
        else:
            code, vb = _round_exact(s, H, L, st, T, rw, P)
        nerr += code == ERR
        out[i] = vb
    errs[0] = nerr
