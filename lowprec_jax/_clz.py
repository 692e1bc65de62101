"""Count leading zeros of unsigned 32- or 64-bit integer arrays by binary search (shifts and
compares only). Used instead of ``lax.clz`` because Pallas' Triton backend cannot lower
``math.ctlz`` for real GPUs (seen on an H100 with jax 0.11.2: "failed to legalize operation
'math.ctlz'"); XLA and the Pallas interpreter accept both, and both give the same counts."""
from __future__ import annotations

import jax.numpy as jnp


def clz(x):
    """Leading zero bits of each element of the unsigned array ``x`` (its width for 0), in
    x's dtype, as ``lax.clz``."""
    W = x.dtype.itemsize * 8
    n = jnp.zeros_like(x)
    s = W // 2
    while s >= 1:
        top_clear = (x >> (W - s)) == 0
        n = n + jnp.where(top_clear, x.dtype.type(s), x.dtype.type(0))
        x = jnp.where(top_clear, x << s, x)
        s //= 2
    return n + jnp.where((x >> (W - 1)) == 0, x.dtype.type(1), x.dtype.type(0))
