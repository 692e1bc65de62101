"""The core's rounding step (``lowprec._kernels._round_bits`` / ``_finish`` / ``_sr_decide``)
in torch integer operations, element-wise and branch-free, so that it runs on any device.

torch has no arithmetic on uint32/uint64 tensors, so everything lives in int64 lanes: the work
type's bits (float32 bits zero-extended, float64 bits as they are, sign bit included), the
significand (at most 53 bits) and the code. The 0.64 discarded fraction D and the random
words R are (hi, lo) pairs of 32-bit halves in int64, so sums and carries never overflow.
Parameters come from ``lowprec.cast._params`` (the array the Numba kernels read) as Python
ints.
"""
from __future__ import annotations

import numpy as np
import torch

from lowprec import _kernels as K

I64 = torch.int64
M32 = 0xFFFFFFFF
INT64_MIN = -(1 << 63)


def _shr(x, k):
    """x >> k for x >= 0 and per-element k >= 0 (0 when k >= 63)."""
    return x >> k.clamp(0, 63)


def _mask(k):
    """The low k bits set, for 0 <= k; k above 62 gives 62 bits (enough for every use here:
    the masked values have at most 53 bits)."""
    return (torch.ones_like(k) << k.clamp(0, 62)) - 1


def _gt(ah, al, bh, bl):
    return (ah > bh) | ((ah == bh) & (al > bl))


def _shr64(h, l, k):
    """The 64-bit (h, l) >> k for 0 <= k (per element), as a pair."""
    hk = _shr(h, k)
    lk = _shr(l, k) | ((h << (32 - k).clamp(0, 31)) & M32)
    lk = torch.where(k == 0, l, lk)
    lk = torch.where(k >= 32, _shr(h, k - 32), lk)
    return hk, lk


def _low64(h, l, k):
    """The low k bits of (h, l), 0 <= k <= 64."""
    lo = torch.where(k >= 32, l, l & _mask(k))
    hi = torch.where(k >= 32, h & _mask(k - 32), torch.zeros_like(h))
    return hi, lo


def _sum_reaches(th, tl, Rh, Rl, r):
    """t + R >= 2^r for pairs t, R < 2^r (r <= 64)."""
    lo = tl + Rl
    hi = th + Rh + (lo >> 32)
    lo = lo & M32
    if r >= 64:
        return hi >> 32 != 0
    if r >= 32:
        return hi >= (1 << (r - 32))
    return (hi != 0) | (lo >= (1 << r))


def _sr_decide(Dh, Dl, Rh, Rl, r, variant):
    """``_kernels._sr_decide`` on pairs: D the 0.64 discarded fraction (bit 0 sticky), R the
    random words (only the low r bits are used). True = round away from zero."""
    full = lambda v: torch.full_like(Dh, v)  # noqa: E731
    if r < 64:
        Rh, Rl = _low64(Rh, Rl, full(r))
    if variant == K.SRFF:
        if r == 64:                                    # carry out of D + R
            return _sum_reaches(Dh, Dl, Rh, Rl, 64)
        th, tl = _shr64(Dh, Dl, full(64 - r))
        return _sum_reaches(th, tl, Rh, Rl, r)
    if variant == K.SRF:                               # t2 + 2R + 1 >= 2^(r+1)
        th, tl = _shr64(Dh, Dl, full(63 - r))
        R2h = (Rh << 1) | (Rl >> 31)
        R2l = ((Rl << 1) & M32) | 1
        return _sum_reaches(th, tl, R2h, R2l, r + 1)
    k = 64 - r
    th, tl = _shr64(Dh, Dl, full(k))
    rh, rl = _low64(Dh, Dl, full(k))
    if variant == K.SRC:                               # round d to r bits, to nearest even
        hh, hl = (1 << (k - 33), 0) if k - 1 >= 32 else (0, 1 << (k - 1))
        up = _gt(rh, rl, hh, hl) | ((rh == hh) & (rl == hl) & ((tl & 1) == 1))
        tl = tl + up.to(I64)
        th, tl = th + (tl >> 32), tl & M32
    else:                                              # SR-odd: round d to r bits, to odd
        tl = tl | ((rh | rl) != 0).to(I64)
    return _sum_reaches(th, tl, Rh, Rl, r)


def _msb(q):
    """Index of the leading one bit of 0 < q < 2^63 (q = 0 gives 0), by binary search."""
    msb = torch.zeros_like(q)
    for b in (32, 16, 8, 4, 2, 1):
        t = q >> b
        c = t != 0
        msb = msb + c.to(I64) * b
        q = torch.where(c, t, q)
    return msb


def _bits_of_int_times_pow2(q, s, W):
    """Work-type bits of q * 2^s for integers 0 <= q < 2^53 whose product is a value of the
    work type (no rounding), built from integers."""
    mw, bias = (23, 127) if W == 32 else (52, 1023)
    msb = _msb(q)
    e = msb + s                                         # exponent of the leading bit
    norm = ((e + bias) << mw) | ((q << (mw - msb).clamp(0, 62)) & ((1 << mw) - 1))
    sub = q << max(0, min(s + bias - 1 + mw, 62))       # used only where e < 1 - bias
    return torch.where(q == 0, 0, torch.where(e >= 1 - bias, norm, sub))


@torch.compiler.assume_constant_result
def _subnormal_quantum_exponent(P):
    """log2 of the format's subnormal step (a power of two), from P's float64 bits."""
    v = float(np.int64(P[K.SUBQ_BITS]).view(np.float64))
    return int(np.frexp(v)[1]) - 1


def round_bits(ub, Rh, Rl, P):
    """(code, value bits) of every element of the work-type bits ``ub`` (int64: float32 bits
    zero-extended, or float64 bits) rounded as ``P`` (``cast._params`` as Python ints) says;
    the code is all ones of W bits (-1 for W = 64) where the core would raise (a NaN the
    format cannot hold). Value bits: W bits, sign included (int64)."""
    W = P[K.WSH] + 1
    c = (lambda v: v & M32) if W == 32 else (lambda v: v)  # a parameter as W-bit pattern
    mw, bw, mt, emin, mb = P[K.MW], P[K.BW], P[K.MT], P[K.EMIN], P[K.MB]
    mode = P[K.MODE]
    neg = ub < 0 if W == 64 else (ub >> 31) == 1
    s = neg.to(I64)
    a = ub & ((1 << (W - 1)) - 1)
    winf = ((1 << (W - 1 - mw)) - 1) << mw
    special = a >= winf
    isnan = a > winf
    ew = a >> mw
    sig = (a & ((1 << mw) - 1)) | ((ew != 0).to(I64) << mw)
    E = ew.clamp(min=1) - bw
    below = E < emin
    Et = E.clamp(min=emin)
    meff = torch.where(below, mb, mt)
    sh = mw - meff + (Et - E)
    q = _shr(sig, sh)
    # D, the discarded fraction as 0.64 fixed point (bit 0 sticky), as two 32-bit halves
    rem = sig & _mask(sh)
    k = (sh - 64).clamp(0, 63)
    deep = _shr(sig, k) | ((sig & _mask(k)) != 0).to(I64)
    Dh = torch.where(sh <= 32, rem << (32 - sh).clamp(0, 32),
                     torch.where(sh <= 64, _shr(rem, sh - 32), deep >> 32))
    Dl = torch.where(sh <= 32, torch.zeros_like(rem),
                     torch.where(sh <= 64, (rem & _mask(sh - 32)) << (64 - sh).clamp(0, 31),
                                 deep & M32))
    nz = (Dh | Dl) != 0
    if mode == K.RNE:
        inc = _gt(Dh, Dl, 1 << 31, 0) | ((Dh == 1 << 31) & (Dl == 0) & ((q & 1) == 1))
    elif mode == K.RNA:
        inc = Dh >= 1 << 31
    elif mode == K.UP:
        inc = nz & ~neg
    elif mode == K.DOWN:
        inc = nz & neg
    elif mode == K.ODD:
        inc = nz & ((q & 1) == 0)
    elif mode == K.SR:
        inc = nz & _sr_decide(Dh, Dl, Rh, Rl, P[K.SRBITS], P[K.VARIANT])
    else:
        inc = torch.zeros_like(nz)
    q = q + inc.to(I64)
    cm = ((Et - emin) << mt) + (q << (mt - meff)) + P[K.CODE_BASE]
    maxm = torch.where(neg, P[K.MAXNEG], P[K.MAXPOS])
    ovf = (cm > maxm) | (neg & (maxm < 0))
    away = _rounds_away(neg, mode)
    vb_sub = _bits_of_int_times_pow2(q, _subnormal_quantum_exponent(P), W)
    vb_norm = ((Et + bw - 1) << mw) + (q << (mw - mt))
    vb = torch.where(below, vb_sub, vb_norm)
    vb = torch.where(neg, vb | (1 << 31) if W == 32 else vb | INT64_MIN, vb)
    kind = P[K.KIND]
    if kind == K.KIND_TWOS:
        code = torch.where(neg, (-cm) & P[K.CMASK], cm)
    elif kind == K.KIND_SIGNMAG:
        code = cm | (s << P[K.SBIT])
    else:
        code = cm
    # zero results
    zero = cm <= 0
    nozero = (cm < 0) | (P[K.CODE_BASE] < 0)
    negz = neg & (P[K.NEGZ_OK] == 1)
    negz_v = (1 << 31) if W == 32 else INT64_MIN
    z_code = torch.where(nozero, torch.where(a == 0, c(P[K.ZIN_C]), c(P[K.MIN_C])),
                         torch.where(negz, c(1 << P[K.SBIT]) if P[K.SBIT] < 63 else INT64_MIN,
                                     0))
    z_val = torch.where(nozero, torch.where(a == 0, c(P[K.ZIN_V]), c(P[K.MIN_V])),
                        torch.where(negz, negz_v, 0))
    code = torch.where(zero, z_code, code)
    vb = torch.where(zero, z_val, vb)
    # overflow, then special inputs
    oc, ov = _overflow(neg, away, P, c)
    code = torch.where(ovf, oc, code)
    vb = torch.where(ovf, ov, vb)
    sc, sv = _overflow(neg, torch.ones_like(ovf), P, c)
    nc = torch.where(neg, c(P[K.NAN_NEG_C]), c(P[K.NAN_POS_C]))
    nv = torch.where(neg, c(P[K.NAN_NEG_V]), c(P[K.NAN_POS_V]))
    code = torch.where(special, torch.where(isnan, nc, sc), code)
    vb = torch.where(special, torch.where(isnan, nv, sv), vb)
    return code, vb


def _rounds_away(neg, mode):
    if mode in (K.RNE, K.RNA, K.SR):
        return torch.ones_like(neg)
    if mode == K.UP:
        return ~neg
    if mode == K.DOWN:
        return neg
    return torch.zeros_like(neg)


def _overflow(neg, away, P, c):
    code = torch.where(away, torch.where(neg, c(P[K.OVF_NEG_C]), c(P[K.OVF_POS_C])),
                       torch.where(neg, c(P[K.SAT_NEG_C]), c(P[K.SAT_POS_C])))
    val = torch.where(away, torch.where(neg, c(P[K.OVF_NEG_V]), c(P[K.OVF_POS_V])),
                      torch.where(neg, c(P[K.SAT_NEG_V]), c(P[K.SAT_POS_V])))
    return code, val


def _mulhilo(a, b):
    """(hi, lo) 32-bit words of the 64-bit product of 32-bit values a, b (int64 lanes)."""
    p0 = (a & 0xFFFF) * b                               # < 2^48
    p1 = (a >> 16) * b                                  # < 2^48
    mid = p0 + ((p1 & 0xFFFF) << 16)                    # < 2^49
    return (p1 >> 16) + (mid >> 32), mid & M32


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 as ``lowprec._kernels.philox4x32``, on 32-bit values in int64 lanes."""
    for _ in range(10):
        h0, l0 = _mulhilo(c0, 0xD2511F53)
        h1, l1 = _mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3
