"""``lowprec_jax.matmul``: ``lp.matmul`` in JAX, bit-identical to the core: fused multi-term
adders (every ``lp.hardware`` tensor-core preset: aligned or unaligned addend, truncate /
floor / nearest terms, promotion every k products as in ``deepseek-v3-fp8``), and float or
integer accumulators in every order of the core (sequential, pairwise, blocked, trees,
``"exact"``, also with a ``block``: one rounding per block of products).

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

import jax
import jax.numpy as jnp
import numpy as np

import lowprec as lp
from lowprec import accumulate as _acc
from lowprec.formats import IntFormat
from lowprec.rounding import check_seed

from .block_matmul import _block_matmul
from .blocks import QuantizedArray
from .fused import _finish, _float_operands, _fused, _sequential, _view, members
from .orders import _exact, _program, _program_int
from .sums import I64, U64, _f64_bits, _Rounder

__all__ = ["matmul"]

BYTES_PER_PRODUCT = 128    # measured peak per product of the table orders (64-256 B)


def _check_size(acc, n_products, max_bytes):
    """Every order but the sequential one forms all M * N * K products at once (a table the
    rounding steps then combine): refuse, with the numbers, one that would not fit."""
    if acc.order == "sequential" and acc.fused is None and acc.products is None:
        return
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or \
            max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes!r} must be an int > 0")
    need = n_products * BYTES_PER_PRODUCT
    if need > max_bytes:
        raise ValueError(
            f"lowprec_jax.matmul forms all {n_products} products at once for this "
            f"accumulator (about {need / 2**30:.2f} GiB at {BYTES_PER_PRODUCT} bytes each), "
            f"above max_bytes={max_bytes} ({max_bytes / 2**30:.2f} GiB): split the product "
            "into tiles along M or N, use lp.matmul (which streams), or pass a larger "
            "max_bytes=")


def _check_operands(A, B, c, acc, shape):
    """The core's operand checks (``lp.accumulate.check_operands``) on concrete operands, so
    that eager calls raise what ``lp.matmul`` raises. Under jit nothing can raise: for a float
    accumulator the outputs whose row of A or column of B holds a value outside its input
    format, and, for a format without NaN, the sums whose IEEE value is NaN, come back as NaN
    (the mask, else None). Integer results cannot hold NaN: their operands are not checked
    while tracing."""
    ops = (A, B) + (() if c is None else (c,))
    if not any(isinstance(x, jax.core.Tracer) for x in ops):
        C = np.zeros(shape) if c is None else np.broadcast_to(
            np.asarray(c, dtype=np.float64), shape)
        lp.accumulate.check_operands(np.asarray(A, np.float64), np.asarray(B, np.float64), C,
                                     acc)
        return None
    if isinstance(acc.fmt, IntFormat):
        return None
    A64, B64 = jnp.asarray(A, jnp.float64), jnp.asarray(B, jnp.float64)
    fa, fb = acc.input_formats
    bad = ~members(_f64_bits(A64), fa).all(-1)[..., :, None] | \
        ~members(_f64_bits(B64), fb).all(-2)[..., None, :]
    if not acc.fmt.has_nan:
        C = jnp.zeros(shape) if c is None else jnp.broadcast_to(jnp.asarray(c, jnp.float64),
                                                                 shape)
        bad = bad | lp.accumulate.nan_sums(A64, B64, C, xp=jnp)
    return jnp.broadcast_to(bad, shape)


def matmul(A, B, acc="fp32-sequential", c=None, *, seed=None, dtype=None, max_bytes=4 << 30):
    """``lp.matmul`` in JAX (fused-adder presets and sequential accumulators; see the module
    docstring): ``A @ B + c`` formed as ``acc`` forms it, bit for bit. A: (..., M, K), B:
    (..., K, N) float arrays holding values of the accumulator's input formats (float32
    values without ``input_formats``), batch axes broadcast, or two ``QuantizedArray``s (A
    blocked along K, B along axis -2, or tiles); c broadcastable to the result (values of the
    addend format). Jittable; needs ``jax_enable_x64``. Every accumulator but the plain
    sequential one forms all M * N * K products at once (about 128 bytes each at the peak):
    a product estimated above ``max_bytes`` (default 4 GiB) is refused with the numbers."""
    acc = lp.hardware.resolve(acc)
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
    bad = _check_operands(A, B, c, acc, shape)
    _check_size(acc, int(np.prod(shape, dtype=np.int64)) * K, max_bytes)
    nb = int(np.prod(batch, dtype=np.int64))
    n_out = nb * M * N
    if isinstance(acc.fmt, IntFormat):
        ci = jnp.zeros(shape, I64) if c is None else jnp.broadcast_to(
            jnp.asarray(c).astype(I64), shape)
        prog, _ = _acc.program(acc.order, K, acc.block)
        return _program_int(acc, ab, bb, ci.reshape(n_out), prog).reshape(shape).astype(
            lp.accumulate.int_result_dtype(dtype, acc.fmt))
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
        L = acc.block or K                        # one rounding per block of L products
        out = cb.reshape(n_out)
        for j, k0 in enumerate(range(0, K, L)):
            out = _exact(ab[..., k0:k0 + L], bb[..., k0:k0 + L], out, rnd, j)
        res_fmt = acc.fmt
    elif acc.order != "sequential" or acc.products is not None:
        prog, _ = _acc.program(acc.order, K, acc.block)
        rnd.check_odd_sum(f"the order {acc.order!r}")
        out = _program(acc, ab, bb, cb.reshape(n_out), prog, rnd)
        res_fmt = acc.fmt
    else:
        rnd.check_odd_sum("the sequential order")
        out = _sequential(ab, bb, cb.reshape(n_out), rnd)
        res_fmt = acc.fmt
    out = _finish(out, shape, res_fmt, dtype, acc)
    return out if bad is None else jnp.where(bad, jnp.nan, out)
