"""PyTorch adapter: the core's ``round``, ``encode``, ``decode`` (and, in submodules, block
quantization, ``matmul``, ``nn.QuantLinear``, Triton kernels) for torch tensors on any device,
under autograd, bit-identical to ``lowprec``.

Same arguments and rules as ``lp.round`` / ``lp.encode`` / ``lp.decode``; inputs are torch
tensors of float16, bfloat16, float32 or float64. Two backends give the same bits:

* ``backend="torch"``: torch integer operations on the bits (``lowprec.xstep``, the core's array-API step), on any
  device and under ``torch.compile``;
* ``backend="core"``: the NumPy/Numba core on a CPU copy (the fastest path on CPU);
* ``backend="auto"`` (default): the core for CPU tensors outside ``torch.compile``, the torch
  operations otherwise.

Stochastic rounding takes ``rbits=`` (an unsigned integer tensor or array broadcastable to x),
``seed=`` (the core's Philox4x32-10 counter generator: the same bits as ``lp.round(...,
seed=)``) or ``generator=`` (a ``torch.Generator``: one ``torch.randint(0, 2**32)`` word per
element, a second one for the high half when more than 32 random bits are used).

Torch's own float8 casts differ from ml_dtypes (and so from ``overflow=None``): float32 ->
``torch.float8_e4m3fn`` saturates out-of-range values *and Inf* to +-448 where ml_dtypes gives
NaN, i.e. torch's cast is ``overflow="saturate"``; float8_e5m2 and the fnuz types match
ml_dtypes; ``torch.float8_e8m0fnu`` takes the magnitude of negative inputs (-1e6 -> 2^20) and maps 0 to
2^-127 (code 0) where ml_dtypes gives NaN (code 0xFF), and rounds the float32 subnormals in
(2^-127, 1.5 x 2^-127) up to 2^-126 where nearest-even gives 2^-127 (all 2,097,151 of them).
``round(x, fmt, dtype=torch.float8_e4m3fn)`` returns the codes as torch's float8 dtype, and
``dtype=torch.float4_e2m1fn_x2`` E2M1 codes packed in pairs (``pack_fp4``); ``decode`` reads
both.
"""
from .cast import (TORCH_FORMATS, decode, encode, from_numpy, pack_fp4, random_bits,  # noqa: F401
                   round, to_numpy, unpack_fp4)
from .blocks import QuantizedTensor, dequantize, fake_quantize, quantize  # noqa: F401
from .matmul import matmul  # noqa: F401
from . import nn  # noqa: F401

__all__ = ["round", "encode", "decode", "random_bits", "TORCH_FORMATS", "pack_fp4",
           "unpack_fp4", "quantize", "dequantize", "fake_quantize", "QuantizedTensor",
           "matmul", "nn"]
