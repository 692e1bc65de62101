"""Float64 bits as integers for the JAX accumulators: significand/exponent parts, exact two-operand
sums rounded to odd in float64 (Boldo & Melquiond 2008), the fused adder's term alignment, and
the one rounding into the accumulator (``Rounder``: the core's step on the plan, with the
core's seeded words). The Numba counterparts are in lowprec/_accumulate.py and lowprec/_exact.py."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

import lowprec as lp
from lowprec.rounding import check_random_source

from ._clz import clz
from ._round import round_bits_impl
from .stream import philox as _philox

_F64 = lp.format("float64")
I64, U64, U32 = jnp.int64, jnp.uint64, jnp.uint32
TRUNC, FLOOR, NEAREST = 0, 1, 2
FIN, INF, NAN, NEGZERO = 0, 1, 2, 3
MASK52 = (1 << 52) - 1
QNAN = np.uint64(0x7FF8 << 48)          # the positive quiet NaN every NaN result becomes
_INF = np.uint64(0x7FF << 52)


def _f64_bits(x):
    """float64 bits of a float array, converting float32 / float16 / bfloat16 bits exactly with
    integer operations (a float conversion may flush float32 subnormals)."""
    if x.dtype == jnp.float64:
        return lax.bitcast_convert_type(x, U64)
    b = lax.bitcast_convert_type(x.astype(jnp.float32), U32).astype(U64)
    neg = b >> 31
    ef = ((b >> 23) & 0xFF).astype(I64)
    mant = b & U64(0x7FFFFF)
    lz = clz(jnp.where(mant == 0, U64(1), mant)).astype(I64) - 40   # msb to bit 23
    norm = ((ef - 127 + 1023).astype(U64) << 52) | (mant << 29)
    sub_e = (-126 - lz + 1023).astype(U64)
    sub = (sub_e << 52) | ((mant << jnp.clip(lz, 0, 63).astype(U64)) & U64(0x7FFFFF)) << 29
    out = jnp.where(ef == 0, jnp.where(mant == 0, U64(0), sub), norm)
    out = jnp.where(ef == 0xFF, (U64(0x7FF) << 52) | (mant << 29), out)
    return out | (neg << 63)


def _f32_from_f64_bits(b):
    """float32 bits of float64 values that float32 holds exactly (integer operations)."""
    neg = (b >> 63).astype(U32)
    ef = ((b >> 52) & 0x7FF).astype(I64)
    mant = b & U64(MASK52)
    e = ef - 1023
    norm = ((e + 127).astype(U64) << 23) | (mant >> 29)
    sig = mant | (U64(1) << 52)
    sub = sig >> jnp.clip(29 + (-126 - e), 0, 63).astype(U64)
    out = jnp.where(e >= -126, norm, sub)
    out = jnp.where(ef == 0, U64(0), out)
    out = jnp.where(ef == 0x7FF, (U64(0xFF) << 23) | (mant >> 29), out)
    return out.astype(U32) | (neg << 31)


def _parts(b):
    """(signed m, e, flag) of float64 bits: value m * 2^e, |m| < 2^53; flag FIN / INF / NAN /
    NEGZERO. Infinities get m = +-1."""
    neg = (b >> 63) == 1
    ew = ((b >> 52) & 0x7FF).astype(I64)
    mant = (b & U64(MASK52)).astype(I64)
    m = mant | (jnp.where(ew != 0, I64(1), I64(0)) << 52)
    e = jnp.maximum(ew, 1) - 1075
    flag = jnp.where(ew == 0x7FF, jnp.where(mant == 0, INF, NAN),
                     jnp.where((m == 0) & neg, NEGZERO, FIN)).astype(jnp.int8)
    m = jnp.where(ew == 0x7FF, I64(1), m)
    return jnp.where(neg, -m, m), e, flag


def _bits_odd(neg, mag, x):
    """float64 bits of +-mag * 2^x (0 < mag < 2^63), rounded to odd to 53 bits when it has
    more (exact otherwise). The exponent stays in float64's normal range here."""
    magu = mag.astype(U64)
    msb = 63 - clz(magu).astype(I64)
    sh = jnp.maximum(msb - 52, 0)
    q = magu >> sh.astype(U64)
    lost = (magu & ((U64(1) << sh.astype(U64)) - U64(1))) != 0
    q = q | lost.astype(U64)
    top = msb - sh                                         # q's msb position (<= 52)
    q = q << (52 - top).astype(U64)                        # leading bit at 52
    e = x + sh + top                                       # exponent of the leading bit
    bits = ((e + 1023).astype(U64) << 52) | (q & U64(MASK52))
    return bits | (neg.astype(U64) << 63)


def _zero(neg):
    return neg.astype(U64) << 63


def _sum_odd(b1, b2, down):
    """b1 + b2 (float64 bits, finite) exactly, rounded to odd in float64; IEEE signed zeros
    (``down``: the rounding is toward -Inf, where x - x = -0)."""
    m1, e1, _ = _parts(b1)
    m2, e2, _ = _parts(b2)
    first = e1 >= e2
    mL, eL = jnp.where(first, m1, m2), jnp.where(first, e1, e2)
    mS, eS = jnp.where(first, m2, m1), jnp.where(first, e2, e1)
    k = eL - 9 - eS                                        # units of 2^(eL - 9)
    aS = jnp.abs(mS)
    left = aS << jnp.clip(-k, 0, 9)
    kk = jnp.clip(k, 0, 63)
    right = (aS >> kk) | ((aS & ((I64(1) << kk) - 1)) != 0).astype(I64)
    right = jnp.where(k >= 63, (aS != 0).astype(I64), right)
    sS = jnp.where(k <= 0, left, right)
    T = (mL << 9) + jnp.where(mS < 0, -sS, sS)
    out = _bits_odd(T < 0, jnp.abs(T), eL - 9)
    z1, z2 = m1 == 0, m2 == 0
    n1, n2 = (b1 >> 63) == 1, (b2 >> 63) == 1
    both_zero = _zero((n1 & n2) | (down & (n1 | n2)))
    out = jnp.where(T == 0, _zero(jnp.full(T.shape, down)), out)
    out = jnp.where(z1, b2, jnp.where(z2, b1, out))
    return jnp.where(z1 & z2, both_zero, out)


def _sum(b1, b2, down):
    """``_sum_odd`` where both are finite; else the IEEE sum of the infinities and NaNs
    (float64 arithmetic is exact on them), a NaN made the positive quiet NaN."""
    special = ((b1 >> 52) & 0x7FF == 0x7FF) | ((b2 >> 52) & 0x7FF == 0x7FF)
    f = lambda b: lax.bitcast_convert_type(  # noqa: E731
        jnp.where((b >> 52) & 0x7FF == 0x7FF, b, U64(0)), jnp.float64)
    sp = f(b1) + f(b2)
    sp = jnp.where(jnp.isnan(sp), QNAN, lax.bitcast_convert_type(sp, U64))
    return jnp.where(special, sp, _sum_odd(b1, b2, down))


def _align(p, sh, mode):
    """``_align`` (lowprec/_accumulate.py): p * 2^sh to an integer by truncation, floor or nearest
    even (p signed int64)."""
    up = p << jnp.clip(sh, 0, 62)
    k = jnp.clip(-sh, 0, 62)
    a = jnp.abs(p)
    if mode == FLOOR:
        down = p >> k
    else:
        q = a >> k
        if mode == NEAREST:
            rem = a & ((I64(1) << k) - 1)
            half = jnp.where(k > 0, I64(1) << jnp.maximum(k - 1, 0), I64(0))
            q = q + ((k > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))).astype(I64)
        down = jnp.where(p < 0, -q, q)
    far = jnp.where((mode == FLOOR) & (p < 0), I64(-1), I64(0))
    down = jnp.where(-sh >= 62, far, down)
    return jnp.where(sh >= 0, up, down)


class _Rounder:
    """The core's rounding step for one accumulator format, mode and policy, on float64
    bits, with the seeded words of rounding j."""

    def __init__(self, fmt, rounding, overflow, sr_bits, sr_variant, seed, n_out):
        self.P = lp.plan(fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                         dtype=np.float64)
        check_random_source(self.P.mode, 0 if seed is not None else None, None)
        self.sr = self.P.stochastic
        self.fmt, self.r = fmt, self.P.sr_bits
        self.down = self.P.mode == "down"
        self.seed = seed
        if self.sr:
            o = jnp.arange(n_out, dtype=U64)
            self.o_lo, self.o_hi = (o & U64(0xFFFFFFFF)).astype(U32), (o >> 32).astype(U32)

    def check_odd_sum(self, what):
        """A sum rounded to odd in float64 keeps every bit stochastic rounding with r random
        bits reads only while man_bits + r + 3 <= 53."""
        if self.sr and self.fmt.man_bits + self.r + 3 > 53:
            raise NotImplementedError(f"{what} with stochastic rounding of {self.r} random "
                                      f"bits into {self.fmt.name} needs lp.matmul (at most "
                                      f"{50 - self.fmt.man_bits} bits here)")

    def __call__(self, b, j):
        """(value bits, code) of float64 bits b (shape (n_out, ...)) rounded into the format;
        j: the rounding's index (a scalar, or an array broadcasting with b's trailing axes)."""
        if self.sr:
            lead = (slice(None),) + (None,) * (b.ndim - 1)
            jj = jnp.broadcast_to(jnp.asarray(j, U32), b.shape)
            o_lo, o_hi = (jnp.broadcast_to(o[lead], b.shape) for o in (self.o_lo, self.o_hi))
            w0, w1, _, _ = _philox(o_lo, o_hi, jj, jnp.ones_like(jj),
                                   U32(self.seed & 0xFFFFFFFF), U32(self.seed >> 32))
            Rh, Rl = w1, w0
        else:
            Rh = Rl = jnp.zeros(b.shape, U32)
        code, vb = round_bits_impl(b, Rh, Rl, self.P)
        return vb, code
