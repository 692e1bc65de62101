"""JAX adapter: the core's ``round``, ``encode``, ``decode``, block ``quantize`` /
``dequantize`` / ``fake_quantize`` (MX and NVFP4), ``matmul`` (fused-adder and sequential
accumulators) and ``quantized_dot_general``, in ``jax.numpy``, jittable and vmappable,
bit-identical to ``lowprec``; Pallas kernels in ``lowprec_jax.pallas``.

Same arguments and rules as ``lp.round`` / ``lp.encode`` / ``lp.decode``. Float32, float16 and
bfloat16 inputs work with JAX's default 32-bit types; float64 inputs, and formats that only
float64 holds, need ``jax.config.update("jax_enable_x64", True)`` (``matmul`` always does).
Stochastic rounding takes ``rbits=`` (unsigned integers broadcastable to x), ``seed=`` (the
core's Philox4x32-10 counter generator, same words as ``lp.random_bits``) or ``key=`` (a JAX
PRNG key: the key's words hashed with the element index, ``key_words``). Where the core raises (a NaN input into
a format without NaN under an explicit overflow policy), the JAX functions cannot raise under
``jit``: the value is NaN and the code all ones; outside ``jit`` they raise as the core does.
Every conversion is integer arithmetic on the bits: XLA's CPU backend flushes subnormals.

Training (docs/training.md): ``quantized_dot_general`` / ``quantized_einsum`` with a ``Recipe``;
the submodules ``lowprec_jax.nn`` (Flax Linen and NNX drop-ins), ``lowprec_jax.qwix_provider``
(every product of an unedited model, by rules on module paths) and ``lowprec_jax.optim``
(optax ``round_weights``) need flax / qwix / optax and are imported by name.
"""
from .cast import decode, encode, round  # noqa: F401
from .stream import SiteKey, fold, key_words, random_bits  # noqa: F401
from .blocks import QuantizedArray, dequantize, fake_quantize, quantize  # noqa: F401
from .matmul import matmul  # noqa: F401
from .dot import (Quant, Recipe, quantized_dot_general, quantized_einsum, recipe,  # noqa: F401
                  recipes)

__all__ = ["round", "encode", "decode", "random_bits", "key_words", "fold", "SiteKey", "quantize", "dequantize",
           "fake_quantize", "QuantizedArray", "matmul", "quantized_dot_general",
           "quantized_einsum", "Quant",
           "Recipe", "recipe", "recipes"]
