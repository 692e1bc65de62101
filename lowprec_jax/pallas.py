"""Pallas kernels (``lowprec_jax.pallas``): ``round`` / ``encode`` as one Pallas kernel over
blocks of the flattened input, the body being the same integer rounding step as
``lowprec_jax.round`` (``_round.round_bits_impl``), so the bits are the core's. Runs with
``interpret=True`` on CPU (the default here) and lowers for GPUs through Pallas' Triton backend
(float32 work type: formats that float32 holds, inputs of at most 32 bits)."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from lowprec import cast
from lowprec.formats import TableFormat, format as _format
from lowprec.rounding import check_overflow

from . import _check_x, _random_words
from ._round import round_bits_impl
from .blocks import prepare, quantize_bits, unblocked

__all__ = ["round", "encode", "fake_quantize", "BLOCK", "ROWS"]

BLOCK = 1024          # elements per kernel instance (round, encode)
ROWS = 16             # blocks per kernel instance (fake_quantize)


def _kernel(x_ref, rh_ref, rl_ref, v_ref, c_ref, *, P):
    code, vb = round_bits_impl(x_ref[...], rh_ref[...], rl_ref[...], P)
    v_ref[...] = vb
    c_ref[...] = code


def _call(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key, interpret):
    fmt = _format(fmt)
    x = _check_x(x)
    if isinstance(fmt, TableFormat) or cast._work_bits(fmt, x.dtype) != 32:
        raise ValueError(f"the Pallas kernels use a float32 work type: {fmt.name} from "
                         f"{x.dtype} needs float64 (use lowprec_jax.round)")
    if sum(v is not None for v in (seed, rbits, key)) > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    mode, r, variant = cast._check_rounding_args(fmt, rounding, sr_bits, sr_variant,
                                                 0 if key is not None else seed, rbits,
                                                 x.dtype)
    P = tuple(int(v) for v in cast._params(fmt, 32, mode, check_overflow(overflow, fmt),
                                           overflow is None, r, variant))
    Rh, Rl = _random_words(x.shape, 32, r, seed, rbits, key)
    n = x.size
    pad = -n % BLOCK
    flat = [jnp.pad(a.reshape(-1), (0, pad)) for a in
            (lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32), Rh, Rl)]
    spec = pl.BlockSpec((BLOCK,), lambda i: (i,))
    shape = jax.ShapeDtypeStruct(flat[0].shape, jnp.uint32)
    vb, code = pl.pallas_call(partial(_kernel, P=P), out_shape=(shape, shape),
                              grid=(flat[0].shape[0] // BLOCK,), in_specs=[spec] * 3,
                              out_specs=(spec, spec), interpret=interpret,
                              compiler_params=pltriton.CompilerParams())(*flat)
    return fmt, x, vb[:n].reshape(x.shape), code[:n].reshape(x.shape)


def round(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, key=None, interpret=True):
    """``lowprec_jax.round`` as a Pallas kernel (no gradient rule; the values only)."""
    fmt, x, vb, code = _call(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key,
                             interpret)
    err = code == jnp.uint32(0xFFFFFFFF)
    v = jnp.where(err, jnp.float32(jnp.nan), lax.bitcast_convert_type(vb, jnp.float32))
    return v.astype(cast.result_dtype(x.dtype, fmt))


def encode(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, key=None, interpret=True):
    """``lowprec_jax.encode`` as a Pallas kernel."""
    fmt, x, _, code = _call(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key,
                            interpret)
    mask = jnp.uint32((1 << fmt.bits) - 1)
    return jnp.where(code == jnp.uint32(0xFFFFFFFF), mask, code & mask).astype(fmt.code_dtype)


def _block_kernel(x_ref, rh_ref, rl_ref, *refs, bf, P):
    ts = (refs[0][0], refs[0][1]) if len(refs) == 2 else None
    refs[-1][...] = quantize_bits(x_ref[...], rh_ref[...], rl_ref[...], bf, P, ts)[2]


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None,
                  sr_variant="srff", seed=None, rbits=None, key=None, tensor_amax=None,
                  interpret=True):
    """``lowprec_jax.blocks.fake_quantize`` (MX power-of-two rules and NVFP4) as a Pallas
    kernel over ``ROWS`` blocks at a time: amax, scale, rounding and dequantization in one pass
    over the bits (no gradient rule; the values only). NVFP4's tensor scales come from one
    reduction before the kernel and enter it as a (2,) input."""
    bf, x, axis, xb, Rh, Rl, P, ts = prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                             rbits, key, tensor_amax)
    shape = xb.shape
    k = shape[-1]
    n = xb.size // k
    pad = -n % ROWS
    flat = [jnp.pad(a.reshape(n, k), ((0, pad), (0, 0))) for a in (xb, Rh, Rl)]
    spec = pl.BlockSpec((ROWS, k), lambda i: (i, 0))
    specs = [spec] * 3
    if ts is not None:
        flat.append(jnp.stack(ts))
        specs.append(pl.BlockSpec((2,), lambda i: (0,)))
    vb = pl.pallas_call(partial(_block_kernel, bf=bf, P=P),
                        out_shape=jax.ShapeDtypeStruct(flat[0].shape, jnp.uint32),
                        grid=(flat[0].shape[0] // ROWS,), in_specs=specs, out_specs=spec,
                        interpret=interpret, compiler_params=pltriton.CompilerParams())(*flat)
    v = lax.bitcast_convert_type(vb[:n].reshape(shape), jnp.float32)
    return unblocked(v, x.shape, axis, bf).astype(x.dtype)
