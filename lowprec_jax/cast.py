"""``round``, ``encode``, ``decode`` in JAX: validate with the core's ``lp.plan``, then the
rounding step of ``lowprec_jax._round`` on the bits."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import lowprec as lp
from lowprec.formats import TableFormat
from lowprec.rounding import check_random_source

from ._round import round_bits
from .stream import random_words
from .sums import _f32_from_f64_bits, _f64_bits

__all__ = ["round", "encode", "decode", "check_x"]

_FLOATS = ("float16", "bfloat16", "float32", "float64")


def check_x(x):
    """x as a JAX array of a float dtype the core accepts."""
    x = jnp.asarray(x)
    if x.dtype.name not in _FLOATS:
        raise TypeError(f"x must be a float16, bfloat16, float32 or float64 array, got dtype "
                        f"{x.dtype}")
    return x


def _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key):
    fmt = lp.format(fmt)
    if isinstance(fmt, TableFormat):
        raise NotImplementedError(f"lowprec_jax does not round to table formats ({fmt.name}) "
                                  "yet; use lp.round")
    x = check_x(x)
    sources = sum(v is not None for v in (seed, rbits, key))
    if sources > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    plan = lp.plan(fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                   dtype=x.dtype)
    check_random_source(plan.mode, 0 if key is not None else seed, rbits)
    W = plan.work_bits
    if W == 64 and not jax.config.jax_enable_x64:
        raise ValueError(f"{fmt.name} from {x.dtype} needs a float64 work type: enable "
                         "jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    ft, ut = (jnp.float32, jnp.uint32) if W == 32 else (jnp.float64, jnp.uint64)
    # float32 -> float64 by integer operations: XLA's CPU backend flushes float32 subnormals
    ub = _f64_bits(x) if W == 64 else lax.bitcast_convert_type(x.astype(ft), ut)
    Rh, Rl = random_words(x.shape, W, plan.sr_bits, seed, rbits, key)
    code, vb = round_bits(ub, Rh, Rl, plan)
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


def round(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
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
    x = check_x(x)
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
    rdt = np.dtype(dtype) if dtype is not None else lp.result_dtype(x.dtype, fmt)
    if not lp.holds(fmt, rdt):
        raise ValueError(f"dtype={rdt} cannot hold every value of {lp.format(fmt).name}")
    if W == 64 and rdt == np.float32:       # integer operations: XLA flushes float32 subnormals
        v32 = lax.bitcast_convert_type(_f32_from_f64_bits(vb), jnp.float32)
        return jnp.where(err, jnp.array(jnp.nan, jnp.float32), v32)
    return v.astype(rdt)


def encode(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, key=None):
    """``lp.encode`` in JAX: the codes, in the smallest unsigned dtype holding the format."""
    fmt = lp.format(fmt)
    _, code, _, err = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key)
    mask = code.dtype.type((1 << fmt.bits) - 1)
    return jnp.where(err, mask, code & mask).astype(fmt.code_dtype)


def decode(codes, fmt, dtype=None):
    """``lp.decode`` in JAX: a gather from the table of every code's value (formats of at most
    16 bits; the table comes from the core). An out-of-range code raises as in the core, or,
    under ``jit`` where nothing can raise, decodes as NaN."""
    fmt = lp.format(fmt)
    if fmt.bits > 16:
        raise NotImplementedError("lowprec_jax.decode supports formats of at most 16 bits")
    codes = jnp.asarray(codes)
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be an integer array, got dtype {codes.dtype}")
    dt = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if lp.holds(fmt, np.float32) else np.dtype(np.float64))
    every = np.arange(1 << fmt.bits)
    if getattr(fmt, "symmetric", False):        # the unused code -2^(bits-1) decodes as 0
        every = np.where(every == 1 << (fmt.bits - 1), 0, every)
    table = lp.decode(every, fmt, dtype=dt)
    wide = codes.astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    bad = (wide < 0) | (wide >= (1 << fmt.bits))
    if not isinstance(codes, jax.core.Tracer) and bool(jnp.any(bad)):
        c = int(np.asarray(codes)[np.asarray(bad)].reshape(-1)[0])
        raise ValueError(f"code {c} is out of range for {fmt.name}: codes are 0 .. "
                         f"{(1 << fmt.bits) - 1} ({fmt.bits} bits)")
    # traced codes cannot raise: an out-of-range code decodes as NaN (documented)
    out = jnp.asarray(table)[jnp.clip(wide, 0, (1 << fmt.bits) - 1).astype(jnp.int32)]
    return jnp.where(bad, jnp.asarray(np.nan, out.dtype), out)


