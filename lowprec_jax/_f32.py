"""IEEE float32 multiply and divide (round to nearest even, subnormals kept) in integer
operations on the bits.

XLA's CPU backend flushes subnormal results to zero and treats subnormal inputs as zero (FTZ and
DAZ are set), other backends may not; NVFP4's scale arithmetic (Transformer Engine's float32
order) must give the IEEE bits everywhere, so it goes through these instead of ``*`` and ``/``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import xscale

from ._round import _gt, _low64, _shr64, scaled_values_ok
from ._clz import clz

U32 = jnp.uint32
I32 = jnp.int32
SIGN = np.uint32(0x80000000)        # NumPy scalars: Pallas kernels cannot capture arrays
INF = np.uint32(0x7F800000)
QNAN = np.uint32(0x7FC00000)
MAX = np.uint32(0x7F7FFFFF)


def _unpack(b):
    """(|b| bits, significand in [2^23, 2^24), exponent E: |value| = sig * 2^(E - 23)) of
    finite non-zero float32 bits; subnormals normalised."""
    a = b & U32(0x7FFFFFFF)
    ef = (a >> 23).astype(I32)
    mant = a & U32(0x7FFFFF)
    lz = clz(jnp.where(mant == 0, U32(1), mant)).astype(I32) - 8
    sig = jnp.where(ef > 0, mant | U32(1 << 23), mant << jnp.clip(lz, 0, 31).astype(U32))
    E = jnp.where(ef > 0, ef - 127, -126 - lz)
    return a, sig, E


def _pack(sign, hi, lo, e):
    """float32 bits of sign * (hi * 2^32 + lo) * 2^e, rounded to nearest even once, with
    subnormals and overflow to Inf; (hi, lo) non-zero, below 2^63."""
    lzh = clz(hi).astype(I32)
    lzl = clz(lo).astype(I32)
    msb = jnp.where(hi != 0, 63 - lzh, 31 - lzl)
    Er = msb + e                                           # exponent of the leading bit
    sh = msb - 23 + jnp.maximum(0, -126 - Er)              # bits to drop (>= 0 here)
    sh = jnp.clip(sh, 0, 64)
    qh, ql = _shr64(hi, lo, sh)
    rh, rl = _low64(hi, lo, sh)
    half_h = jnp.where(sh > 32, U32(1) << jnp.clip(sh - 33, 0, 31).astype(U32), U32(0))
    half_l = jnp.where((sh >= 1) & (sh <= 32), U32(1) << jnp.clip(sh - 1, 0, 31).astype(U32),
                       U32(0))
    up = _gt(rh, rl, half_h, half_l) | ((rh == half_h) & (rl == half_l) & ((ql & 1) == 1)
                                        & (sh >= 1))
    q = ql + up.astype(U32)                                # <= 2^24: fits, qh is 0
    base = (jnp.maximum(Er, -126) + 126).astype(U32) << 23
    bits = jnp.where(Er > 127, INF, base + q)
    bits = jnp.where(bits >= INF, INF, bits)
    return sign | bits


def mul(a, b):
    """float32 bits of a * b (IEEE 754 binary32, round to nearest even)."""
    sign = (a ^ b) & SIGN
    aa, sa, ea = _unpack(a)
    ab, sb, eb = _unpack(b)
    m = U32(0xFFFF)
    a0, a1, b0, b1 = sa & m, sa >> 16, sb & m, sb >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> 16) + (p01 & m) + (p10 & m)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    lo = (p00 & m) | (mid << 16)
    out = _pack(sign, hi, lo, ea + eb - 46)
    nan = (aa > INF) | (ab > INF) | ((aa == INF) & (ab == 0)) | ((aa == 0) & (ab == INF))
    out = jnp.where((aa == 0) | (ab == 0), sign, out)
    out = jnp.where((aa == INF) | (ab == INF), sign | INF, out)
    return jnp.where(nan, QNAN, out)


def div(a, b):
    """float32 bits of a / b (IEEE 754 binary32, round to nearest even)."""
    sign = (a ^ b) & SIGN
    aa, sa, ea = _unpack(a)
    ab, sb, eb = _unpack(b)
    def bit(_, qr):                                        # floor(sa * 2^26 / sb), 26..27 bits
        q, r = qr
        ge = r >= sb
        return (q << 1) | ge.astype(U32), jnp.where(ge, r - sb, r) << 1

    sa, sb = jnp.broadcast_arrays(sa, sb)
    q, r = lax.fori_loop(0, 27, bit, (jnp.zeros_like(sa), sa))    # a loop: small graphs
    lo = (q << 1) | (r != 0).astype(U32)                   # remainder as a sticky bit
    out = _pack(sign, jnp.zeros_like(lo), lo, ea - eb - 27)
    nan = (aa > INF) | (ab > INF) | ((aa == 0) & (ab == 0)) | ((aa == INF) & (ab == INF))
    out = jnp.where((aa == 0) | (ab == INF), sign, out)
    out = jnp.where((aa == INF) | (ab == 0), sign | INF, out)
    return jnp.where(nan, QNAN, out)


def min_max_finite(a):
    """min(a, FLT_MAX) for non-negative, non-NaN float32 bits a."""
    return jnp.minimum(a, MAX)


def const(v):
    """The float32 bits of a Python number, as a NumPy uint32 scalar."""
    return np.float32(v).view(np.uint32)


class BitsF32:
    """``lowprec.xscale``'s float32 namespace on uint32 bits (the two-level block scale rules),
    IEEE in every backend: ``mul`` and ``div`` above, comparisons on the bits."""
    const = staticmethod(const)
    mul = staticmethod(mul)
    div = staticmethod(div)
    where = staticmethod(jnp.where)

    @staticmethod
    def min_finite(a):
        """min(a, FLT_MAX) for non-negative a, NaN kept."""
        return jnp.where(BitsF32.isnan(a), a, jnp.minimum(a, MAX))

    @staticmethod
    def clip(a, lo, hi):
        """a clipped to [lo, hi] for non-negative a, not NaN (bits order as values)."""
        return jnp.clip(a, lo, hi)

    @staticmethod
    def clamp_abs(a, m):
        """a clipped to [-m, m] (m >= 0), NaN kept."""
        mag, sign = a & U32(0x7FFFFFFF), a & SIGN
        return jnp.where((mag > m) & (mag <= INF), sign | m, a)

    @staticmethod
    def isnan(a):
        return (a & U32(0x7FFFFFFF)) > INF

    @staticmethod
    def pow2_product(b, k):
        """Bits b times 2^k for int32 k (``xscale.times_pow2`` on the magnitude, sign kept)."""
        mag = xscale.times_pow2(jnp, (b & U32(0x7FFFFFFF)).astype(I32), k)
        return (b & SIGN) | mag.astype(U32)

    @staticmethod
    def iszero(a):
        return (a & U32(0x7FFFFFFF)) == 0

    @staticmethod
    def scale_by(b, m):
        """Bits of b * m for element bits b and a non-negative multiplier m (``mul``)."""
        return mul(b, m)


def _as_f32(a):
    return lax.bitcast_convert_type(jnp.asarray(a, U32), jnp.float32)


def _as_bits(v):
    return lax.bitcast_convert_type(v, U32)


class NativeF32(BitsF32):
    """``BitsF32``'s names on the same uint32 bits, with ``mul`` and ``div`` done by the
    backend's own float32 instructions. IEEE (nearest even) wherever no operand and no result
    is subnormal; XLA's CPU treats subnormal operands as zero and flushes subnormal results
    to zero, keeping the sign. Only for values shown to stay in the normal range (or whose
    flushed results round to the same codes): ``lowprec_jax.blocks.native_ok``. Small to
    compile: one instruction where ``BitsF32`` spends about a hundred."""
    mul = staticmethod(lambda a, b: _as_bits(_as_f32(a) * _as_f32(b)))
    div = staticmethod(lambda a, b: _as_bits(_as_f32(a) / _as_f32(b)))

    @staticmethod
    def scale_by(b, m):
        """Bits of b * m (m >= 0, normal or 0) by the backend's product, IEEE also where b is
        subnormal (an operand XLA's CPU reads as zero) and the product normal: such a b is
        taken times 2^64 on the integers (``float(|bits|)`` 2^-85) and m times 2^-64 (0 where
        m < 2^-62: the product is then below 2^-188). Results below 2^-126 flush to a signed
        zero, as ``mul``'s."""
        a = b & U32(0x7FFFFFFF)
        sub = (a != 0) & (a < U32(0x00800000))
        big = (_as_bits(a.astype(jnp.float32)) - U32(85 << 23)) | (b & SIGN)
        m_small = jnp.where((m >> 23) > 64, m - U32(64 << 23), U32(0))
        return jnp.where(sub, NativeF32.mul(big, m_small), NativeF32.mul(b, m))

    @staticmethod
    def rounds_nearest_even(P):
        """Does ``round_nearest_even`` serve the plan ``P``? Where ``round_scaled_values``
        serves non-negative inputs with e = 0 (``scaled_values_ok``), in nearest even, with a
        grid step of at least 2^-125."""
        return (P.mode == "nearest_even" and scaled_values_ok(P, 0, nonnegative=True)
                and P.emin - P.man_bits >= -125)

    @staticmethod
    def round_nearest_even(b, P):
        """Bits of the non-negative float32 ``b`` (0, normal or Inf; a subnormal reads as 0)
        rounded to nearest even onto the grid of the saturating plan ``P`` (man_bits m,
        emin; ``round_scaled_values`` with e = 0 gives the same bits), in a few operations:
        in the format's normal range the significand is cut at bit 23 - m on the integers
        (a carry moves into the exponent), below it the backend's addition of c = 2^(emin -
        m + 23), whose last place is the grid step, rounds (IEEE, normal operands): the sum's
        bits less c's count the steps k, and the value is k 2^(emin - m); then the largest
        value saturates. Only where the grid's step is at
        least 2^-125: a subnormal b is then below half a step either way."""
        m, emin = P.man_bits, P.emin
        if not NativeF32.rounds_nearest_even(P):
            raise ValueError(f"round_nearest_even does not serve the plan {P}")
        d, u = 23 - m, np.uint32
        cut = (b + u((1 << (d - 1)) - 1) + ((b >> u(d)) & u(1))) & u(0xFFFFFFFF ^ ((1 << d) - 1))
        c = np.float32(2.0 ** (emin - m + 23))          # b + c: k steps above c, rounded
        k = _as_bits(_as_f32(b) + c) - c.view(np.uint32)  # (not (b + c) - c: XLA folds it)
        low = jnp.where(k == u(0), u(0), _as_bits(k.astype(jnp.float32))
                        + u(((emin - m) << 23) & 0xFFFFFFFF))
        r = jnp.where(b >= u((emin + 127) << 23), cut, low)
        return jnp.minimum(r, u(int(P.max_pos_bits) & 0xFFFFFFFF))

    @staticmethod
    def pow2_product(b, k):
        """Bits b times 2^k for int32 |k| <= 128, as two products by normal powers of two:
        exact where the result is normal (or Inf), flushed to a signed zero below 2^-126."""
        lo = k >> 1
        hi = k - lo
        p = lambda e: lax.bitcast_convert_type(((e + 127) << 23).astype(U32), jnp.float32)  # noqa: E731
        return _as_bits(_as_f32(b) * p(lo) * p(hi))
