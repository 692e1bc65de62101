"""lowprec: bit-exact emulation of low-precision arithmetic.

>>> import lowprec as lp
>>> lp.round([1.0, 464.0, 500.0], "float8_e4m3fn")
array([  1., 448.,  nan])
"""
from .formats import FloatFormat, IntFormat, TableFormat, format, formats, p3109
from .cast import round, encode, decode, result_dtype
from .plan import holds
from .plan import Plan, plan
from .rounding import random_bits
from .blocks import (BlockFormat, BlockTensor, quantize, fake_quantize, block_format,
                     block_formats)
from .packing import pack, unpack
from .hadamard import rht16, rht16_matrix
from .compare import compare, assert_bits_equal
from .arith import add, sub, mul, div, fma, sqrt
from .accumulator import Accumulator, FusedAdder
from .accumulate import (matmul, dot, sum, a2q_bits,
                         exact_per_block)
from . import hardware
from . import golden

__version__ = "0.1.0"

__all__ = ["FloatFormat", "IntFormat", "TableFormat", "format", "formats", "p3109", "Plan", "plan", "holds", "round",
           "encode", "decode", "result_dtype", "random_bits", "BlockFormat", "BlockTensor",
           "quantize", "fake_quantize", "block_format", "block_formats", "pack", "unpack", "rht16", "rht16_matrix", "compare", "assert_bits_equal", "golden",
           "add", "sub", "mul", "div", "fma", "sqrt", "Accumulator", "FusedAdder",
           "matmul", "dot", "sum", "a2q_bits", "exact_per_block", "hardware",
           "__version__"]
