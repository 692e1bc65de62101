"""JAX adapter: the core's ``round``, ``encode``, ``decode``, block ``quantize`` /
``dequantize`` / ``fake_quantize`` (MX and NVFP4), ``matmul`` (fused-adder and sequential
accumulators) and ``quantized_dot_general``, in ``jax.numpy``, jittable and vmappable,
bit-identical to ``lowprec``; Pallas kernels in ``lowprec_jax.pallas``.

Same arguments and rules as ``lp.round`` / ``lp.encode`` / ``lp.decode``. Float32, float16 and
bfloat16 inputs work with JAX's default 32-bit types; float64 inputs, and formats that only
float64 holds, need ``jax.config.update("jax_enable_x64", True)`` (``matmul`` always does).
Stochastic rounding takes ``rbits=`` (unsigned integers broadcastable to x), ``seed=`` (the
core's Philox4x32-10 counter generator, same words as ``lp.random_bits``) or ``key=`` (a JAX
PRNG key: ``jax.random.bits`` words, not the core's). Where the core raises (a NaN input into
a format without NaN under an explicit overflow policy), the JAX functions cannot raise under
``jit``: the value is NaN and the code all ones; outside ``jit`` they raise as the core does.
Every conversion is integer arithmetic on the bits: XLA's CPU backend flushes subnormals.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import cast
from lowprec.formats import TableFormat, format as _format
from lowprec.rounding import check_overflow, check_seed

from ._round import round_bits

__all__ = ["round", "encode", "decode", "random_bits"]

_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _check_x(x):
    x = jnp.asarray(x)
    if x.dtype.name not in _FLOATS:
        raise TypeError(f"x must be a float16, bfloat16, float32 or float64 array, got dtype "
                        f"{x.dtype}")
    return x


def _mulhilo(a, b):
    """(hi, lo) words of the 64-bit product of uint32 arrays (16-bit limbs: no uint64)."""
    m = jnp.uint32(0xFFFF)
    a0, a1, b0, b1 = a & m, a >> 16, b & m, b >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> 16) + (p01 & m) + (p10 & m)
    return p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16), (p00 & m) | (mid << 16)


def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10, as ``lowprec._kernels.philox4x32``."""
    for _ in range(10):
        h0, l0 = _mulhilo(jnp.uint32(0xD2511F53), c0)
        h1, l1 = _mulhilo(jnp.uint32(0xCD9E8D57), c2)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = k0 + jnp.uint32(0x9E3779B9)
        k1 = k1 + jnp.uint32(0xBB67AE85)
    return c0, c1, c2, c3


def random_bits(seed, shape, wide=False):
    """The core's seeded random words (``lp.random_bits``) as (hi, lo) uint32 arrays; hi is 0
    unless ``wide``. Stream word k is word k % 4 of Philox4x32-10 at counter (k // 4, 0, 0, 0)
    with key (seed_lo, seed_hi); element i takes word i (``wide``: 2i low, 2i + 1 high)."""
    seed = check_seed(seed)
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError("seed= supports up to 2^32 elements per call in lowprec_jax")
    per = 2 if wide else 4                             # elements per Philox block
    q = jnp.arange(-(-n // per), dtype=jnp.uint32)
    z = jnp.zeros_like(q)
    w = _philox(q, z, z, z, jnp.uint32(seed & 0xFFFFFFFF), jnp.uint32(seed >> 32))
    if wide:
        lo = jnp.stack([w[0], w[2]], axis=1).reshape(-1)[:n].reshape(shape)
        hi = jnp.stack([w[1], w[3]], axis=1).reshape(-1)[:n].reshape(shape)
        return hi, lo
    lo = jnp.stack(w, axis=1).reshape(-1)[:n].reshape(shape)
    return jnp.zeros(shape, jnp.uint32), lo


def _random_words(shape, W, r, seed, rbits, key):
    if rbits is not None:
        rb = jnp.asarray(rbits)
        if not jnp.issubdtype(rb.dtype, jnp.unsignedinteger):
            raise TypeError(f"rbits must be an unsigned integer array, got dtype {rb.dtype}")
        if rb.dtype.itemsize * 8 < r:
            raise ValueError(f"rbits has {rb.dtype.itemsize * 8} bits per element but {r} "
                             "random bits are used")
        rb = jnp.broadcast_to(rb, shape)
        if rb.dtype.itemsize == 8:
            return (rb >> 32).astype(jnp.uint32), (rb & 0xFFFFFFFF).astype(jnp.uint32)
        return jnp.zeros(shape, jnp.uint32), rb.astype(jnp.uint32)
    if key is not None:
        lo = jax.random.bits(key, shape, jnp.uint32)
        hi = jax.random.bits(jax.random.fold_in(key, 1), shape, jnp.uint32) if r > 32 else \
            jnp.zeros(shape, jnp.uint32)
        return hi, lo
    if seed is not None:
        return random_bits(seed, shape, wide=r > 32)
    z = jnp.zeros(shape, jnp.uint32)
    return z, z


def _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key):
    fmt = _format(fmt)
    if isinstance(fmt, TableFormat):
        raise NotImplementedError(f"lowprec_jax does not round to table formats ({fmt.name}) "
                                  "yet; use lp.round")
    x = _check_x(x)
    sources = sum(v is not None for v in (seed, rbits, key))
    if sources > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    kw_seed = 0 if key is not None else seed
    mode, r, variant = cast._check_rounding_args(fmt, rounding, sr_bits, sr_variant, kw_seed,
                                                 rbits, x.dtype)
    policy = check_overflow(overflow, fmt)
    W = cast._work_bits(fmt, x.dtype)
    if W == 64 and not jax.config.jax_enable_x64:
        raise ValueError(f"{fmt.name} from {x.dtype} needs a float64 work type: enable "
                         "jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    P = cast._params(fmt, W, mode, policy, overflow is None, r, variant)
    ft, ut = (jnp.float32, jnp.uint32) if W == 32 else (jnp.float64, jnp.uint64)
    ub = lax.bitcast_convert_type(x.astype(ft), ut)
    Rh, Rl = _random_words(x.shape, W, r, seed, rbits, key)
    code, vb = round_bits(ub, Rh, Rl, tuple(int(v) for v in P))
    err = code == ut((1 << W) - 1)
    _raise_if_concrete(err, x, fmt)
    return W, code, vb, err


def _raise_if_concrete(err, x, fmt):
    if isinstance(err, jax.core.Tracer):
        return
    if bool(jnp.any(err)):
        i = int(jnp.argmax(err.reshape(-1)))
        raise ValueError(f"x holds NaN (first at flat index {i}) but {fmt.name} has no NaN "
                         "code")


GRADS = ("ste", "none")


def round(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, key=None, dtype=None, grad="ste", grad_fmt=None,
          grad_rounding="nearest_even", grad_kw=None):
    """``lp.round`` in JAX: x rounded once to ``fmt``; the result dtype follows the core's
    rule (``lowprec.cast``) or ``dtype``.

    Gradient (``jax.grad`` / ``vjp``): ``grad="ste"`` (default) passes the incoming gradient
    straight through (Bengio et al. 2013), ``"none"`` gives zero. ``grad_fmt``: the incoming
    gradient is itself rounded to that format first (``grad_rounding`` and the stochastic
    arguments in ``grad_kw``, e.g. ``dict(key=k)``), as FP8/FP4 training recipes do; the
    result is returned in x's dtype."""
    if grad not in GRADS:
        raise ValueError(f"grad={grad!r} is not allowed; choose one of {GRADS}")
    x = _check_x(x)
    args = (fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key, dtype)

    @jax.custom_vjp
    def f(v):
        return _round_values(v, *args)

    def f_fwd(v):
        return f(v), None

    def f_bwd(_, g):
        if grad == "none":
            return (jnp.zeros(x.shape, x.dtype),)
        if grad_fmt is not None:
            g = round(g, grad_fmt, grad_rounding, grad="none", **(grad_kw or {}))
        return (g.astype(x.dtype),)

    f.defvjp(f_fwd, f_bwd)
    return f(x)


def _round_values(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key, dtype):
    W, _, vb, err = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key)
    ft = jnp.float32 if W == 32 else jnp.float64
    v = lax.bitcast_convert_type(vb, ft)
    v = jnp.where(err, jnp.array(jnp.nan, ft), v)
    rdt = np.dtype(dtype) if dtype is not None else cast.result_dtype(x.dtype, _format(fmt))
    if not cast.holds(_format(fmt), rdt):
        raise ValueError(f"dtype={rdt} cannot hold every value of {_format(fmt).name}")
    return v.astype(rdt)


def encode(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, key=None):
    """``lp.encode`` in JAX: the codes, in the smallest unsigned dtype holding the format."""
    fmt = _format(fmt)
    _, code, _, err = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key)
    mask = code.dtype.type((1 << fmt.bits) - 1)
    return jnp.where(err, mask, code & mask).astype(fmt.code_dtype)


def decode(codes, fmt, dtype=None):
    """``lp.decode`` in JAX: a gather from the table of every code's value (formats of at most
    16 bits; the table comes from the core)."""
    fmt = _format(fmt)
    if fmt.bits > 16:
        raise NotImplementedError("lowprec_jax.decode supports formats of at most 16 bits")
    codes = jnp.asarray(codes)
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be an integer array, got dtype {codes.dtype}")
    dt = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if cast.holds(fmt, np.float32) else np.dtype(np.float64))
    table = cast.decode(np.arange(1 << fmt.bits), fmt, dtype=dt) if not (
        getattr(fmt, "symmetric", False)) else cast._decode_table(fmt).astype(dt)
    return jnp.asarray(table)[codes.astype(jnp.int32)]


from .blocks import QuantizedArray, dequantize, fake_quantize, quantize  # noqa: E402
from .matmul import matmul  # noqa: E402
from .dot import quantized_dot_general  # noqa: E402

__all__ += ["quantize", "dequantize", "fake_quantize", "QuantizedArray", "matmul",
            "quantized_dot_general"]
