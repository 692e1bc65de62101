"""Block quantization in JAX for the power-of-two scale rules (OCP MX ``floor``, ``ceil``,
torchao ``even``, TE/cuBLAS ``rceil``): ``quantize`` (element and scale codes, laid out as
``lp.BlockTensor``'s: blocked axis last, padded, ``(..., blocks, k)``) and ``fake_quantize``
(the dequantized values), bit-identical to ``lp.quantize`` / ``lp.fake_quantize`` for
float32, float16 and bfloat16 inputs, 1 x k blocks along any axis. Integer operations on the
float32 bits throughout (amax, scale exponents, the exact scaling by 2^-e), so that no
backend's float flushing or NaN-dropping reduction can change a bit. Two-level (NVFP4) rules and
tiles are still to come.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import blocks as _B, cast
from lowprec.rounding import check_overflow  # noqa: F401  (same validation as the core)

from . import _check_x, _random_words
from ._round import round_bits_impl

__all__ = ["quantize", "fake_quantize"]

U32 = jnp.uint32
I32 = jnp.int32
POW2_RULES = ("floor", "ceil", "even", "rceil")


def _floor_log2_bits(a):
    """floor(log2 v) of positive float32 values given as their bits (subnormals included)."""
    ef = (a >> 23).astype(I32)
    mant = a & U32(0x7FFFFF)
    sub = 31 - lax.clz(mant).astype(I32) - 149
    return jnp.where(ef > 0, ef - 127, sub)


def _times_pow2(b, k):
    """Float32 bits ``b`` times 2^k (per-element int32 k), exact where the result is a normal
    float32 or exactly a subnormal, Inf beyond float32's range; results below 2^-126 that would lose bits become the
    smallest float32 of the same sign, which every rounding into an element format whose
    smallest step is at least 2^-80 treats as the exact value (see ``lowprec.blocks``)."""
    sign = b & U32(0x80000000)
    a = b & U32(0x7FFFFFFF)
    ef = (a >> 23).astype(I32)
    mant = a & U32(0x7FFFFF)
    lz = lax.clz(mant).astype(I32) - 8                      # subnormal: bring msb to bit 23
    sig = jnp.where(ef > 0, mant | U32(1 << 23), mant << jnp.maximum(lz, 0).astype(U32))
    E = jnp.where(ef > 0, ef - 127, -126 - lz) + k
    normal = sign | ((E + 127).astype(U32) << 23) | (sig & U32(0x7FFFFF))
    sh = (-126 - E).astype(I32)                              # subnormal result: shift right
    shc = jnp.clip(sh, 0, 31).astype(U32)
    exact = (sh <= 24) & ((sig & ((U32(1) << shc) - U32(1))) == 0)
    subn = sign | (sig >> shc)
    out = jnp.where(E >= -126, normal, jnp.where(exact, subn, sign | U32(1)))
    out = jnp.where(E > 127, sign | U32(0x7F800000), out)      # beyond float32: Inf
    return jnp.where(a == 0, b, out)


def _scale_exp(amax_bits, bf):
    """Unclipped scale exponent per block for the rule (``lowprec.blocks._pow2_scale_exp``)."""
    emax = bf.emax_elem
    safe = jnp.where(amax_bits > 0, amax_bits, U32(0x3F800000))
    fl = _floor_log2_bits(safe)
    if bf.scale_rule == "floor":
        return fl - emax
    if bf.scale_rule == "ceil":
        pow2 = (safe & U32(0x7FFFFF)) == 0
        sub = (safe >> 23) == 0
        pow2 = jnp.where(sub, (safe & (safe - U32(1))) == 0, pow2)
        return fl - emax + (~pow2).astype(I32)
    if bf.scale_rule == "even":
        m_elem = bf.elem.man_bits if hasattr(bf.elem, "man_bits") else bf.elem.bits - 2
        return ((safe + U32(1 << (23 - m_elem - 1))) >> 23).astype(I32) - 127 - emax
    # rceil: round_up(amax * fl32(1 / max_elem)) as a power of two, in float32
    recip = np.float32(1.0) / np.float32(bf.elem.max)
    p = lax.bitcast_convert_type(safe, jnp.float32) * recip
    pb = lax.bitcast_convert_type(p, U32) & U32(0x7FFFFFFF)
    inf = pb == U32(0x7F800000)
    pfl = _floor_log2_bits(jnp.where(pb == 0, U32(1), pb))
    sub = (pb >> 23) == 0
    pow2 = jnp.where(sub, (pb & (pb - U32(1))) == 0, (pb & U32(0x7FFFFF)) == 0)
    e = pfl + (~pow2).astype(I32)
    return jnp.where(inf, 1023, jnp.where(pb == 0, -(1 << 20), e))


def _check(x, bf, axis):
    bf = _B.block_format(bf)
    x = _check_x(x)
    if bf.scale_rule not in POW2_RULES or bf.tile is not None:
        raise NotImplementedError(f"lowprec_jax.blocks supports the rules {POW2_RULES} with "
                                  f"1 x k blocks; {bf.name} is still to come (use lp.quantize)")
    if x.dtype.itemsize > 4:
        raise ValueError("lowprec_jax block quantization takes float32, float16 or bfloat16")
    if bf.flush_subnormal_inputs or bf.elem.min_subnormal < 2.0**-80 or not cast.holds(
            bf.elem, np.float32):
        raise NotImplementedError(f"{bf.name}'s element format or policies need the core's "
                                  "float64 path (use lp.quantize)")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension to cut into blocks")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for an input with {x.ndim} dimensions")
    return bf, x, axis % x.ndim


def _blocked(a, axis, bf):
    a = jnp.moveaxis(a, axis, -1)
    padn = -a.shape[-1] % bf.k
    if padn and not bf.pad:
        raise ValueError(f"axis {axis} has length {a.shape[-1]}, not a multiple of k={bf.k}; "
                         "use a BlockFormat with pad=True or pad the input")
    if padn:
        a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, padn)])
    return a.reshape(a.shape[:-1] + (a.shape[-1] // bf.k, bf.k))


def quantize_bits(xb, Rh, Rl, bf, P):
    """The block step on float32 bits already cut into blocks (..., blocks, k): (element codes,
    scale codes, clipped scale exponents, NaN-block flags, dequantized value bits). Shared by
    ``quantize`` / ``fake_quantize`` and the Pallas kernel; P: the element rounding
    parameters (a tuple, saturating)."""
    elem, sf = bf.elem, bf.scale_fmt
    a = xb & U32(0x7FFFFFFF)
    nan = jnp.max((a > U32(0x7F800000)).astype(U32), axis=-1) > 0    # max: Triton has no
    inf = jnp.max((a == U32(0x7F800000)).astype(U32), axis=-1) > 0   # boolean reductions
    amax = jnp.max(jnp.where(a < U32(0x7F800000), a, U32(0)), axis=-1)
    if bf.nonfinite == "nan":
        nan = nan | inf
    exp = jnp.where(amax > 0, _scale_exp(amax, bf), sf.emin)
    if bf.nonfinite == "saturate":
        exp = jnp.where(inf, sf.emax, exp)
    if bf.scale_overflow == "nan":
        nan = nan | (exp > sf.emax)
    exp = jnp.clip(exp, sf.emin, sf.emax)
    s_nan = sf.nan_code if sf.has_nan else sf.max_code
    s_codes = jnp.where(nan, s_nan, exp + sf.bias).astype(sf.code_dtype)
    scaled = _times_pow2(xb, -exp[..., None])
    if bf.nonfinite == "saturate":
        emax_bits = U32(int(np.float32(elem.max).view(np.uint32)))
        scaled = jnp.where(a == U32(0x7F800000), (xb & U32(0x80000000)) | emax_bits, scaled)
    scaled = jnp.where(nan[..., None], U32(0), scaled)
    codes, vb = round_bits_impl(scaled, Rh, Rl, P)
    mask = U32((1 << elem.bits) - 1)
    codes = codes & mask
    if elem.has_nan:
        codes = jnp.where(nan[..., None], U32(elem.nan_code), codes)
    vb = _times_pow2(vb, exp[..., None])                   # exact: few element bits
    vb = jnp.where(nan[..., None], U32(0x7FC00000), vb)
    return codes.astype(elem.code_dtype), s_codes, exp, nan, vb


_quantize_bits_jit = jax.jit(quantize_bits, static_argnames=("bf", "P"))


def prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key):
    """Validated (bf, x, axis), x's float32 bits and random words cut into blocks, and the
    element rounding parameters P."""
    bf, x, axis = _check(x, bf, axis)
    elem, sf = bf.elem, bf.scale_fmt
    if sum(v is not None for v in (seed, rbits, key)) > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    mode, r, variant = cast._check_rounding_args(elem, rounding, sr_bits, sr_variant,
                                                 0 if key is not None else seed, rbits,
                                                 np.float32)
    if sr_variant == "te":
        raise NotImplementedError("sr_variant='te' is still to come in lowprec_jax")
    P = tuple(int(v) for v in cast._params(elem, 32, mode, "saturate", False, r, variant))
    xb = _blocked(lax.bitcast_convert_type(x.astype(jnp.float32), U32), axis, bf)
    Rh, Rl = _random_words(x.shape, 32, r, seed, rbits, key)
    Rh, Rl = _blocked(Rh, axis, bf), _blocked(Rl, axis, bf)
    return bf, x, axis, xb, Rh, Rl, P


def _quantize(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key, values=False):
    bf, x, axis, xb, Rh, Rl, P = prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                         rbits, key)
    codes, s_codes, exp, nan, vb = _quantize_bits_jit(xb, Rh, Rl, bf, P)
    if values:
        return bf, x, axis, vb
    return bf, x, axis, codes, s_codes, exp, nan


def quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, sr_variant="srff",
             seed=None, rbits=None, key=None):
    """``lp.quantize`` in JAX for the power-of-two rules: (element codes, scale codes), in
    ``lp.BlockTensor``'s layout (``.codes``, ``.scale_codes``). ``seed``: the core's Philox
    words at x's flat indices; ``rbits`` shaped like x; ``key``: a JAX PRNG key."""
    _, _, _, codes, s_codes, _, _ = _quantize(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                              rbits, key)
    return codes, s_codes


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None,
                  sr_variant="srff", seed=None, rbits=None, key=None, grad="ste",
                  grad_fmt=None, grad_rounding="nearest_even", grad_kw=None):
    """``lp.fake_quantize`` in JAX for the power-of-two rules: every value rounded to its
    block's grid and returned in x's shape and dtype (NaN blocks NaN). Gradient: straight
    through (``grad="ste"``, the default) or zero (``"none"``); ``grad_fmt``: the incoming
    gradient is first fake-quantized to that block format (``grad_rounding``, stochastic
    arguments in ``grad_kw``), along the same axis, as MX training recipes do."""
    if grad not in ("ste", "none"):
        raise ValueError(f"grad={grad!r} is not allowed; choose 'ste' or 'none'")
    x = _check_x(x)

    @jax.custom_vjp
    def f(v):
        return _fake(v, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key)

    def f_bwd(_, g):
        if grad == "none":
            return (jnp.zeros_like(g),)
        if grad_fmt is not None:
            g = fake_quantize(g, grad_fmt, axis, grad_rounding, grad="none", **(grad_kw or {}))
        return (g,)

    f.defvjp(lambda v: (f(v), None), f_bwd)
    return f(x)


def _fake(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key):
    bf, x, axis, vb = _quantize(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key,
                                values=True)
    return unblocked(lax.bitcast_convert_type(vb, jnp.float32), x, axis)


def unblocked(v, x, axis):
    """Blocked values (..., blocks, k) back to x's shape and dtype."""
    v = v.reshape(v.shape[:-2] + (-1,))[..., :x.shape[axis]]
    return jnp.moveaxis(v, -1, axis).astype(x.dtype)
