"""The rounding step and the Philox stream, written once against an array namespace ``xp``.

``round_bits(xp, ub, Rh, Rl, plan)`` is the whole rounding rule of ``docs/rounding.md`` in
element-wise, branch-free integer operations that NumPy, torch and JAX (with 64-bit integers)
all provide, in the way gfloat's ``round_ndarray(..., np=xp)`` serves several array libraries.
It serves the NumPy core below the size where compiled kernels pay off (no compilation: the
first call answers in milliseconds) and ``lowprec_torch`` on any device. The compiled kernels
(Numba ``lowprec._kernels`` / ``_fast``, the JAX/Pallas 32-bit-lane step, Triton) follow the
same steps under the same names: ``_grid``, discarded fraction ``D``, ``_sr_decide``,
``_finish`` (code magnitude, overflow, zero), special inputs.

Lanes are int64 (torch has no arithmetic on uint32/uint64): the work type's bits (float32 bits
zero-extended, float64 bits as they are, sign included), the significand (at most 53 bits) and
the code. The 0.64 discarded fraction D and the random words R are (hi, lo) pairs of 32-bit
halves in int64 lanes, so sums and carries never overflow. ``plan`` is a ``lowprec.Plan``;
every parameter is read from it by name, at trace time, as a Python int.
"""
from __future__ import annotations

NO_CODE = -1   # a special code of -1: the input cannot be represented (the public call raises)

__all__ = ["round_bits", "round_parts", "philox", "random_words", "msb", "M32", "NO_CODE"]

M32 = 0xFFFFFFFF
INT64_MIN = -(1 << 63)


def _i64(xp, a):
    """``a`` (bool or integer array) as int64."""
    return a.astype(xp.int64) if hasattr(a, "astype") else a.to(xp.int64)


def _s64(v):
    """A 64-bit pattern (Python int, 0 <= v < 2^64) as the int64 holding the same bits."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(x, k):
    """x >> k for x >= 0 and per-element k >= 0 (0 when k >= 63)."""
    return x >> k.clip(0, 63)


def _mask(xp, k):
    """The low k bits set, for 0 <= k; k above 62 gives 62 bits (enough for every use here:
    the masked values have at most 53 bits)."""
    return (xp.ones_like(k) << k.clip(0, 62)) - 1


def _gt(ah, al, bh, bl):
    return (ah > bh) | ((ah == bh) & (al > bl))


def _shr64(xp, h, l, k):
    """The 64-bit (h, l) >> k for 0 <= k (per element), as a pair."""
    hk = _shr(h, k)
    lk = _shr(l, k) | ((h << (32 - k).clip(0, 31)) & M32)
    return hk, xp.where(k == 0, l, xp.where(k >= 32, _shr(h, k - 32), lk))


def _low64(xp, h, l, k):
    """The low k bits of (h, l), 0 <= k <= 64."""
    lo = xp.where(k >= 32, l, l & _mask(xp, k))
    hi = xp.where(k >= 32, h & _mask(xp, k - 32), xp.zeros_like(h))
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


def _sr_decide(xp, Dh, Dl, Rh, Rl, r, variant):
    """Stochastic rounding decision (``docs/rounding.md``): D the 0.64 discarded fraction
    (bit 0 sticky) as a pair, R the random words (only the low r bits are used). True = round
    away from zero. srff: floor(d 2^r) + R >= 2^r; srf: floor(d 2^(r+1)) + 2R + 1 >=
    2^(r+1); src / sr_odd / sr_nearest_odd: d rounded to r bits (nearest-even / to odd /
    nearest, ties to odd) + R >= 2^r."""
    full = lambda v: xp.full_like(Dh, v)  # noqa: E731
    if r < 64:
        Rh, Rl = _low64(xp, Rh, Rl, full(r))
    if variant == "srff":
        if r == 64:                                    # carry out of D + R
            return _sum_reaches(Dh, Dl, Rh, Rl, 64)
        th, tl = _shr64(xp, Dh, Dl, full(64 - r))
        return _sum_reaches(th, tl, Rh, Rl, r)
    if variant == "srf":
        th, tl = _shr64(xp, Dh, Dl, full(63 - r))
        R2h = (Rh << 1) | (Rl >> 31)
        R2l = ((Rl << 1) & M32) | 1
        return _sum_reaches(th, tl, R2h, R2l, r + 1)
    k = 64 - r
    th, tl = _shr64(xp, Dh, Dl, full(k))
    rh, rl = _low64(xp, Dh, Dl, full(k))
    if variant in ("src", "sr_nearest_odd"):           # round d to r bits, to nearest; a tie
        hh, hl = (1 << (k - 33), 0) if k - 1 >= 32 else (0, 1 << (k - 1))   # to even / odd
        up = _gt(rh, rl, hh, hl) | ((rh == hh) & (rl == hl) &
                                    ((tl & 1) == (1 if variant == "src" else 0)))
        tl = tl + _i64(xp, up)
        th, tl = th + (tl >> 32), tl & M32
    else:                                              # sr_odd: round d to r bits, to odd
        tl = tl | _i64(xp, (rh | rl) != 0)
    return _sum_reaches(th, tl, Rh, Rl, r)


def msb(xp, q):
    """Index of the leading one bit of 0 < q < 2^63 (q = 0 gives 0), by binary search."""
    msb = xp.zeros_like(q)
    for b in (32, 16, 8, 4, 2, 1):
        t = q >> b
        c = t != 0
        msb = msb + _i64(xp, c) * b
        q = xp.where(c, t, q)
    return msb


def _bits_of_int_times_pow2(xp, q, s, W):
    """Work-type bits of q * 2^s for integers 0 <= q < 2^53 whose product is a value of the
    work type (no rounding), built from integers (no backend's subnormal flushing applies)."""
    mw, bias = (23, 127) if W == 32 else (52, 1023)
    lead = msb(xp, q)
    e = lead + s                                         # exponent of the leading bit
    norm = ((e + bias) << mw) | ((q << (mw - lead).clip(0, 62)) & ((1 << mw) - 1))
    sub = q << max(0, min(s + bias - 1 + mw, 62))       # used only where e < 1 - bias
    return xp.where(q == 0, 0, xp.where(e >= 1 - bias, norm, sub))


def _grid(xp, E, p):
    """Where a value with exponent E (2^E <= |v| < 2^(E+1)) falls on the format's grid:
    (Et = max(E, emin), below the normal range?, fraction bits kept there)."""
    below = E < p.emin
    return E.clip(p.emin, None), below, xp.where(below, p.sub_man_bits, p.man_bits)


def _rounds_away(xp, neg, mode):
    """Where an overflow of this sign goes away from zero (IEEE 754 §7.4)."""
    if mode in ("nearest_even", "nearest_away", "stochastic"):
        return xp.ones_like(neg)
    if mode == "up":
        return ~neg
    if mode == "down":
        return neg
    return xp.zeros_like(neg)


def _overflow(xp, neg, away, p, c):
    """(code, bits) of a result beyond the largest value: the policy's value when rounding
    went away from zero, else the largest finite value."""
    code = xp.where(away, xp.where(neg, c(p.overflow_neg_code), c(p.overflow_pos_code)),
                  xp.where(neg, c(p.max_neg_code), c(p.max_pos_code)))
    val = xp.where(away, xp.where(neg, c(p.overflow_neg_bits), c(p.overflow_pos_bits)),
                 xp.where(neg, c(p.max_neg_bits), c(p.max_pos_bits)))
    return code, val


def round_bits(xp, ub, Rh, Rl, p):
    """(code, value bits) of every element of the work-type bits ``ub`` (int64: float32 bits
    zero-extended, or float64 bits) rounded as the plan ``p`` says. ``Rh``, ``Rl``: the random
    words' 32-bit halves (int64; None unless stochastic). Codes are int64 (``NO_CODE`` where
    the public call raises: a NaN the format cannot hold); value bits are the work type's
    pattern, sign included, as int64."""
    W, mw, bw = p.work_bits, p.work_man_bits, p.work_bias
    neg = ub < 0 if W == 64 else (ub >> 31) == 1
    s = _i64(xp, neg)
    a = ub & ((1 << (W - 1)) - 1)
    winf = ((1 << (W - 1 - mw)) - 1) << mw
    special = a >= winf
    isnan = a > winf
    ew = a >> mw
    sig = (a & ((1 << mw) - 1)) | (_i64(xp, ew != 0) << mw)
    E = ew.clip(1, None) - bw
    Et, below, meff = _grid(xp, E, p)
    sub = (ew == 0) & (E <= p.emin)            # a work-type subnormal lies below 2^emin too
    below = below | sub
    meff = xp.where(below, p.sub_man_bits, p.man_bits)
    sh = mw - meff + (Et - E)
    q = _shr(sig, sh)
    # D, the discarded fraction as 0.64 fixed point (bit 0 sticky), as two 32-bit halves
    rem = sig & _mask(xp, sh)
    k = (sh - 64).clip(0, 63)
    deep = _shr(sig, k) | _i64(xp, (sig & _mask(xp, k)) != 0)
    Dh = xp.where(sh <= 32, rem << (32 - sh).clip(0, 32),
                xp.where(sh <= 64, _shr(rem, sh - 32), deep >> 32))
    Dl = xp.where(sh <= 32, xp.zeros_like(rem),
                xp.where(sh <= 64, (rem & _mask(xp, sh - 32)) << (64 - sh).clip(0, 31),
                       deep & M32))
    inc = _increment(xp, p, neg, q, Dh, Dl, Rh, Rl)
    return _finish(xp, p, _constant(p), neg, s, a, q + _i64(xp, inc), Et, below, meff, special,
                   isnan)


def _constant(p):
    """A plan's code or bit pattern as the int64 holding it in the work type's lanes."""
    if p.work_bits == 32:
        return lambda v: v if v == NO_CODE else v & M32
    return lambda v: v if v == NO_CODE else _s64(v)


def round_parts(xp, neg, q, Dh, Dl, T, Rh, Rl, p):
    """(code, value bits) of finite nonzero exact values already cut at the format's grid:
    |v| = (q + d) * 2^(Et - kept) with Et = max(T, emin) (``_grid``), T the exponent of v's
    leading bit (clamped to at most 1024: beyond every range, still an overflow), d the
    discarded fraction as the 0.64 pair (Dh, Dl) with a sticky last bit. The exact arithmetic
    (``lowprec.exact``) produces these; the decision and the code are the step's own."""
    Et, below, meff = _grid(xp, T, p)
    s = _i64(xp, neg)
    inc = _increment(xp, p, neg, q, Dh, Dl, Rh, Rl)
    no = xp.zeros_like(neg)
    return _finish(xp, p, _constant(p), neg, s, xp.ones_like(q), q + _i64(xp, inc), Et, below,
                   meff, no, no)


def _increment(xp, p, neg, q, Dh, Dl, Rh, Rl):
    """Whether the mode moves the truncated magnitude q up by one quantum."""
    nz = (Dh | Dl) != 0
    mode = p.mode
    if mode == "nearest_even":
        return _gt(Dh, Dl, 1 << 31, 0) | ((Dh == 1 << 31) & (Dl == 0) & ((q & 1) == 1))
    if mode == "nearest_away":
        return Dh >= 1 << 31
    if mode == "up":
        return nz & ~neg
    if mode == "down":
        return nz & neg
    if mode == "odd":
        return nz & ((q & 1) == 0)
    if mode == "stochastic":
        return nz & _sr_decide(xp, Dh, Dl, Rh, Rl, p.sr_bits, p.sr_variant)
    return xp.zeros_like(nz)


def _finish(xp, p, c, neg, s, a, q, Et, below, meff, special, isnan):
    """Code and value bits of the rounded magnitude q on the grid at Et: the code magnitude
    (monotone in |x|), overflow by one comparison, zero results, then special inputs."""
    W, mw, bw, mt, emin = p.work_bits, p.work_man_bits, p.work_bias, p.man_bits, p.emin
    cm = ((Et - emin) << mt) + (q << (mt - meff)) + p.code_base
    maxm = xp.where(neg, p.max_code_neg, p.max_code_pos)
    ovf = (cm > maxm) | (neg & (maxm < 0))
    away = _rounds_away(xp, neg, p.mode)
    vb_sub = _bits_of_int_times_pow2(xp, q, p.subnormal_step_exp, W)
    vb_norm = ((Et + bw - 1) << mw) + (q << (mw - mt))
    vb = xp.where(below, vb_sub, vb_norm)
    vb = xp.where(neg, vb | (1 << 31) if W == 32 else vb | INT64_MIN, vb)
    if p.kind == "twos_complement":
        code = xp.where(neg, (-cm) & p.code_mask, cm)
    elif p.kind == "sign_magnitude":
        code = cm | (s << p.sign_bit)
    else:
        code = cm
    zero = cm <= 0
    nozero = (cm < 0) | (p.code_base < 0)               # a format without zero (E8M0)
    negz = neg & p.neg_zero
    negz_v = (1 << 31) if W == 32 else INT64_MIN
    negz_c = c(1 << p.sign_bit) if p.sign_bit < 63 else INT64_MIN
    z_code = xp.where(nozero, xp.where(a == 0, c(p.zero_in_code), c(p.min_code)),
                    xp.where(negz, negz_c, 0))
    z_val = xp.where(nozero, xp.where(a == 0, c(p.zero_in_bits), c(p.min_bits)),
                   xp.where(negz, negz_v, 0))
    code = xp.where(zero, z_code, code)
    vb = xp.where(zero, z_val, vb)
    oc, ov = _overflow(xp, neg, away, p, c)
    code = xp.where(ovf, oc, code)
    vb = xp.where(ovf, ov, vb)
    sc, sv = _overflow(xp, neg, xp.ones_like(ovf), p, c)    # +-Inf input: an overflow away
    nc = xp.where(neg, c(p.nan_neg_code), c(p.nan_pos_code))
    nv = xp.where(neg, c(p.nan_neg_bits), c(p.nan_pos_bits))
    code = xp.where(special, xp.where(isnan, nc, sc), code)
    vb = xp.where(special, xp.where(isnan, nv, sv), vb)
    return code, vb


# ---- the Philox stream --------------------------------------------------------------------

def _mulhilo(a, b):
    """(hi, lo) 32-bit words of the 64-bit product of 32-bit values a, b (int64 lanes)."""
    p0 = (a & 0xFFFF) * b                               # < 2^48
    p1 = (a >> 16) * b                                  # < 2^48
    mid = p0 + ((p1 & 0xFFFF) << 16)                    # < 2^49
    return (p1 >> 16) + (mid >> 32), mid & M32


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al., SC'11) on 32-bit values in int64 lanes: key (k0, k1),
    counter (c0..c3); returns the four output words. Each round: (hi0, lo0) = 0xD2511F53 * c0,
    (hi1, lo1) = 0xCD9E8D57 * c2, c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0), then the key
    grows by (0x9E3779B9, 0xBB67AE85)."""
    for _ in range(10):
        h0, l0 = _mulhilo(c0, 0xD2511F53)
        h1, l1 = _mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def random_words(xp, seed, n, wide=False, offset=0, device=None):
    """(hi, lo) int64 halves of the seeded random words of elements offset .. offset + n - 1
    (``docs/rounding.md``): stream word k is word k % 4 of Philox4x32-10 at counter
    (k // 4 as two 32-bit halves, 0, 0), key (seed_lo, seed_hi); element i takes word i
    (``wide``: words 2i, the low half, and 2i + 1). hi is 0 unless ``wide``."""
    per = 2 if wide else 4                              # elements per Philox block
    first = offset // per
    nq = (offset + n + per - 1) // per - first
    kw = {} if device is None else {"device": device}
    q = xp.arange(nq, dtype=xp.int64, **kw) + first
    z = xp.zeros_like(q)
    w = philox(q & M32, q >> 32, z, z, seed & M32, seed >> 32)
    cut = offset - first * per
    if wide:
        lo = xp.stack([w[0], w[2]], 1).reshape(-1)[cut:cut + n]
        hi = xp.stack([w[1], w[3]], 1).reshape(-1)[cut:cut + n]
        return hi, lo
    lo = xp.stack(list(w), 1).reshape(-1)[cut:cut + n]
    return xp.zeros_like(lo), lo
