"""Pallas kernels (``lowprec_jax.pallas``): ``round`` / ``encode`` as one Pallas kernel over
blocks of the flattened input, the body being the same integer rounding step as
``lowprec_jax.round`` (``_round.round_bits_impl``), so the bits are the core's. Runs with
``interpret=True`` on CPU (the default here) and lowers for GPUs through Pallas' Triton backend
(float32 work type: formats that float32 holds, inputs of at most 32 bits).
``fake_quantize``: MX and NVFP4 block quantization, ``ROWS`` blocks per kernel instance.
``matmul``: a quantized matmul, one output tile per kernel instance, looping over K in the
fused adder's steps with the same integer step as ``lowprec_jax.matmul`` (int64: needs
``jax_enable_x64``)."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

import lowprec as lp
from lowprec.rounding import check_random_source
from lowprec.formats import TableFormat, format as _format


from .cast import check_x as _check_x
from .stream import random_words as _random_words
from .block_matmul import fused_operands
from .fused import _finish, _fused_step
from .sums import _Rounder, _f64_bits
from ._round import round_bits_impl
from .blocks import TWO_LEVEL, QuantizedArray, prepare, quantize_bits, tensor_scales, unblocked

__all__ = ["round", "encode", "fake_quantize", "matmul", "BLOCK", "ROWS", "TILE"]

BLOCK = 1024          # elements per kernel instance (round, encode)
ROWS = 16             # blocks per kernel instance (fake_quantize)
TILE = 16             # output rows and columns per kernel instance (matmul)


def _kernel(x_ref, rh_ref, rl_ref, v_ref, c_ref, *, P):
    code, vb = round_bits_impl(x_ref[...], rh_ref[...], rl_ref[...], P)
    v_ref[...] = vb
    c_ref[...] = code


def _call(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key, interpret):
    fmt = _format(fmt)
    x = _check_x(x)
    if isinstance(fmt, TableFormat) or lp.plan(fmt, dtype=x.dtype).work_bits != 32:
        raise ValueError(f"the Pallas kernels use a float32 work type: {fmt.name} from "
                         f"{x.dtype} needs float64 (use lowprec_jax.round)")
    if sum(v is not None for v in (seed, rbits, key)) > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    P = lp.plan(fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                dtype=x.dtype)
    check_random_source(P.mode, 0 if key is not None else seed, rbits)
    r = P.sr_bits
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


def round(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, key=None, interpret=True):
    """``lowprec_jax.round`` as a Pallas kernel (no gradient rule; the values only)."""
    fmt, x, vb, code = _call(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, key,
                             interpret)
    err = code == jnp.uint32(0xFFFFFFFF)
    v = jnp.where(err, jnp.float32(jnp.nan), lax.bitcast_convert_type(vb, jnp.float32))
    return v.astype(lp.result_dtype(x.dtype, fmt))


def encode(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
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
    bf, x, axis, xb, Rh, Rl, P, g = prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                            rbits, key, tensor_amax)
    ts = None if g is None else tensor_scales(g, bf.scale_rule)
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


def _matmul_kernel(sa, ea, fa, sb, eb, fb, c_ref, o_ref, *, fz, n, K, mab, c_emin, rnd):
    """One (TILE, TILE) output tile: the running sums start at c and take ``n`` products of
    each row of A and column of B per step (``lowprec_jax.matmul._fused_step``)."""
    def step(s, acc):
        k = pl.ds(s * n, n)
        ta = tuple(r[:, k][:, None, :] for r in (sa, ea, fa))        # (TILE, 1, n)
        tb = tuple(r[:, k][None, :, :] for r in (sb, eb, fb))        # (1, TILE, n)
        valid = s * n + lax.broadcasted_iota(jnp.int32, (1, 1, n), 2) < K
        return _fused_step(ta, tb, acc, fz, mab, c_emin, rnd, 0, valid)[0]
    o_ref[...] = lax.fori_loop(0, -(-K // n), step, c_ref[...])


def matmul(A, B, acc, c=None, *, dtype=None, interpret=True):
    """``lowprec_jax.matmul`` as a Pallas kernel, for fused-adder accumulators without
    stochastic rounding or promotion: every ``lp.hardware`` preset of that kind (e.g.
    ``h100-fp8``, ``b200-mxf8f6f4``) and ``lp.exact_per_block`` (each block's scaled dot
    product exact, then one nearest-even float32 rounding). A, B: float arrays of the input
    formats, or ``QuantizedArray`` operands with power-of-two (MX) scales, A blocked along K
    (its last axis) and B along K (axis -2); c: values of the addend format. Needs
    ``jax_enable_x64``. The grid is (batch, M / TILE, N / TILE); each instance reads its rows
    of A and columns of B as significand / exponent / flag views prepared outside it."""
    acc = lp.hardware.resolve(acc)
    if not jax.config.jax_enable_x64:
        raise ValueError("lowprec_jax.pallas.matmul works in 64-bit integers: enable "
                         "jax_enable_x64")
    if acc.fused is None or acc.stochastic or acc.promote_every is not None or (
            acc.block_scales != "product"):
        raise NotImplementedError(f"the Pallas matmul models fused adders with power-of-two "
                                  f"block scales, no stochastic rounding and no promotion; "
                                  f"{acc} needs lowprec_jax.matmul or lp.matmul")
    if isinstance(A, QuantizedArray) and (A.fmt.scale_rule in TWO_LEVEL or getattr(
            B, "fmt", A.fmt).scale_rule in TWO_LEVEL):
        raise NotImplementedError("NVFP4 operands (non-power-of-two scales, tensor scales) "
                                  "need lowprec_jax.matmul")
    ta, tb, batch, M, K, N, mab = fused_operands(A, B, acc)
    fz, n = acc.fused, acc.fused.n
    if (n + 2) * 2.0 ** (fz.frac_bits + 3) >= 2.0**53:
        raise NotImplementedError("this fused adder's sums exceed 53 bits; use lp.matmul")
    rnd = _Rounder(acc.fmt, acc.rounding, acc.overflow, None, "srff", None, 1)
    if not fz.align_addend:
        rnd.check_odd_sum("an addend outside the alignment")
    shape = batch + (M, N)
    nb = int(np.prod(batch, dtype=np.int64))
    cb = jnp.zeros(shape, jnp.uint64) if c is None else jnp.broadcast_to(
        _f64_bits(jnp.asarray(c)), shape)
    Mp, Np, Kp = -(-M // TILE) * TILE, -(-N // TILE) * TILE, max(1, -(-K // n)) * n
    pad = lambda t, r: jnp.pad(t, ((0, 0), (0, r - t.shape[1]), (0, Kp - K)))  # noqa: E731
    ta = [pad(t, Mp) for t in ta]
    tb = [pad(t, Np) for t in tb]
    cp = jnp.pad(cb.reshape(nb, M, N), ((0, 0), (0, Mp - M), (0, Np - N)))
    row = pl.BlockSpec((None, TILE, Kp), lambda b, i, j: (b, i, 0))
    col = pl.BlockSpec((None, TILE, Kp), lambda b, i, j: (b, j, 0))
    out = pl.BlockSpec((None, TILE, TILE), lambda b, i, j: (b, i, j))
    kern = partial(_matmul_kernel, fz=fz, n=n, K=K, mab=mab,
                   c_emin=(acc.addend_format or acc.fmt).emin, rnd=rnd)
    res = pl.pallas_call(kern, out_shape=jax.ShapeDtypeStruct(cp.shape, jnp.uint64),
                         grid=(nb, Mp // TILE, Np // TILE), in_specs=[row] * 3 + [col] * 3 + [
                             out], out_specs=out, interpret=interpret,
                         compiler_params=pltriton.CompilerParams())(*ta, *tb, cp)
    return _finish(res[:, :M, :N].reshape(-1), shape, acc.fmt, dtype, acc)
