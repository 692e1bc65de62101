"""The core's rounding step (``_round_bits`` (lowprec/_kernels.py) / ``_finish`` / ``_sr_decide``)
written in ``jax.numpy`` integer operations, element-wise and branch-free, so that it runs under
``jax.jit`` / ``jax.vmap`` on any backend and gives the core's bits.

Float32 inputs work in uint32 lanes (no 64-bit integers needed: JAX's default ``x64`` off);
float64 inputs (``jax_enable_x64``) in uint64 lanes. The 0.64 discarded fraction D and 64-bit
random words are carried as two uint32 halves in both cases. Parameters come from
the rounding plan (``lowprec.Plan``, the object every backend reads) by field name, as Python
ints at trace time. The same steps under the same names as the array-API step
``lowprec.xstep``, in 32-bit lanes: JAX without ``jax_enable_x64`` has no 64-bit integers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from ._clz import clz

U32 = jnp.uint32


def _shr(x, k, width):
    """x >> k for per-element k >= 0 (0 when k >= width)."""
    kk = jnp.minimum(k, width - 1).astype(x.dtype)
    return jnp.where(k >= width, jnp.zeros_like(x), x >> kk)


def _shl(x, k, width):
    """x << k for per-element k >= 0 (0 when k >= width)."""
    kk = jnp.minimum(k, width - 1).astype(x.dtype)
    return jnp.where(k >= width, jnp.zeros_like(x), x << kk)


def _mask(k, width, dtype):
    """Low k bits set, 0 <= k <= width."""
    one = jnp.ones_like(k, dtype=dtype)
    h = one << dtype(width - 1)
    full = (h - one) | h                 # all ones, with no constant >= 2^63 (see _u)
    return jnp.where(k >= width, full, _shl(one, k, width) - one)


# ---- 64-bit quantities as (hi, lo) uint32 pairs -------------------------------------------

def _gt(ah, al, bh, bl):
    return (ah > bh) | ((ah == bh) & (al > bl))


def _shr64(h, l, k):
    """(h, l) >> k for 0 <= k <= 64 (per element)."""
    hk = _shr(h, k, 32)
    lk = _shr(l, k, 32) | _shl(h, 32 - k, 32)
    lk = jnp.where(k == 0, l, lk)
    lk = jnp.where(k >= 32, _shr(h, k - 32, 32), lk)
    return jnp.where(k >= 64, U32(0), hk), jnp.where(k >= 64, U32(0), lk)


def _low64(h, l, k):
    """The low k bits of (h, l), 0 <= k <= 64."""
    lo = jnp.where(k >= 32, l, l & _mask(k, 32, U32))
    hi = jnp.where(k >= 32, h & _mask(k - 32, 32, U32), U32(0))
    return hi, lo


def _sr_decide(Dh, Dl, Rh, Rl, r, variant):
    """``_kernels._sr_decide`` on pairs: D the 0.64 discarded fraction (bit 0 sticky), R the r
    low random bits. True = round away from zero."""
    if r < 64:
        Rh, Rl = _low64(Rh, Rl, jnp.full_like(Rh, r, dtype=jnp.int32))
    if variant == "srff":
        if r == 64:                                    # carry out of D + R
            lo = Dl + Rl
            c = (lo < Dl).astype(U32)
            hi = Dh + Rh
            c1 = hi < Dh
            hi2 = hi + c
            return c1 | (hi2 < hi)
        th, tl = _shr64(Dh, Dl, jnp.full_like(Dh, 64 - r, dtype=jnp.int32))
        return _sum_reaches(th, tl, Rh, Rl, r)
    if variant == "srf":                               # t2 + 2R + 1 >= 2^(r+1)
        th, tl = _shr64(Dh, Dl, jnp.full_like(Dh, 63 - r, dtype=jnp.int32))
        R2h = (Rh << 1) | (Rl >> 31)
        R2l = (Rl << 1) | U32(1)
        return _sum_reaches(th, tl, R2h, R2l, r + 1)
    k = 64 - r
    kk = jnp.full_like(Dh, k, dtype=jnp.int32)
    th, tl = _shr64(Dh, Dl, kk)
    rh, rl = _low64(Dh, Dl, kk)
    if variant in ("src", "sr_nearest_odd"):           # nearest; a tie to even / odd
        hh, hl = (U32(1 << (k - 33)), U32(0)) if k - 1 >= 32 else (U32(0), U32(1 << (k - 1)))
        up = _gt(rh, rl, hh, hl) | ((rh == hh) & (rl == hl) &
                                    ((tl & 1) == (1 if variant == "src" else 0)))
    else:                                              # SR-odd: round d to r bits, to odd
        up = jnp.zeros_like(Dh, dtype=bool)
        tl = tl | ((rh | rl) != 0).astype(U32)
    if variant != "sr_odd":
        tl2 = tl + up.astype(U32)
        th = th + (tl2 < tl).astype(U32)
        tl = tl2
    return _sum_reaches(th, tl, Rh, Rl, r)


def _sum_reaches(th, tl, Rh, Rl, r):
    """t + R >= 2^r for 64-bit pairs t, R < 2^r (r <= 64)."""
    lo = tl + Rl
    carry = (lo < tl).astype(U32)
    hi = th + Rh + carry
    if r >= 64:
        return jnp.zeros_like(th, dtype=bool)
    if r >= 32:
        return hi >= U32(1 << (r - 32)) if r < 64 else jnp.zeros_like(th, dtype=bool)
    return (hi != 0) | (lo >= U32(1 << r))


# ---- the rounding step ------------------------------------------------------------------------

def round_bits_impl(ub, Rh, Rl, P):
    """(code, value bits) of every element of the work-type bits ``ub`` (uint32 for W = 32,
    uint64 for W = 64) rounded as the plan ``P`` (a ``lowprec.Plan``) says, both
    unsigned of that width; the code is all ones where the core would raise (a NaN the format
    cannot hold). Compiled once per parameter tuple and input shape."""
    W = P.work_bits
    ut = ub.dtype.type
    it = jnp.int32 if W == 32 else jnp.int64
    mw, bw, mt, emin, mb = P.work_man_bits, P.work_bias, P.man_bits, P.emin, P.sub_man_bits
    mode = P.mode
    s = (ub >> (W - 1)).astype(it)
    top = (s.astype(ut) | ut(1)) << ut(W - 1)          # 2^(W-1), staged (see _u)
    a = ub & ut((1 << (W - 1)) - 1)
    winf = ((1 << (W - 1 - mw)) - 1) << mw
    special = a >= winf
    isnan = a > winf
    ew = (a >> mw).astype(it)
    sig = (a & ut((1 << mw) - 1)) | ((ew != 0).astype(ut) << mw)
    E = jnp.maximum(ew, 1) - bw
    below = (E < emin) | ((ew == 0) & (E <= emin))    # a work-type subnormal is below too
    Et = jnp.maximum(E, emin)
    meff = jnp.where(below, mb, mt).astype(it)
    sh = (mw - meff + (Et - E)).astype(jnp.int32)
    q = _shr(sig, sh, W).astype(it)
    # D, the discarded fraction as 0.64 fixed point (bit 0 sticky), as two uint32 halves.
    # Float32 inputs under a decision that reads at most D's top 32 bits (every mode but SR
    # with 64 random bits or variant srf/src/sr_odd/sr_nearest_odd) carry only the high half
    # Dh: below it
    # every bit only says "non-zero", which rem != 0 says (a third of the graph to compile).
    lean = W == 32 and (mode != "stochastic" or (P.sr_variant == "srff" and P.sr_bits <= 32))
    rem = sig & _mask(sh, W, ut)
    if lean:
        Dh = jnp.where(sh <= 32, _shl(rem, 32 - sh, 32), _shr(sig, sh - 32, 32))
        Dl = U32(0)                                    # where Dh can be >= 2^31, D is Dh
        nz = rem != 0
    elif W == 32:
        s32 = sh
        hi = jnp.where(s32 <= 32, _shl(rem, 32 - s32, 32), _shr(sig, s32 - 32, 32))
        lo = jnp.where((s32 > 32) & (s32 < 64), _shl(sig, 64 - s32, 32), U32(0))
        k = jnp.minimum(s32 - 64, 63)
        deep = _shr(sig, k, 32) | ((sig & _mask(jnp.maximum(k, 0), 32, U32)) != 0).astype(U32)
        Dh = jnp.where(s32 >= 64, U32(0), hi)
        Dl = jnp.where(s32 >= 64, deep, lo)
        nz = (Dh | Dl) != 0
    else:
        D = jnp.where(sh < 64, _shl(rem, 64 - sh, 64), ut(0))
        k = jnp.minimum(sh - 64, 63)
        deep = _shr(sig, k, 64) | ((sig & _mask(jnp.maximum(k, 0), 64, ut)) != 0).astype(ut)
        D = jnp.where(sh >= 64, deep, jnp.where(rem == 0, ut(0), D))
        Dh, Dl = (D >> 32).astype(U32), (D & ut(0xFFFFFFFF)).astype(U32)
        nz = (Dh | Dl) != 0
    if mode == "nearest_even":
        inc = _gt(Dh, Dl, U32(1 << 31), U32(0)) | ((Dh == U32(1 << 31)) & (Dl == 0) & (
            (q & 1) == 1))
    elif mode == "nearest_away":
        inc = Dh >= U32(1 << 31)
    elif mode == "up":
        inc = nz & (s == 0)
    elif mode == "down":
        inc = nz & (s == 1)
    elif mode == "odd":
        inc = nz & ((q & 1) == 0)
    elif mode == "stochastic" and lean:                # srff, r <= 32: t + R >= 2^r
        r = P.sr_bits
        t = Dh >> U32(32 - r)
        R = Rl & U32((1 << r) - 1) if r < 32 else Rl
        inc = nz & ((t + R < t) if r == 32 else (t + R >= U32(1 << r)))
    elif mode == "stochastic":
        inc = nz & _sr_decide(Dh, Dl, Rh, Rl, P.sr_bits, P.sr_variant)
    else:
        inc = jnp.zeros_like(nz)
    q = q + inc.astype(it)
    cm = ((Et - emin) << mt) + (q << (mt - meff)) + P.code_base
    maxm = jnp.where(s == 1, P.max_code_neg, P.max_code_pos)
    ovf = (cm > maxm) | ((s == 1) & (maxm < 0))
    away = _rounds_away(s, mode)
    # value bits of a finite result (subnormal results built from integers)
    vb_sub = int_times_pow2_bits(q, P.subnormal_step_exp, W)
    vb_norm = (((Et + bw - 1) << mw) + (q << (mw - mt))).astype(ut)
    vb = jnp.where(below, vb_sub, vb_norm) | (s.astype(ut) << (W - 1))
    kind = P.kind
    if kind == "twos_complement":
        cmask = P.code_mask if P.code_mask < 1 << 63 else -1
        code = jnp.where(s == 1, (-cm) & cmask, cm).astype(ut)
    elif kind == "sign_magnitude":
        code = cm.astype(ut) | (s.astype(ut) << P.sign_bit)
    else:
        code = cm.astype(ut)
    # zero results
    zero = cm <= 0
    nozero = (cm < 0) | (P.code_base < 0)
    negz = (s == 1) & P.neg_zero
    z_code = jnp.where(nozero, jnp.where(a == 0, _u(P.zero_in_code, ut, top), _u(P.min_code, ut, top)),
                       jnp.where(negz, _u(1 << P.sign_bit, ut, top), _u(0, ut, top)))
    z_val = jnp.where(nozero, jnp.where(a == 0, _u(P.zero_in_bits, ut, top), _u(P.min_bits, ut, top)),
                      jnp.where(negz, _u(1 << (W - 1), ut, top), _u(0, ut, top)))
    code = jnp.where(zero, z_code, code)
    vb = jnp.where(zero, z_val, vb)
    # overflow, then special inputs
    oc, ov = _overflow(s, away, P, ut, top)
    code = jnp.where(ovf, oc, code)
    vb = jnp.where(ovf, ov, vb)
    sc, sv = _overflow(s, jnp.ones_like(ovf), P, ut, top)
    nc = jnp.where(s == 1, _u(P.nan_neg_code, ut, top), _u(P.nan_pos_code, ut, top))
    nv = jnp.where(s == 1, _u(P.nan_neg_bits, ut, top), _u(P.nan_pos_bits, ut, top))
    code = jnp.where(special, jnp.where(isnan, nc, sc), code)
    vb = jnp.where(special, jnp.where(isnan, nv, sv), vb)
    return code, vb


def int_times_pow2_bits(q, s, W):
    """Bits of the work-type value q * 2^s, for integers 0 <= q < 2^(W - 1) whose product is
    a value of the work type (no rounding); integer operations only, so that no backend's
    subnormal flushing (XLA's CPU backend flushes float results below the normal range)
    touches it."""
    ut = jnp.uint32 if W == 32 else jnp.uint64
    it = jnp.int32 if W == 32 else jnp.int64
    mw, bias = (23, 127) if W == 32 else (52, 1023)
    qu = q.astype(ut)
    msb = (W - 1) - clz(jnp.where(qu == 0, ut(1), qu)).astype(it)
    e = msb + s                                         # exponent of the leading bit
    norm = ((e + bias).astype(ut) << mw) | (_shl(qu, mw - msb, W) & ut((1 << mw) - 1))
    sub = _shl(qu, jnp.full_like(msb, s + bias - 1 + mw), W)
    return jnp.where(qu == 0, ut(0), jnp.where(e >= 1 - bias, norm, sub))


def _u(v, ut, top):
    """A parameter (int64 in P, possibly negative for 64-bit patterns) as an unsigned scalar.
    A 64-bit pattern with its top bit set takes that bit from ``top`` (a traced array of
    2^63s), since Pallas' Triton lowering cannot hold a constant of 2^63 or more."""
    v &= (1 << (8 * np.dtype(ut).itemsize)) - 1
    if v >= 1 << 63:
        return ut(v - (1 << 63)) | top
    return ut(v)


def _rounds_away(s, mode):
    if mode in ("nearest_even", "nearest_away", "stochastic"):
        return jnp.ones_like(s, dtype=bool)
    if mode == "up":
        return s == 0
    if mode == "down":
        return s == 1
    return jnp.zeros_like(s, dtype=bool)


def _overflow(s, away, P, ut, top):
    neg = s == 1
    code = jnp.where(away, jnp.where(neg, _u(P.overflow_neg_code, ut, top), _u(P.overflow_pos_code, ut, top)),
                     jnp.where(neg, _u(P.max_neg_code, ut, top), _u(P.max_pos_code, ut, top)))
    val = jnp.where(away, jnp.where(neg, _u(P.overflow_neg_bits, ut, top), _u(P.overflow_pos_bits, ut, top)),
                    jnp.where(neg, _u(P.max_neg_bits, ut, top), _u(P.max_pos_bits, ut, top)))
    return code, val


round_bits = jax.jit(round_bits_impl, static_argnames=("P",))
round_bits.__doc__ = round_bits_impl.__doc__


# ---- the values-only step of power-of-two-scaled blocks -----------------------------------------

_LEAN_MODES = ("nearest_even", "nearest_away", "up", "down", "toward_zero", "odd", "stochastic")


def scaled_values_ok(P, e_min, nonnegative=False):
    """Can ``round_scaled_values`` round to the plan ``P`` with scale exponents >= ``e_min``?
    A float32 work type, a sign-magnitude element format (or, for ``nonnegative`` inputs, an
    unsigned one: the same magnitudes) whose subnormals keep its mantissa width, saturating,
    every grid step (2^(emin - man_bits + e)) at least 2^-149, the largest value times 2^e a
    normal float32, and a mode whose decision reads
    at most 32 discarded bits (SR: srff with up to 32 random bits)."""
    kinds = ("sign_magnitude", "unsigned") if nonnegative else ("sign_magnitude",)
    return (P.work_bits == 32 and P.kind in kinds and P.code_base == 0
            and P.sub_man_bits == P.man_bits and 0 < P.man_bits <= 22
            and P.overflow == "saturate" and P.emin - P.man_bits + e_min >= -149
            and (int(P.max_pos_bits) >> 23) + e_min >= 1
            and P.mode in _LEAN_MODES
            and (P.mode != "stochastic" or (P.sr_variant == "srff" and P.sr_bits <= 32)))


def round_scaled_values(ub, e, Rl, P):
    """The float32 bits of (x 2^-e rounded as ``P`` says) times 2^e, for float32 bits ``ub``
    and int32 scale exponents ``e`` (broadcast): the value ``_round_bits`` gives a block
    element, then the exact product by the block scale, on integers alone (no float32
    arithmetic, so no backend's subnormal flushing can change a bit) and without forming
    x 2^-e. The grid at x has the step 2^s, s = max(E, emin + e) - man_bits (E: x's
    exponent), which is x's last place times 2^d; x's significand sig loses its d low bits
    as ``P`` decides from them (rem) and the kept part (q). Where q >= 1 (d <= 23) the result
    is x's bits with the d low bits cleared plus the increment at bit d (a carry moves into
    the exponent field, which the bits of a float32 allow); where q = 0, x lies below one
    step and the result is 0 or 2^s. Then the largest value times 2^e caps it (saturation,
    and Inf). ``Rl``: the random words (stochastic rounding; None otherwise). Finite x, or
    Inf (saturated to the largest value); the caller gives NaN blocks their NaN. Only where
    ``scaled_values_ok``."""
    mt, emin = P.man_bits, P.emin
    # lax operations (jnp's operators trace several times slower; every block site runs this)
    u, i = np.uint32, np.int32
    I32 = jnp.int32
    e = lax.convert_element_type(e, I32)               # int64 under jax_enable_x64
    a = lax.bitwise_and(ub, u(0x7FFFFFFF))
    ewc = lax.max(lax.convert_element_type(lax.shift_right_logical(a, u(23)), I32), i(1))
    # |x| = sig 2^(ewc - 150): the implicit bit set where x is normal, a itself where not
    sig = lax.sub(a, lax.convert_element_type(lax.shift_left(lax.sub(ewc, i(1)), i(23)), U32))
    # the place of sig's leading one, from its float32 (exact): 23 where x is normal
    lead = lax.sub(lax.convert_element_type(lax.shift_right_logical(lax.bitcast_convert_type(
        lax.convert_element_type(sig, jnp.float32), U32), u(23)), I32), i(127))
    # d = s - (ewc - 150): the grid's step over x's last place, in x's binade (lead - mt)
    # or, below the element's normal range, emin + e - mt over it
    top = lax.add(e, i(emin + 127 + 23 - mt))
    d = lax.max(lax.sub(lead, i(mt)), lax.sub(top, ewc))
    dc = lax.convert_element_type(lax.min(d, i(31)), U32)
    rem = lax.bitwise_and(sig, lax.sub(lax.shift_left(u(1), dc), u(1)))
    q = lax.shift_right_logical(sig, dc)
    mode = P.mode
    if mode in ("nearest_even", "nearest_away"):
        # 2 rem against 2^dc (rem < 2^24, dc <= 31: no overflow; dc = 0: rem = 0):
        # nearest-away goes up from the half, nearest-even past it, or at it when q is odd
        two_rem, step = lax.shift_left(rem, u(1)), lax.shift_left(u(1), dc)
        if mode == "nearest_even":
            inc = lax.gt(lax.add(two_rem, lax.bitwise_and(q, u(1))), step)
        else:
            inc = lax.ge(two_rem, step)
    elif mode == "stochastic":                         # srff: t + R >= 2^r, t = D's top r bits
        r = P.sr_bits
        up_sh = lax.convert_element_type(lax.clamp(i(0), lax.sub(i(32), d), i(31)), U32)
        dn_sh = lax.convert_element_type(lax.clamp(i(0), lax.sub(d, i(32)), i(31)), U32)
        Dh = lax.shift_right_logical(lax.shift_left(rem, up_sh), dn_sh)
        t = lax.shift_right_logical(Dh, u(32 - r))
        R = lax.bitwise_and(Rl, u((1 << r) - 1)) if r < 32 else Rl
        tR = lax.add(t, R)
        inc = lax.lt(tR, t) if r == 32 else lax.ge(tR, u(1 << r))
    elif mode in ("up", "down"):
        inc = lax.bitwise_and(lax.ne(rem, u(0)), lax.eq(lax.shift_right_logical(ub, u(31)),
                                                         u(0 if mode == "up" else 1)))
    elif mode == "odd":
        inc = lax.bitwise_and(lax.ne(rem, u(0)), lax.eq(lax.bitwise_and(q, u(1)), u(0)))
    else:                                              # toward zero
        inc = lax.full_like(rem, False, jnp.bool_)
    incu = lax.convert_element_type(inc, U32)
    cut = lax.add(lax.sub(a, rem), lax.shift_left(incu, dc))
    # 2^s from the exponent field where it is normal (d >= 23: a normal x below one step,
    # or a subnormal x's step from 2^-126 up), else x's own linear bits (1 << d)
    one_step = jnp.where(lax.ge(d, i(23)), lax.convert_element_type(lax.shift_left(
        lax.add(ewc, lax.sub(d, i(23))), i(23)), U32), lax.shift_left(u(1), dc))
    v = jnp.where(lax.eq(q, u(0)), jnp.where(inc, one_step, u(0)), cut)
    top_value = lax.add(i(int(P.max_pos_bits)), lax.shift_left(e, i(23)))   # normal
    v = lax.min(v, lax.convert_element_type(top_value, U32))
    sign = lax.bitwise_and(ub, u(0x80000000))
    if not P.neg_zero:
        sign = jnp.where(lax.eq(v, u(0)), u(0), sign)
    return lax.bitwise_or(v, sign)
