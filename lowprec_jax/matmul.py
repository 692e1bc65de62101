"""``lowprec_jax.matmul``: ``lp.matmul`` in JAX, bit-identical to the core: fused multi-term
adders (every ``lp.hardware`` tensor-core preset: aligned or unaligned addend, truncate /
floor / nearest terms, promotion every k products as in ``deepseek-v3-fp8``), and float or
integer accumulators in every order of the core (sequential, pairwise, blocked, trees,
``"exact"``).

Everything is integer arithmetic on the bits (int64: ``jax_enable_x64`` must be on), so no
backend's subnormal flushing touches a result. Each step's exact sum is formed as an integer
(the fused adder's aligned terms, below 2^53) or as a two-operand sum rounded to odd in the
float64 format (53 >= p + 2 bits for every accumulator of at most 51 mantissa bits, so the
one rounding into the accumulator is exact: Boldo & Melquiond 2008), then rounded once by the
core's rounding step (``_round.round_bits_impl``). Stochastic accumulators use the core's
words: rounding j of output element o (flat C order) takes Philox4x32-10(seed) at counter
(o_lo, o_hi, j, 1).

``QuantizedArray`` operands (``lowprec_jax.quantize``) follow ``lp.matmul``'s BlockTensor
rules: ``block_scales="product"`` (power-of-two scale exponents join each product's exponent),
``"group"`` (exact float64 sums of 16 scaled products, then fused steps of group terms) and
``"promotion"`` (scales applied when each partial sum is promoted), NVFP4 tensor scales in the
epilogue D = round(alpha * acc + c).

Other orders (pairwise, blocked, explicit trees) and rounded products run the core's postfix
program level by level: all additions whose operands are ready are done together (one
rounding each, the core's seeded word index j for each); integer accumulators (wrap or
saturate per addition) the same way in int64.

The ``"exact"`` order sums every term exactly in 32-bit limbs held in int64 (the core's long
accumulator) and rounds once.

Not here yet (``lp.matmul`` has it): the ``"exact"`` order into formats whose values leave
float64's normal range (11 exponent bits).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import accumulate as _acc
from lowprec import cast
from lowprec.formats import IntFormat
from lowprec.rounding import check_seed

from . import _philox
from ._round import round_bits_impl
from .blocks import TWO_LEVEL, QuantizedArray, _decode32, unblocked
from ._clz import clz

__all__ = ["matmul"]
_F64 = _acc._format("float64")

I64, U64, U32 = jnp.int64, jnp.uint64, jnp.uint32
TRUNC, FLOOR, NEAREST = 0, 1, 2
FIN, INF, NAN, NEGZERO = 0, 1, 2, 3
MASK52 = (1 << 52) - 1
QNAN = np.uint64(0x7FF8 << 48)          # the positive quiet NaN every NaN result becomes
_INF = np.uint64(0x7FF << 52)


# ---- float bits <-> integers ------------------------------------------------------------------

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
    """``lowprec._accumulate._align``: p * 2^sh to an integer by truncation, floor or nearest
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


# ---- rounding into the accumulator ------------------------------------------------------------

class _Rounder:
    """The core's rounding step for one accumulator format, mode and policy, on float64
    bits, with the seeded words of rounding j."""

    def __init__(self, fmt, rounding, overflow, sr_bits, sr_variant, seed, n_out):
        mode, r, variant = cast._check_rounding_args(
            fmt, rounding, sr_bits, sr_variant, 0 if seed is not None else None, None,
            np.float64)
        self.sr = mode == "stochastic"
        self.fmt, self.r = fmt, r
        self.down = mode == "down"
        self.P = tuple(int(v) for v in cast._params(fmt, 64, mode, cast.check_overflow(
            overflow, fmt), overflow is None, r, variant))
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


# ---- the models -------------------------------------------------------------------------------

def _any(t):
    """Any along the last axis, as a max of 0/1 integers (Triton has no boolean reductions)."""
    return jnp.max(t.astype(jnp.int32), axis=-1) > 0


def _fused_step(ta, tb, acc, fz, mab, c_emin, rnd, j, valid):
    """``lowprec._accumulate._fused_step`` and ``_special_step`` on (..., n) product terms
    (views: signed significand, exponent, flag) and the running sums acc (...,)."""
    (sa, ea, fa), (sb, eb, fb) = ta, tb
    F, mode = fz.frac_bits, _acc.TERMS[fz.terms]
    p = jnp.where(valid & (fa == FIN) & (fb == FIN), sa * sb, I64(0))
    pe = ea + eb
    nzp = p != 0
    E = jnp.max(jnp.where(nzp, pe, I64(-(1 << 40))), axis=-1)
    am, ae, af = _parts(acc)
    acc_nz = am != 0
    if fz.align_addend:
        accE = jnp.maximum(63 - clz(jnp.abs(am).astype(U64)).astype(I64) + ae, c_emin)
        E = jnp.where(acc_nz, jnp.maximum(E, accE), E)
    nz = _any(nzp) | (acc_nz if fz.align_addend else False)
    S = jnp.sum(jnp.where(nzp, _align(p, F + pe - E[..., None] - mab, mode), I64(0)), axis=-1)
    if fz.align_addend:
        S = S + jnp.where(acc_nz, _align(am, F + ae - E, mode), I64(0))
    v = jnp.where(S == 0, U64(0), _bits_odd(S < 0, jnp.abs(S), E - F))      # exact
    if not fz.align_addend:
        v = jnp.where(acc_nz, _sum_odd(v, acc, rnd.down), v)
    # no non-zero term: the addend alone, or a signed zero (-0 only if every term is -0)
    neg_p = ((sa < 0) | (fa == NEGZERO)) != ((sb < 0) | (fb == NEGZERO))
    all_neg = ~_any(~neg_p & valid) & (af == NEGZERO)
    v = jnp.where(nz, v, jnp.where(acc_nz, acc, _zero(all_neg)))
    # Inf and NaN (IEEE): NaN operand, 0 * Inf, or Inf - Inf give NaN
    nan_t = valid & ((fa == NAN) | (fb == NAN) | ((fa == INF) & (sb == 0)) |
                     ((fb == INF) & (sa == 0)))
    inf_t = valid & ~nan_t & ((fa == INF) | (fb == INF))
    inf_pos = _any(inf_t & ((sa < 0) == (sb < 0)))
    inf_neg = _any(inf_t & ((sa < 0) != (sb < 0)))
    acc_inf = af == INF
    nan = _any(nan_t) | (inf_pos & inf_neg) | (af == NAN) | (
        acc_inf & (((am > 0) & inf_neg) | ((am < 0) & inf_pos)))
    v = jnp.where(inf_pos | inf_neg | acc_inf, jnp.where(
        acc_inf, acc, _INF | ((~inf_pos).astype(U64) << 63)), v)   # no constant >= 2^63:
    # Triton's lowering cannot hold one
    v = jnp.where(nan, QNAN, v)
    return rnd(v, j)


def _view(b, fmt):
    """(signed significand, exponent, flag) of float64 bits as ``fmt`` sees them (value =
    sig * 2^(exp - man_bits), exp >= emin: ``lp.accumulate._sig_exp``), or the float32 view
    (24-bit significands) when fmt is None."""
    m, e, flag = _parts(b)
    a = jnp.abs(m)
    msb = 63 - clz(jnp.where(a == 0, U64(1), a.astype(U64))).astype(I64)
    E = msb + e                                           # floor(log2 |x|)
    man, emin = (23, -126) if fmt is None else (fmt.man_bits, fmt.emin)
    ex = jnp.maximum(E, emin)
    sh = (ex - man) - e                                   # sig = a >> sh (exact for members)
    sig = jnp.where(sh >= 0, a >> jnp.clip(sh, 0, 63), a << jnp.clip(-sh, 0, 63))
    sig = jnp.where(flag == INF, I64(1), jnp.where(a == 0, I64(0), sig))
    return jnp.where(m < 0, -sig, sig), ex, flag


def matmul(A, B, acc="fp32-sequential", c=None, *, seed=None, dtype=None):
    """``lp.matmul`` in JAX (fused-adder presets and sequential accumulators; see the module
    docstring): ``A @ B + c`` formed as ``acc`` forms it, bit for bit. A: (..., M, K), B:
    (..., K, N) float arrays holding values of the accumulator's input formats (float32
    values without ``input_formats``), batch axes broadcast, or two ``QuantizedArray``s (A
    blocked along K, B along axis -2, or tiles); c broadcastable to the result (values of the
    addend format). Jittable; needs ``jax_enable_x64``."""
    acc = _acc._resolve(acc)
    if not jax.config.jax_enable_x64:
        raise ValueError("lowprec_jax.matmul works in 64-bit integers: enable jax_enable_x64 "
                         "(jax.config.update('jax_enable_x64', True))")
    sr = acc.stochastic
    if sr and seed is None:
        raise ValueError("a stochastic accumulator needs seed=<int> at the call")
    if not sr and seed is not None:
        raise ValueError("seed= applies to stochastic accumulators only")
    seed = check_seed(seed) if sr else None
    if isinstance(A, QuantizedArray) or isinstance(B, QuantizedArray):
        return _block_matmul(A, B, acc, c, seed, dtype)
    if acc.order == "exact" and not isinstance(acc.fmt, IntFormat) and (
            acc.fmt.emax > 1000 or acc.fmt.emin - acc.fmt.man_bits < -1022):
        raise NotImplementedError(f"the 'exact' order into {acc.fmt.name} (values beyond "
                                  "float64's normal range) needs lp.matmul")
    if not isinstance(acc.fmt, IntFormat) and acc.fmt.man_bits > 51:
        raise NotImplementedError("accumulators of more than 51 mantissa bits need lp.matmul")
    ab, bb, batch, M, K, N = _float_operands(A, B)
    shape = batch + (M, N)
    nb = int(np.prod(batch, dtype=np.int64))
    n_out = nb * M * N
    if isinstance(acc.fmt, IntFormat):
        ci = jnp.zeros(shape, I64) if c is None else jnp.broadcast_to(
            jnp.asarray(c).astype(I64), shape)
        prog, _ = _acc._program(acc.order, K, acc.block)
        return _program_int(acc, ab, bb, ci.reshape(n_out), prog).reshape(shape).astype(
            dtype or jnp.int64)
    cb = jnp.zeros(shape, U64) if c is None else jnp.broadcast_to(_f64_bits(jnp.asarray(c)),
                                                                   shape)
    rnd = _Rounder(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, seed,
                   n_out)
    if K == 0:                                            # no products: c itself
        out = cb.reshape(n_out)
        res_fmt = acc.promote_to.fmt if acc.promote_to is not None else acc.fmt
    elif acc.fused is not None:
        fa, fb = acc.input_formats
        out = _fused(acc, _view(ab, fa), _view(bb, fb), cb.reshape(n_out), rnd, acc.fused.n,
                     fa.man_bits + fb.man_bits)
        res_fmt = acc.promote_to.fmt if acc.promote_to is not None else acc.fmt
    elif acc.order == "exact":
        rnd.check_odd_sum("the 'exact' order")
        out = _exact(ab, bb, cb.reshape(n_out), rnd)
        res_fmt = acc.fmt
    elif acc.order != "sequential" or acc.products is not None:
        prog, _ = _acc._program(acc.order, K, acc.block)
        rnd.check_odd_sum(f"the order {acc.order!r}")
        out = _program(acc, ab, bb, cb.reshape(n_out), prog, rnd)
        res_fmt = acc.fmt
    else:
        rnd.check_odd_sum("the sequential order")
        out = _sequential(ab, bb, cb.reshape(n_out), rnd)
        res_fmt = acc.fmt
    return _finish(out, shape, res_fmt, dtype)


def _float_operands(A, B):
    """Validated float operands as float64 bits, A (nb, M, K) and B transposed (nb, N, K),
    and (batch, M, K, N)."""
    A, B = jnp.asarray(A), jnp.asarray(B)
    for x, name in ((A, "A"), (B, "B")):
        if x.dtype.name not in ("float16", "bfloat16", "float32", "float64"):
            raise TypeError(f"{name} must be a float array, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"{name} needs at least 2 dimensions, got shape {x.shape}")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"A's last dimension ({A.shape[-1]}) must equal B's second-to-last "
                         f"({B.shape[-2]})")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    batch = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    nb = int(np.prod(batch, dtype=np.int64))
    A3 = jnp.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
    B3 = jnp.swapaxes(jnp.broadcast_to(B, batch + (K, N)), -1, -2).reshape(nb, N, K)
    return _f64_bits(A3), _f64_bits(B3), batch, M, K, N


def fused_operands(A, B, acc):
    """Views (signed significand, exponent, flag) of A (nb, M, K) and B (nb, N, K) as a fused
    adder sees them, float arrays of its input formats or ``QuantizedArray`` operands with
    power-of-two scales (each product's exponent includes both scale exponents), and
    (batch, M, K, N, significand bits of a product). Shared with ``lowprec_jax.pallas``."""
    if isinstance(A, QuantizedArray) or isinstance(B, QuantizedArray):
        ea, sa, eb, sb, batch, M, K, N = block_operands(A, B, acc)
        _check_pow2_scales(A, B)
        fa, fb = A.fmt.elem, B.fmt.elem
        ta = _to3(_scaled_views(ea, sa, fa), batch, M, K, False)
        tb = _to3(_scaled_views(eb, sb, fb), batch, K, N, True)
    else:
        ab, bb, batch, M, K, N = _float_operands(A, B)
        fa, fb = acc.input_formats
        ta, tb = _view(ab, fa), _view(bb, fb)
    return ta, tb, batch, M, K, N, fa.man_bits + fb.man_bits


def _check_pow2_scales(A, B):
    for q, name in ((A, "A"), (B, "B")):
        if q.fmt.scale_fmt.man_bits:
            raise ValueError(f"{name}'s block scales are not all powers of two "
                             f"({q.fmt.scale_fmt.name}); block_scales='product' needs "
                             "E8M0-style scales (use 'group')")


def _finish(out, shape, res_fmt, dtype):
    """float64 bits (NaNs made the positive quiet NaN) as float32 or float64 (or ``dtype``)."""
    rdt = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if cast.holds(res_fmt, np.float32) else np.dtype(np.float64))
    if not cast.holds(res_fmt, rdt):
        raise ValueError(f"dtype={rdt} cannot hold every value of {res_fmt.name}")
    out = jnp.where((out & U64(0x7FFFFFFFFFFFFFFF)) > _INF, QNAN, out).reshape(shape)
    if rdt == np.float64:
        return lax.bitcast_convert_type(out, jnp.float64)
    return lax.bitcast_convert_type(_f32_from_f64_bits(out), jnp.float32).astype(rdt)


def _outer(ta, tb):
    """Per-output operands: (nb, M, ...) and (nb, N, ...) term arrays broadcast to
    (nb * M * N, ...), formed one step at a time so that no (M, N, K) array exists."""
    nb, M, N = ta.shape[0], ta.shape[1], tb.shape[1]
    rest = ta.shape[2:]
    full = (nb, M, N) + rest
    return (jnp.broadcast_to(ta[:, :, None], full).reshape((nb * M * N,) + rest),
            jnp.broadcast_to(tb[:, None, :], full).reshape((nb * M * N,) + rest))



def _product(sa, ea, fa, sb, eb, fb):
    """float64 bits of the exact product of two float32 views (``_view(., None)``: 24-bit
    significands, so the product has at most 48 bits), IEEE signs, Inf and NaN (the positive
    quiet one)."""
    pm = sa * sb
    neg = (pm < 0) | ((pm == 0) & (((sa < 0) | (fa == NEGZERO)) != ((sb < 0) | (fb == NEGZERO))))
    p = jnp.where(pm == 0, _zero(neg), _bits_odd(neg, jnp.abs(pm), ea + eb - 46))
    fin = ((fa == FIN) | (fa == NEGZERO)) & ((fb == FIN) | (fb == NEGZERO))
    nan_p = ((fa == INF) & (sb == 0)) | ((fb == INF) & (sa == 0)) | (fa == NAN) | (fb == NAN)
    return jnp.where(fin, p, jnp.where(nan_p, QNAN, _INF | ((pm < 0).astype(U64) << 63)))


def _sequential(ab, bb, cb, rnd):
    """c, then each exact product added with one rounding (an FMA per step)."""
    along_k = lambda t: jnp.moveaxis(t, -1, 0)                    # noqa: E731  (K, nb, .)
    xs = [along_k(t) for t in (*_view(ab, None), *_view(bb, None))]

    def step(s, x):
        (sa, sb), (ea, eb), (fak, fbk) = (_outer(x[i], x[i + 3]) for i in range(3))
        vb, _ = rnd(_sum(s, _product(sa, ea, fak, sb, eb, fbk), rnd.down), x[6])
        return vb, None

    out, _ = lax.scan(step, cb, (*xs, jnp.arange(ab.shape[-1], dtype=U32)))
    return out


def _fused(acc, ta, tb, cb, rnd, n, mab):
    """Chained fused steps of n terms (``lowprec._accumulate.fused_matmul``) on the views ta
    (nb, M, K) and tb (nb, N, K) (significands of at most ``mab`` bits together)."""
    fz = acc.fused
    if (n + 2) * 2.0 ** (fz.frac_bits + 3) >= 2.0**53:
        raise NotImplementedError("this fused adder's sums exceed 53 bits; use lp.matmul")
    cf = acc.addend_format or acc.fmt
    if not fz.align_addend:
        rnd.check_odd_sum("an addend outside the alignment")
    K = ta[0].shape[-1]
    steps = max(1, math.ceil(K / n))
    pad = steps * n - K

    def to_steps(t):                                      # (nb, M, K) -> (steps, nb, M, n)
        t = jnp.pad(t, ((0, 0), (0, 0), (0, pad)))
        return jnp.moveaxis(t.reshape(t.shape[:2] + (steps, n)), 2, 0)
    ta = [to_steps(t) for t in ta]
    tb = [to_steps(t) for t in tb]
    valid = (jnp.arange(steps * n) < K).reshape(steps, 1, n)
    promote = acc.promote_every or 0
    k1 = np.minimum((np.arange(steps) + 1) * n, K)
    is_pro = (promote > 0) & ((k1 % max(promote, 1) == 0) | (k1 == K))
    j_step = np.arange(steps) + np.concatenate([[0], np.cumsum(is_pro)[:-1]])
    pro = acc.promote_to
    prnd = None
    if promote:
        if pro.stochastic:
            raise NotImplementedError("stochastic promotion needs lp.matmul")
        prnd = _Rounder(pro.fmt, pro.rounding, pro.overflow, pro.sr_bits, pro.sr_variant, None,
                        cb.shape[0])

    def step(carry, xs):
        accv, outer = carry
        terms = [_outer(xs[i], xs[i + 3]) for i in range(3)]
        vd, j, ip = xs[6:]
        accv, _ = _fused_step(tuple(t[0] for t in terms), tuple(t[1] for t in terms), accv,
                              fz, mab, cf.emin, rnd, j, vd)
        if promote:
            new_outer, _ = prnd(_sum(outer, accv, prnd.down), 0)
            outer = jnp.where(ip, new_outer, outer)
            accv = jnp.where(ip, U64(0), accv)
        return (accv, outer), None

    acc0 = jnp.zeros_like(cb) if promote else cb
    xs = (*ta, *tb, valid, jnp.asarray(j_step, U32), jnp.asarray(is_pro))
    (accv, outer), _ = lax.scan(step, (acc0, cb), xs)
    return outer if promote else accv



# ---- block-scaled operands (QuantizedArray) ---------------------------------------------------

def _element_views(q):
    """(element values' float64 bits, per-element scale bits as float64) in q's shape."""
    bf = q.fmt
    ev = _decode32(q.codes, bf.elem)
    sv = jnp.broadcast_to(_decode32(q.scale_codes, bf.scale_fmt)[..., None], ev.shape)
    return (_f64_bits(unblocked(ev, q.shape, q.axis, bf)),
            _f64_bits(unblocked(sv, q.shape, q.axis, bf)))


def _scaled_views(ebits, sbits, elem):
    """Views of the elements with each power-of-two scale's exponent added to the exponent; a
    NaN (or non-positive) scale makes the term NaN (``lowprec.accumulate._fused_from_parts``)."""
    sig, ex, flag = _view(ebits, elem)
    m, e, f = _parts(sbits)
    bad = (f != FIN) | (m <= 0)
    return sig, ex + jnp.where(bad, I64(0), e + 52), jnp.where(bad, jnp.int8(NAN), flag)


def _to3(views, batch, rows, cols, swap):
    """(..., rows, cols) view arrays broadcast to the batch and flattened to (nb, ., .)
    (B transposed so that K is last)."""
    nb = int(np.prod(batch, dtype=np.int64))
    out = []
    for t in views:
        t = jnp.broadcast_to(t, batch + (rows, cols))
        t = jnp.swapaxes(t, -1, -2) if swap else t
        out.append(t.reshape((nb,) + t.shape[-2:]))
    return out


def block_operands(A, B, acc):
    """Two validated ``QuantizedArray`` operands (A blocked along K = its last axis, B along
    K = its second-to-last, or tiles) as (element bits, scale bits) of A and of B, each
    float64 bits in the operand's shape, and (batch, M, K, N)."""
    if not (isinstance(A, QuantizedArray) and isinstance(B, QuantizedArray)):
        raise TypeError("lowprec_jax.matmul takes two QuantizedArrays or two float arrays, "
                        "not a mix")
    if acc.fused is None:
        raise ValueError("block-scaled operands need a fused-adder accumulator (e.g. the "
                         "b200-mxf8f6f4 or b200-mxf4nvf4 presets)")
    na, nb_ = len(A.shape), len(B.shape)
    if na < 2 or nb_ < 2 or A.shape[-1] != B.shape[-2]:
        raise ValueError(f"QuantizedArray shapes {A.shape} and {B.shape} do not multiply")
    if A.fmt.tile is None and A.axis != na - 1:
        raise ValueError(f"A must be blocked along its last axis (K), not axis {A.axis}")
    if B.fmt.tile is None and B.axis != nb_ - 2:
        raise ValueError(f"B must be blocked along its second-to-last axis (K), not axis "
                         f"{B.axis}: quantize it with axis=-2")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    batch = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    ea, sa = _element_views(A)
    eb, sb = _element_views(B)
    return ea, sa, eb, sb, batch, M, K, N


def _block_matmul(A, B, acc, c, seed, dtype):
    """``lowprec.accumulate._block_matmul`` in JAX: ``block_scales`` "product" (power-of-two
    scales added to each product's exponent) and "group" (exact group sums times both
    scales); NVFP4's tensor scales in the epilogue D = round(alpha * acc + c)."""
    if acc.block_scales == "product":
        ta, tb, batch, M, K, N, mab = fused_operands(A, B, acc)
    else:
        ea, sa, eb, sb, batch, M, K, N = block_operands(A, B, acc)
    two_level = A.fmt.scale_rule in TWO_LEVEL or B.fmt.scale_rule in TWO_LEVEL
    if two_level and (acc.stochastic or not cast.holds(acc.fmt, np.float32)):
        raise NotImplementedError("the tensor-scale epilogue is modelled here for "
                                  "non-stochastic accumulators float32 holds; use lp.matmul")
    shape = batch + (M, N)
    n_out = int(np.prod(shape, dtype=np.int64))
    cb = jnp.zeros(shape, U64) if c is None else jnp.broadcast_to(
        _f64_bits(jnp.asarray(c)), shape)
    alpha = None
    if two_level:
        from . import _f32  # noqa: PLC0415
        t = [lax.bitcast_convert_type(jnp.asarray(q.tensor_scale, jnp.float32), U32)
             for q in (A, B)]
        alpha = _f32.mul(t[0], t[1])
    c_acc = cb if alpha is None else jnp.where(alpha == U32(0x3F800000), cb, U64(0))
    rnd = _Rounder(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, seed,
                   n_out)
    if acc.block_scales == "product":
        out = _fused(acc, ta, tb, c_acc.reshape(n_out), rnd, acc.fused.n, mab)
    elif acc.block_scales == "promotion":
        out = _promoted(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd)
    else:
        out = _grouped(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd)
    if alpha is not None:
        erb = _Rounder(acc.fmt, acc.rounding, acc.overflow, None, "srff", None, n_out)
        va = _view(_f64_bits(lax.bitcast_convert_type(alpha, jnp.float32)), None)
        vr = _view(out, None)
        d = erb(_sum(_product(*va, *vr), cb.reshape(n_out), erb.down), 0)[0]
        out = jnp.where(alpha == U32(0x3F800000), out, d)
    return _finish(out, shape, acc.fmt, dtype)


def _promoted(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd):
    """``lowprec.accumulate._promoted``: each ``promote_every``-long interval's partial sum
    from the unscaled elements (the inner fused steps, from 0), then outer = round(s * partial
    + outer) with s = round(sA * sB), both in ``promote_to``'s format; outer starts at c."""
    import dataclasses  # noqa: PLC0415
    k, pro = acc.promote_every, acc.promote_to
    if k is None:
        raise ValueError("block_scales='promotion' needs promote_every=<k>")
    for q, name, along_k in ((A, "A", 1), (B, "B", 0)):
        run = q.fmt.k if q.fmt.tile is None else q.fmt.tile[along_k]
        if run % k and K > k:
            raise ValueError(f"block scales must be constant over each {k}-long promotion "
                             f"interval along K ({name}'s blocks are {run} long)")
    if pro.stochastic or not (cast.holds(pro.fmt, np.float32) and cast.holds(acc.fmt,
                                                                                np.float32)):
        raise NotImplementedError("promotion with block scales is modelled here for "
                                  "non-stochastic float32-held formats; use lp.matmul")
    inner = dataclasses.replace(acc, promote_every=None, promote_to=None,
                                block_scales="product")
    fa, fb = A.fmt.elem, B.fmt.elem
    ta = _to3(_view(ea, fa), batch, M, K, False)
    tb = _to3(_view(eb, fb), batch, K, N, True)
    sa3 = _to3((sa,), batch, M, K, False)[0]                       # (nb, M, K) scale bits
    sb3 = _to3((sb,), batch, K, N, True)[0]                        # (nb, N, K)
    prnd = _Rounder(pro.fmt, pro.rounding, pro.overflow, None, "srff", None, 1)
    outer = c_acc.reshape(-1)
    for k0 in range(0, K, k):
        part = _fused(inner, [t[..., k0:k0 + k] for t in ta], [t[..., k0:k0 + k] for t in tb],
                      jnp.zeros_like(outer), rnd, acc.fused.n, fa.man_bits + fb.man_bits)
        s1, s2 = _outer(sa3[..., k0:k0 + 1], sb3[..., k0:k0 + 1])
        scale = prnd(_product(*_view(s1[:, 0], None), *_view(s2[:, 0], None)), 0)[0]
        outer = prnd(_sum(_product(*_view(scale, None), *_view(part, None)), outer,
                          prnd.down), 0)[0]
    return outer


def _grouped(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd):
    """Group terms: exact sums of ``group`` products of elements times both block scales
    (``lowprec.accumulate._grouped``), then fused steps of n / group terms."""
    g = acc.group
    _acc.check_group_sums_exact(A.fmt, B.fmt, g)
    if K % g or acc.fused.n % g:
        raise ValueError(f"K={K} and the fused adder's n={acc.fused.n} must be multiples of "
                         f"group={g}")
    for q, name, along_k in ((A, "A", 1), (B, "B", 0)):
        run = q.fmt.k if q.fmt.tile is None else q.fmt.tile[along_k]
        if run % g:
            raise ValueError(f"{name}'s blocks ({run} along K) do not hold whole groups of {g}")
    f64 = lambda b: lax.bitcast_convert_type(b, jnp.float64)  # noqa: E731
    va, vb = f64(ea) * f64(sa), f64(eb) * f64(sb)    # exact, and normal in float64
    ga = va.reshape(va.shape[:-1] + (K // g, g))                          # (..., M, G, g)
    gb = jnp.moveaxis(vb.reshape(vb.shape[:-2] + (K // g, g, N)), -1, -3)  # (..., N, G, g)
    T = jnp.einsum("...mgk,...ngk->...mng", ga, gb, precision="highest")   # exact sums
    nb = int(np.prod(batch, dtype=np.int64))
    T = jnp.broadcast_to(T, batch + (M, N, K // g)).reshape(nb, M * N, K // g)
    ta = _view(lax.bitcast_convert_type(T, U64), _F64)
    tb = (jnp.ones((nb, 1, K // g), I64), jnp.zeros((nb, 1, K // g), I64),
          jnp.zeros((nb, 1, K // g), jnp.int8))
    return _fused(acc, ta, tb, c_acc.reshape(-1), rnd, acc.fused.n // g, 52)


# ---- any order: the core's postfix program, evaluated level by level ---------------------------

def _levels(prog, K, round_prod=False):
    """The postfix program (``lowprec.accumulate._program``) as a table of nodes: products
    0..K-1, c at K, additions after. Returns (n_nodes, levels, result node) where each level is
    (left, right, dest, j) arrays of the additions whose operands are ready together (padded
    with additions into a scratch node), j the rounding's index in program order (product
    roundings count too when ``round_prod``: the core's seeded words)."""
    stack, adds, height = [], [], {}
    j = 0
    for op in prog:
        if op == _acc._A.ADD:
            r, l = stack.pop(), stack.pop()
            node = K + 1 + len(adds)
            adds.append((l, r, node, j))
            height[node] = 1 + max(height.get(l, 0), height.get(r, 0))
            stack.append(node)
        else:
            stack.append(K if op == _acc._A.LEAF_C else int(op))
        j += 1 if (op == _acc._A.ADD or (op >= 0 and round_prod)) else 0
    n_nodes = K + 2 + len(adds)                          # the last one is the scratch node
    by = {}
    for a in adds:
        by.setdefault(height[a[2]], []).append(a)
    width = max((len(v) for v in by.values()), default=1)
    levels = np.full((len(by), 4, width), n_nodes - 1, np.int64)
    for i, h in enumerate(sorted(by)):
        levels[i, :, :len(by[h])] = np.array(by[h]).T
    return n_nodes, levels, stack[0]


def _product_table(ab, bb, n_nodes, K):
    """(n_out, n_nodes) float64 bits with the exact products in columns 0..K-1."""
    va, vb = _view(ab, None), _view(bb, None)
    (sa, sb), (ea, eb), (fa, fb) = (_outer(va[i], vb[i]) for i in range(3))
    prods = _product(sa, ea, fa, sb, eb, fb)
    return jnp.pad(prods, ((0, 0), (0, n_nodes - K)))


def _program(acc, ab, bb, cb, prog, rnd):
    """Float accumulators in any order (pairwise, blocked, trees), products exact or rounded
    first into ``acc.products``: every addition of two exact operands rounded once, in
    levels of additions that do not depend on each other. Forms the (M * N, K) products."""
    K = ab.shape[-1]
    n_nodes, levels, res = _levels(prog, K, acc.products is not None)
    T = _product_table(ab, bb, n_nodes, K)
    if acc.products is not None:                  # never stochastic (lp.Accumulator's rule)
        prnd = _Rounder(acc.products, acc.product_rounding, None, None, "srff", None, 1)
        T = T.at[:, :K].set(prnd(T[:, :K], 0)[0])
    T = T.at[:, K].set(cb)

    def level(T, lv):
        left, right, dest, j = lv
        v, _ = rnd(_sum(T[:, left], T[:, right], rnd.down), j.astype(U32))
        return T.at[:, dest].set(v), None

    T, _ = lax.scan(level, T, jnp.asarray(levels))
    return T[:, res]


def _program_int(acc, ab, bb, ci, prog):
    """Integer accumulators (``lowprec._accumulate.int_matmul``): exact int64 products of
    integer inputs (below 2^31 in magnitude, as the core requires), each addition wrapping
    modulo 2^P into [min, max] or saturating."""
    fmt = acc.fmt
    lo, hi = int(fmt.min_int), int(fmt.max_int)
    K = ab.shape[-1]
    n_nodes, levels, res = _levels(prog, K)
    to_int = lambda b: lax.bitcast_convert_type(b, jnp.float64).astype(I64)  # noqa: E731
    A, B = _outer(to_int(ab), to_int(bb))
    T = jnp.pad(A * B, ((0, 0), (0, n_nodes - K))).at[:, K].set(ci)
    span = hi - lo + 1

    def level(T, lv):
        left, right, dest, _ = lv
        v = T[:, left] + T[:, right]
        if acc.overflow == "saturate":
            v = jnp.clip(v, lo, hi)
        else:
            v = jnp.where((v < lo) | (v > hi), (v - lo) % span + lo, v)
        return T.at[:, dest].set(v), None

    T, _ = lax.scan(level, T, jnp.asarray(levels))
    return T[:, res]


# ---- the "exact" order: a long fixed-point accumulator ----------------------------------------

XMIN, NLIMB = -1120, 72        # limb 0's lowest bit; 32-bit limbs up to 2^1184 (the core's)


def _normalise(L):
    """Carry-propagated limbs (each in [0, 2^32)) and the sign of sum_i L_i 2^(32 i)."""
    def step(carry, x):
        v = x + carry
        return v >> 32, v & I64(0xFFFFFFFF)
    carry, out = lax.scan(step, jnp.zeros(L.shape[0], I64), L.T)
    return out.T, carry < 0


def _exact(ab, bb, cb, rnd):
    """round(sum_k a_k b_k + c) with the exact sum (``lowprec._accumulate._exact_dot``): every
    finite term's signed significand added into 32-bit limbs held in int64, carries
    propagated, the top 62 bits (sticky below) rounded to odd into float64 and then once into
    the format. IEEE Inf / NaN; -0 only when every term is -0."""
    K = ab.shape[-1]
    va, vb = _view(ab, None), _view(bb, None)
    (sa, sb), (ea, eb), (fa, fb) = (_outer(va[i], vb[i]) for i in range(3))
    terms = jnp.concatenate([_product(sa, ea, fa, sb, eb, fb), cb[:, None]], axis=1)
    fin = (terms >> 52) & 0x7FF != 0x7FF
    m, e, _ = _parts(terms)
    m = jnp.where(fin, m, I64(0))
    pos = jnp.where(m != 0, e - XMIN, I64(0))
    i, r = pos >> 5, (pos & 31).astype(U64)
    a = jnp.abs(m).astype(U64)
    sgn = jnp.where(m < 0, I64(-1), I64(1))
    rows = jnp.broadcast_to(jnp.arange(terms.shape[0])[:, None], terms.shape)
    L = jnp.zeros((terms.shape[0], NLIMB + 2), I64)
    parts = ((a << r) & U64(0xFFFFFFFF), ((a << r) >> U64(32)) & U64(0xFFFFFFFF),
             jnp.where(r > 0, a >> jnp.where(r > 0, U64(64) - r, U64(0)), U64(0)))
    for k, part in enumerate(parts):
        L = L.at[rows, i + k].add(sgn * part.astype(I64))
    Ln, neg = _normalise(L)
    Ln, _ = _normalise(jnp.where(neg[:, None], -L, L))          # the magnitude's limbs
    idx = jnp.arange(NLIMB + 2)
    t = jnp.max(jnp.where(Ln != 0, idx, -1), axis=1)
    limb = lambda j: jnp.where(j >= 0, jnp.take_along_axis(  # noqa: E731
        Ln, jnp.clip(j, 0, NLIMB + 1)[:, None], axis=1)[:, 0], I64(0)).astype(U64)
    hi64, lo32 = (limb(t) << U64(32)) | limb(t - 1), limb(t - 2)
    p = 63 - clz(jnp.where(limb(t) == 0, U64(1), limb(t))).astype(I64)   # msb of limb t
    sh = jnp.clip(p - 29, 0, 2).astype(U64)
    sl = jnp.clip(29 - p, 0, 29).astype(U64)
    w = jnp.where(p >= 29, hi64 >> sh, (hi64 << sl) | (lo32 >> (U64(32) - sl)))
    lost = jnp.where(p >= 29, ((hi64 & ((U64(1) << sh) - U64(1))) != 0) | (lo32 != 0),
                     (lo32 & ((U64(1) << (U64(32) - sl)) - U64(1))) != 0)
    lost = lost | _any((Ln != 0) & (idx[None, :] < (t - 2)[:, None]))
    v = _bits_odd(neg, (w | lost.astype(U64)).astype(I64), XMIN + 32 * (t - 2) + 3 + p)
    neg_zero = ~_any((terms >> 63) == 0)                          # every term is -0
    v = jnp.where(t < 0, _zero(neg_zero), v)
    # Inf and NaN terms: their IEEE sum (NaN for NaN, or +Inf with -Inf)
    nan = _any(~fin & ((terms & U64(MASK52)) != 0))
    pinf = _any(~fin & (terms == _INF))
    ninf = _any(~fin & ((terms & U64(MASK52)) == 0) & ((terms >> 63) == 1))
    v = jnp.where(nan | (pinf & ninf), QNAN, jnp.where(
        pinf, _INF, jnp.where(ninf, _INF | (ninf.astype(U64) << 63), v)))
    return rnd(v, 0)[0]
