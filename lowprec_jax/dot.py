"""``quantized_dot_general``: a drop-in for ``jax.lax.dot_general`` whose three products (the
forward one, the input gradient and the weight gradient) each fake-quantize their two operands
along the contracted axis, as low-precision training recipes do (SPECS.md §3).

Canonical form: the operands are transposed to (batch, M, K) @ (batch, K, N). Forward
Y = q(X) @ q(W), X blocked along K, W along K (or tiled); input gradient dX = q(dY) @ q(W)^T,
both blocked along N; weight gradient dW = q(X)^T @ q(dY), both blocked along M (the tokens),
optionally after the 16-point random Hadamard transform along M (it cancels in the product:
``lowprec.hadamard``). Each q is a ``Quant``; a ``Recipe`` holds the six and names them.

The quantized values are multiplied by the backend's float32 ``dot_general`` (its summation
order is the backend's), or, with ``Recipe.acc`` (an ``lp.Accumulator`` or preset name) and
scalar element formats, by ``lowprec_jax.matmul`` bit for bit (``jax_enable_x64``).
The RHT here is a float32 matmul with the +-1/4 matrix (sums in the backend's order), not the
core's exactly rounded ``lp.rht16``.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import blocks as _B
from lowprec.hadamard import rht16_matrix

__all__ = ["Quant", "Recipe", "recipe", "recipes", "quantized_dot_general"]


@dataclasses.dataclass(frozen=True)
class Quant:
    """How one operand of one product is fake-quantized. fmt: None (left as it is), a scalar
    format (``"bfloat16"``, ``"float8_e4m3fn"``, ...) or a block format (a preset name such as
    ``"mxfp4"``, ``"nvfp4"``, ``"nvfp4_2d"``, or an ``lp.BlockFormat``), blocked along the
    contracted axis (tiles: over the operand's two matrix axes). rounding: any mode of
    ``lp.round``; stochastic draws its bits from the key given to ``quantized_dot_general``.
    rht: apply the 16-point random Hadamard transform along the contracted axis first."""
    fmt: object = None
    rounding: str = "nearest_even"
    sr_bits: int | None = None
    rht: bool = False

    @property
    def is_block(self):
        return isinstance(self.fmt, _B.BlockFormat) or self.fmt in _B.block_formats()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Quantization of the two operands of each product: ``fwd`` (X, W), ``dgrad`` (dY, W),
    ``wgrad`` (X, dY); ``acc``: None (the backend's float32 dot) or an accumulator model for
    ``lowprec_jax.matmul``."""
    fwd: tuple = (Quant(), Quant())
    dgrad: tuple = (Quant(), Quant())
    wgrad: tuple = (Quant(), Quant())
    acc: object = None
    name: str = ""


def _all(q):
    return (q, q), (q, q), (q, q)


def _recipes():
    bf16 = Quant("bfloat16")
    e4, e5 = Quant("mxfp8_e4m3"), Quant("mxfp8_e5m2")
    r4 = Quant("mxfp8_e4m3_rceil")
    fp4, fp4_sr = Quant("mxfp4"), Quant("mxfp4", "stochastic")
    fp4_sr_rht, fp4_rht = Quant("mxfp4", "stochastic", rht=True), Quant("mxfp4", rht=True)
    nv, nv2 = Quant("nvfp4"), Quant("nvfp4_2d")
    nv_sr = Quant("nvfp4", "stochastic")
    nv_rht, nv_sr_rht = Quant("nvfp4", rht=True), Quant("nvfp4", "stochastic", rht=True)
    return {r.name: r for r in (
        Recipe(*_all(bf16), name="bf16"),
        Recipe(*_all(r4), name="mxfp8"),
        Recipe((e4, e4), (e5, e4), (e4, e5), name="mxfp8_ocp"),
        Recipe((fp4, fp4), (fp4_sr, fp4), (fp4_rht, fp4_sr_rht), name="mxfp4"),
        Recipe((nv, nv2), (nv_sr, nv2), (nv_rht, nv_sr_rht), name="nvfp4"),
        Recipe(name="none"),
    )}


_RECIPES = _recipes()
RECIPE_NOTES = {
    "bf16": "every operand rounded to bfloat16 (nearest even), float32 accumulation",
    "mxfp8": "MXFP8 as NVIDIA pre-trains with it (arXiv:2506.08027): E4M3 everywhere, 1 x 32 "
             "blocks, scales rounded up (rceil)",
    "mxfp8_ocp": "OCP MXFP8: E4M3 for X and W, E5M2 for gradients, 1 x 32 blocks, the OCP "
                 "spec's floor scales (diverges in the example, as arXiv:2506.08027 reports)",
    "mxfp4": "OCP MXFP4 everywhere; stochastic rounding on gradients, RHT on the wgrad "
             "operands (Tseng et al. 2025, arXiv:2502.20586)",
    "nvfp4": "NVFP4 (arXiv:2509.25149): 1 x 16 blocks for X and dY, 16 x 16 tiles for W, "
             "stochastic rounding on gradients, RHT on the wgrad operands",
    "none": "no quantization (float32)",
}


def recipes() -> dict:
    """Recipe name -> what it quantizes."""
    return dict(RECIPE_NOTES)


def recipe(name) -> Recipe:
    """The named ``Recipe`` (``recipes()`` lists them), or a Recipe unchanged."""
    if isinstance(name, Recipe):
        return name
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(_RECIPES)} or pass "
                         "a lowprec_jax.dot.Recipe")
    return _RECIPES[name]


def _rht(x, axis):
    """16-point RHT along ``axis`` (float32, highest precision)."""
    n = x.shape[axis]
    if n % 16:
        raise ValueError(f"the random Hadamard transform needs the contracted axis to be a "
                         f"multiple of 16, got length {n}")
    x = jnp.moveaxis(x, axis, -1)
    y = x.reshape(x.shape[:-1] + (n // 16, 16)) @ jnp.asarray(rht16_matrix(), jnp.float32)
    return jnp.moveaxis(y.reshape(x.shape), -1, axis)


def _apply(q, x, axis, key):
    """x fake-quantized as ``q`` says, blocks along ``axis``; float32."""
    from . import blocks, round as _round  # noqa: PLC0415
    x = x.astype(jnp.float32)
    if q.fmt is None:
        return x
    if q.rht:
        x = _rht(x, axis)
    kw = dict(key=key, sr_bits=q.sr_bits) if q.rounding == "stochastic" else {}
    if q.is_block:
        bf = _B.block_format(q.fmt)
        return blocks.fake_quantize(x, bf, -1 if bf.tile else axis, q.rounding, grad="none",
                                    **kw)
    return _round(x, q.fmt, q.rounding, grad="none", dtype=np.float32, **kw)


def _product(a, b, acc):
    if acc is None:
        return jnp.matmul(a, b, precision=lax.Precision.HIGHEST,
                          preferred_element_type=jnp.float32)
    from .matmul import matmul  # noqa: PLC0415
    return matmul(a, b, acc)


def _keys(key, n):
    if key is None:
        return [None] * n
    return [jax.random.fold_in(key, i) for i in range(n)]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _qmm(x, w, key, rc):
    kx, kw_ = _keys(key, 2)
    return _product(_apply(rc.fwd[0], x, -1, kx), _apply(rc.fwd[1], w, -2, kw_), rc.acc)


def _qmm_fwd(x, w, key, rc):
    return _qmm(x, w, key, rc), (x, w, key)


def _qmm_bwd(rc, res, g):
    x, w, key = res
    k = _keys(None if key is None else jax.random.fold_in(key, 7), 4)
    g32 = g.astype(jnp.float32)
    gd = _apply(rc.dgrad[0], g32, -1, k[0])                        # dY blocked along N
    wd = _apply(rc.dgrad[1], w, -1, k[1])                          # W blocked along N
    dx = _product(gd, jnp.swapaxes(wd, -1, -2), rc.acc)
    xw = _apply(rc.wgrad[0], x, -2, k[2])                          # X blocked along M
    gw = _apply(rc.wgrad[1], g32, -2, k[3])                        # dY blocked along M
    dw = _product(jnp.swapaxes(xw, -1, -2), gw, rc.acc)
    return dx.astype(x.dtype), dw.astype(w.dtype), None


_qmm.defvjp(_qmm_fwd, _qmm_bwd)


def _needs_key(rc):
    return any(q.rounding == "stochastic" for pair in (rc.fwd, rc.dgrad, rc.wgrad)
               for q in pair)


def quantized_dot_general(lhs, rhs, dimension_numbers, recipe="bf16", *, key=None,
                          precision=None, preferred_element_type=None):
    """``jax.lax.dot_general`` with each of its three products (forward, input gradient,
    weight gradient) computed on operands fake-quantized by ``recipe`` (a name from
    ``recipes()`` or a ``Recipe``), see the module docstring. ``key``: a JAX PRNG key for
    stochastic rounding (required when the recipe rounds stochastically). ``precision`` is
    accepted for signature compatibility (products run at the highest precision). Returns
    dot_general's shape, in ``preferred_element_type`` or lhs's dtype."""
    rc = globals()["recipe"](recipe)
    if _needs_key(rc) and key is None:
        raise ValueError(f"recipe {rc.name!r} rounds stochastically: pass key=<a JAX PRNG key>")
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    (lc, rc_dims), (lb, rb) = dimension_numbers
    lc, rc_dims, lb, rb = (tuple(int(d) % a.ndim for d in ds) for ds, a in
                           ((lc, lhs), (rc_dims, rhs), (lb, lhs), (rb, rhs)))
    lf = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
    rf = [d for d in range(rhs.ndim) if d not in rc_dims and d not in rb]
    bshape = [lhs.shape[d] for d in lb]
    if bshape != [rhs.shape[d] for d in rb] or [lhs.shape[d] for d in lc] != [
            rhs.shape[d] for d in rc_dims]:
        raise ValueError(f"dimension_numbers {dimension_numbers} do not match shapes "
                         f"{lhs.shape} and {rhs.shape}")
    size = lambda a, ds: int(np.prod([a.shape[d] for d in ds], dtype=np.int64))  # noqa: E731
    Bt, M, K, N = size(lhs, lb), size(lhs, lf), size(lhs, lc), size(rhs, rf)
    x = jnp.transpose(lhs, (*lb, *lf, *lc)).reshape(Bt, M, K)
    w = jnp.transpose(rhs, (*rb, *rc_dims, *rf)).reshape(Bt, K, N)
    out = _qmm(x, w, key, rc)
    shape = tuple(bshape) + tuple(lhs.shape[d] for d in lf) + tuple(rhs.shape[d] for d in rf)
    return out.reshape(shape).astype(preferred_element_type or lhs.dtype)
