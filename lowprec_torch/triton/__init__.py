"""Triton kernels (``lowprec_torch.triton``): ``round`` / ``encode`` over blocks of the
flattened input and block ``fake_quantize`` / ``quantize`` (MX power-of-two rules and
Transformer Engine's NVFP4), ``ROWS`` blocks per program, bit-identical to the core.

The rounding step is ``lowprec_torch.triton.step.round_bits`` (uint32 lanes, float32 work
type: formats that float32 holds, inputs of at most 32 bits). They run on CUDA tensors, or on
CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before this module is
imported); otherwise they raise. Random bits come in as arrays (``rbits``, a generator's
words computed by torch first), or for ``seed=`` in ``round`` / ``encode`` from the core's
Philox stream computed in the kernel (``step.seed_words``), never from ``tl.rand``.
NVFP4's float32 scale arithmetic uses ``*`` and ``tl.math.div_rn`` (IEEE).
"""
from .blocks import ROWS, fake_quantize, quantize  # noqa: F401
from .cast import BLOCK, available, encode, round  # noqa: F401
from .compile import compile_kernels  # noqa: F401
from .matmul import TILE, matmul  # noqa: F401

__all__ = ["round", "encode", "fake_quantize", "quantize", "matmul", "compile_kernels", "BLOCK",
           "ROWS", "TILE", "available"]
