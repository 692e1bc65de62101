"""Count leading zeros of unsigned 32- or 64-bit integer arrays through exact integer-to-float
conversion: a value below 2^24 converts to float32 exactly, and its exponent field is the index
of its leading one bit. Used instead of ``lax.clz`` because Pallas' Triton backend cannot lower
``math.ctlz`` for real GPUs (seen on an H100 with jax 0.11.2: "failed to legalize operation
'math.ctlz'"); a conversion lowers everywhere and is a few operations where a binary search
is five rounds of shifts, compares and selects (smaller graphs compile faster).
``tests/test_jax_round.py`` checks it against ``lax.clz``."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def _clz32(x):
    """Leading zeros of uint32 ``x`` (32 for 0), as int32."""
    big = x >= (1 << 24)
    v = jnp.where(big, x >> 8, x)                        # below 2^24: exact as float32
    e = (lax.bitcast_convert_type(v.astype(jnp.float32), jnp.uint32) >> 23).astype(jnp.int32)
    msb = e - 127 + (big.astype(jnp.int32) << 3)         # e is 0 only for v = 0
    return jnp.where(x == 0, jnp.int32(32), 31 - msb)


def clz(x):
    """Leading zero bits of each element of the unsigned array ``x`` (its width for 0), in
    x's dtype, as ``lax.clz``."""
    if x.dtype.itemsize == 4:
        return _clz32(x).astype(x.dtype)
    hi, lo = (x >> 32).astype(jnp.uint32), (x & 0xFFFFFFFF).astype(jnp.uint32)
    n = jnp.where(hi != 0, _clz32(hi), _clz32(lo) + jnp.int32(32))
    return n.astype(x.dtype)
