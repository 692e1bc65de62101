"""``matmul`` for torch tensors: ``A @ B + c`` under an ``lp.Accumulator`` model, bit for bit.

The accumulator models (fused adders, every summation order, integer accumulators, block
scales) are the core's ``lp.matmul``, run on CPU copies of the operands; the result comes back
on A's device. Its gradient is straight-through: dA = g @ B^T and dB = A^T @ g in float32
(the accumulator is treated as exact), as quantization-aware training does.
"""
from __future__ import annotations

import numpy as np
import torch

import lowprec as lp

from .cast import from_numpy, to_numpy
from .blocks import QuantizedTensor

__all__ = ["matmul"]


def _core_operand(v, name):
    if isinstance(v, QuantizedTensor):
        return v.to_core()
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a lowprec_torch.QuantizedTensor, got "
                        f"{type(v).__name__}")
    return to_numpy(v)


def _device(A, B):
    for v in (A, B):
        t = v.codes if isinstance(v, QuantizedTensor) else v
        return t.device


class _MatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, B, c, f):
        ctx.save_for_backward(A, B)
        ctx.has_c = c is not None
        return f()

    @staticmethod
    def backward(ctx, g):
        A, B = ctx.saved_tensors
        g32 = g.to(torch.float32)
        dA = (g32 @ B.to(torch.float32).transpose(-1, -2)).to(A.dtype)
        dB = (A.to(torch.float32).transpose(-1, -2) @ g32).to(B.dtype)
        dc = g if ctx.has_c else None
        return _unbroadcast(dA, A.shape), _unbroadcast(dB, B.shape), dc, None


def _unbroadcast(g, shape):
    while g.ndim > len(shape):
        g = g.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdim=True)
    return g


def matmul(A, B, acc="fp32-sequential", c=None, *, seed=None, dtype=None):
    """``lp.matmul`` for torch tensors (or ``QuantizedTensor`` operands): ``A @ B + c`` as the
    accumulator model ``acc`` (an ``lp.Accumulator`` or preset name) forms it, bit for bit;
    computed by the core, returned on A's device as the core's dtype (float32, float64 or
    int64) or ``dtype`` (a torch float dtype holding the result). Differentiable in A, B and c
    (straight-through, see the module docstring) when they are tensors."""
    device = _device(A, B)
    ndt = None
    if dtype is not None:
        from .cast import _NP  # noqa: PLC0415
        if dtype not in _NP:
            raise TypeError(f"dtype must be a torch float dtype, got {dtype}")
        ndt = _NP[dtype]

    def f():
        cc = None if c is None else to_numpy(torch.as_tensor(c))
        out = lp.matmul(_core_operand(A, "A"), _core_operand(B, "B"), acc, cc, seed=seed,
                        dtype=ndt)
        return from_numpy(np.asarray(out), device)

    tensors = all(isinstance(v, torch.Tensor) for v in (A, B))
    needs = tensors and torch.is_grad_enabled() and any(
        isinstance(v, torch.Tensor) and v.requires_grad for v in (A, B, c))
    if not needs:
        return f()
    return _MatMul.apply(A, B, c, f)
