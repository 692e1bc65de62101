"""``QuantLinear``: an ``nn.Linear`` whose three products (forward X @ W^T, input gradient
dY @ W, weight gradient dY^T @ X) each fake-quantize their two operands as a training recipe
says (``lowprec.recipes``: ``bf16``, ``mxfp8``, ``mxfp8_ocp``, ``mxfp4``, ``nvfp4`` or any
``Recipe``), with ``quantize_linears`` to swap the linear layers of an existing model.

Blocks run along the contracted axis of each product: X and W along K (the input features)
forward, dY and W along N (the output features) for the input gradient, X and dY along M (the
tokens) for the weight gradient, optionally after the 16-point random Hadamard transform along
M (``Quant(rht=True)``; a float32 matmul with the +-1/4 matrix). Stochastic rounding draws from
the layer's ``torch.Generator`` (``seed=``). The products are torch's float32 matmul, or with
``Recipe(acc=...)`` ``lowprec_torch.matmul`` bit for bit; the bias is added in float32 after.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lowprec import blocks as _B
from lowprec.hadamard import rht16_matrix
from lowprec.recipes import Quant, Recipe, epilogue, recipe as _recipe, recipes  # noqa: F401
from lowprec.recipes import two_level

from .cast import round as _round
from .blocks import dequantize, fake_quantize, quantize
from .matmul import matmul

__all__ = ["QuantLinear", "quantize_linears", "quantized_linear", "recipes"]


def _rht(x, axis):
    n = x.shape[axis]
    if n % 16:
        raise ValueError(f"the random Hadamard transform needs the contracted axis to be a "
                         f"multiple of 16, got length {n}")
    x = torch.movedim(x, axis, -1)
    h = torch.as_tensor(rht16_matrix(), dtype=torch.float32, device=x.device)
    y = x.reshape(x.shape[:-1] + (n // 16, 16)) @ h
    return torch.movedim(y.reshape(x.shape), -1, axis)


def apply_quant(q: Quant, x, axis, generator=None):
    """(values, tensor scale): x (float32) fake-quantized as ``q`` says, blocks along
    ``axis``, the tensor scale None; for two-level formats (NVFP4) the values without their
    tensor scale (element x block scale, exact) and that scale apart, which ``_product``
    applies after the sum (``lowprec.recipes.epilogue``)."""
    x = x.to(torch.float32)
    if q.fmt is None:
        return x, None
    if q.rht:
        x = _rht(x, axis)
    if q.prescale is not None:
        x = x * torch.tensor(q.prescale, dtype=torch.float32)
    kw = dict(generator=generator, sr_bits=q.sr_bits) if q.rounding == "stochastic" else {}
    if q.is_block:
        bf = _B.block_format(q.fmt)
        ax = -1 if bf.tile else axis
        if two_level(q):
            qt = quantize(x, bf, ax, q.rounding, **kw)
            return (dequantize(qt, tensor_scale=False),
                    torch.tensor(np.float32(qt.tensor_scale), device=x.device))
        return fake_quantize(x, bf, ax, q.rounding, grad="none", **kw), None
    return _round(x, q.fmt, q.rounding, grad="none", dtype=torch.float32, **kw), None


def _t(pair):
    """An ``apply_quant`` pair with its values transposed."""
    return pair[0].T, pair[1]


def _product(a, b, acc, qa=None, qb=None):
    """The product of the ``apply_quant`` pairs a and b: values a @ b (or through the
    accumulator model), then ``lowprec.recipes.epilogue`` (times the tensor scales, divided
    by the prescale factors; float32, each rounded once)."""
    (a, ta), (b, tb) = a, b
    y = a @ b if acc is None else matmul(a, b, acc)
    return epilogue(y, qa, qb, ta, tb)


class _QLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, rc, gen):
        ctx.save_for_backward(x, w)
        ctx.rc, ctx.gen = rc, gen
        xq = apply_quant(rc.fwd[0], x, -1, gen)                  # (M, K) along K
        wq = apply_quant(rc.fwd[1], w, -1, gen)                  # (N, K) along K
        return _product(xq, _t(wq), rc.acc, *rc.fwd)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        rc, gen = ctx.rc, ctx.gen
        g = g.to(torch.float32)
        gd = apply_quant(rc.dgrad[0], g, -1, gen)                # (M, N) along N
        wd = apply_quant(rc.dgrad[1], w, 0, gen)                 # (N, K) along N
        dx = _product(gd, wd, rc.acc, *rc.dgrad)
        xw = apply_quant(rc.wgrad[0], x, 0, gen)                 # (M, K) along M
        gw = apply_quant(rc.wgrad[1], g, 0, gen)                 # (M, N) along M
        dw = _product(_t(gw), xw, rc.acc, *rc.wgrad)
        return dx.to(x.dtype), dw.to(w.dtype), None, None


def quantized_linear(x, weight, bias=None, recipe="bf16", *, generator=None):
    """``torch.nn.functional.linear`` with the recipe's quantized products (module
    docstring); x: (..., K), weight: (N, K). Returns (..., N) in float32."""
    rc = _recipe(recipe)
    stochastic = any(q.rounding == "stochastic" for p in (rc.fwd, rc.dgrad, rc.wgrad)
                     for q in p)
    if stochastic and generator is None:
        raise ValueError(f"recipe {rc.name!r} rounds stochastically: pass generator=<a "
                         "torch.Generator>")
    lead = x.shape[:-1]
    y = _QLinear.apply(x.reshape(-1, x.shape[-1]), weight, rc, generator)
    y = y.reshape(*lead, weight.shape[0])
    return y if bias is None else y + bias.to(torch.float32)


class QuantLinear(nn.Linear):
    """``nn.Linear`` with quantized products (module docstring). ``recipe``: a name from
    ``recipes()`` or a ``lowprec.recipes.Recipe``; ``seed``: the layer's generator for
    stochastic rounding."""

    def __init__(self, in_features, out_features, bias=True, recipe="bf16", *, seed=0,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.recipe = _recipe(recipe)
        self.generator = torch.Generator(device=self.weight.device).manual_seed(seed)

    @classmethod
    def from_linear(cls, lin: nn.Linear, recipe="bf16", *, seed=0) -> "QuantLinear":
        """A QuantLinear sharing ``lin``'s weight and bias parameters."""
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, recipe, seed=seed,
                device=lin.weight.device, dtype=lin.weight.dtype)
        q.weight, q.bias = lin.weight, lin.bias
        return q

    def forward(self, x):
        return quantized_linear(x, self.weight, self.bias, self.recipe,
                                generator=self.generator).to(x.dtype)

    def extra_repr(self):
        return super().extra_repr() + f", recipe={self.recipe.name or self.recipe!r}"


def quantize_linears(model: nn.Module, recipe="bf16", *, skip=(), seed=0) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place; returns it) by a ``QuantLinear``
    with ``recipe`` sharing its parameters; ``skip``: qualified module names to leave alone
    (e.g. the LM head, as the NVFP4 recipe keeps the last layers in high precision). Layer i
    gets generator seed ``seed + i``."""
    _recipe(recipe)
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) is nn.Linear and n not in skip]
    for i, (name, lin) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear.from_linear(lin, recipe, seed=seed + i))
    return model
