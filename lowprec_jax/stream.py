"""The core's seeded random stream (``lp.random_bits``: Philox4x32-10, four words per block) and
the random words of stochastic rounding, in ``jax.numpy`` uint32 lanes (JAX's default has no
64-bit integers). The same rule and names as ``lowprec.xstep.philox`` / ``random_words``, which
runs in int64 lanes; the products here are built from 16-bit limbs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lowprec.rounding import check_seed

__all__ = ["random_bits", "philox", "key_words", "fold", "mix32"]


def _mulhilo(a, b):
    """(hi, lo) words of the 64-bit product of uint32 arrays (16-bit limbs: no uint64)."""
    m = jnp.uint32(0xFFFF)
    a0, a1, b0, b1 = a & m, a >> 16, b & m, b >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> 16) + (p01 & m) + (p10 & m)
    return p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16), (p00 & m) | (mid << 16)


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10, as ``lowprec._kernels.philox4x32``."""
    for _ in range(10):
        h0, l0 = _mulhilo(jnp.uint32(0xD2511F53), c0)
        h1, l1 = _mulhilo(jnp.uint32(0xCD9E8D57), c2)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = k0 + jnp.uint32(0x9E3779B9)
        k1 = k1 + jnp.uint32(0xBB67AE85)
    return c0, c1, c2, c3


def random_bits(seed, shape, wide=False):
    """The core's seeded random words (``lp.random_bits``) as (hi, lo) uint32 arrays; hi is 0
    unless ``wide``. Stream word k is word k % 4 of Philox4x32-10 at counter (k // 4, 0, 0, 0)
    with key (seed_lo, seed_hi); element i takes word i (``wide``: 2i low, 2i + 1 high)."""
    seed = check_seed(seed)
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError("seed= supports up to 2^32 elements per call in lowprec_jax")
    per = 2 if wide else 4                             # elements per Philox block
    q = jnp.arange(-(-n // per), dtype=jnp.uint32)
    z = jnp.zeros_like(q)
    w = philox(q, z, z, z, jnp.uint32(seed & 0xFFFFFFFF), jnp.uint32(seed >> 32))
    if wide:
        lo = jnp.stack([w[0], w[2]], axis=1).reshape(-1)[:n].reshape(shape)
        hi = jnp.stack([w[1], w[3]], axis=1).reshape(-1)[:n].reshape(shape)
        return hi, lo
    lo = jnp.stack(w, axis=1).reshape(-1)[:n].reshape(shape)
    return jnp.zeros(shape, jnp.uint32), lo


def mix32(x):
    """Wellons' ``lowbias32`` integer hash of uint32 words (a bijection; "Prospecting for
    hash functions", 2018): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
    x ^= x >> 16."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


_ROUND = (0x9E3779B9, 0x7F4A7C15)                # one constant per round


def _feistel(a, b):
    """Two Feistel rounds on the word pair (a, b) with ``mix32`` as the round function: a
    bijection of the 64-bit pairs, so distinct keys keep distinct pairs. (Each scalar round
    costs compile time at every site; the words are mixed again per element.)"""
    for c in _ROUND:
        a, b = b, a ^ mix32(b ^ jnp.uint32(c))
    return a, b


def _key_data(key):
    """The key's words (uint32, (..., n >= 2)): ``jax.random.key_data`` of a typed key, or
    a raw uint32 key array (``jax.random.PRNGKey``) itself."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key).astype(jnp.uint32), jax.random.key_impl(key)
    key = jnp.asarray(key)
    if key.dtype != jnp.uint32 or key.ndim == 0 or key.shape[-1] < 2:
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key) or a uint32 key array, "
                        f"got {key.dtype} of shape {key.shape}")
    return key, None


def _pair(key):
    d, _ = _key_data(key)
    a, b = d[..., 0], d[..., 1]
    for j in range(2, d.shape[-1]):                    # keys of more than two words
        a, b = _feistel(a ^ d[..., j], b)
    return a, b


def fold(key, i):
    """A new key for site ``i`` of ``key``, of the same kind: the key's first two words
    (a, b) become ``_feistel(a, b ^ mix32(i))``, the rest stay. Distinct sites of one key,
    and one site of distinct keys, give distinct keys. ``jax.random.fold_in``'s role at a
    fraction of its compile time (Threefry, 20 rounds, compiled at every call site)."""
    d, impl = _key_data(key)
    a, b = _feistel(d[..., 0], d[..., 1] ^ mix32(jnp.uint32(i)))
    d = jnp.concatenate([a[..., None], b[..., None], d[..., 2:]], axis=-1)   # no scatter:
    return d if impl is None else jax.random.wrap_key_data(d, impl=impl)     # cheaper to compile


def key_words(key, shape, wide=False):
    """The random words of ``key=`` (stochastic rounding) as (hi, lo) uint32 arrays; hi is 0
    unless ``wide``. The key's words (``jax.random.key_data``; a key of more than two words
    is first folded to two) pass through ``_feistel`` to (k0, k1), and element i (flat,
    row-major) takes lo = mix32(mix32(i ^ k0) ^ k1); ``wide``: (k2, k3) = _feistel(k0 ^
    0x9E3779B9, k1) give hi the same way (``mix32``: Wellons' lowbias32). Integer hashing
    alone: no Threefry to compile at each site, a twentieth of its cost per word. The words
    depend on the key, the shape and the index alone: not on ``jit``, ``vmap``, ``scan`` or
    sharding (the index is a global ``iota``)."""
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError(f"key= supports up to 2^32 elements per call, got shape {shape}")
    k0, k1 = _feistel(*_pair(key))
    i = jax.lax.iota(jnp.uint32, n).reshape(shape)
    lo = mix32(mix32(i ^ k0) ^ k1)
    if not wide:
        return jnp.zeros(shape, jnp.uint32), lo
    k2, k3 = _feistel(k0 ^ jnp.uint32(0x9E3779B9), k1)
    return mix32(mix32(i ^ k2) ^ k3), lo


def random_words(shape, W, r, seed, rbits, key):
    if rbits is not None:
        rb = jnp.asarray(rbits)
        if not jnp.issubdtype(rb.dtype, jnp.unsignedinteger):
            raise TypeError(f"rbits must be an unsigned integer array, got dtype {rb.dtype}")
        if rb.dtype.itemsize * 8 < r:
            raise ValueError(f"rbits has {rb.dtype.itemsize * 8} bits per element but {r} "
                             "random bits are used")
        rb = jnp.broadcast_to(rb, shape)
        if rb.dtype.itemsize == 8:
            return (rb >> 32).astype(jnp.uint32), (rb & 0xFFFFFFFF).astype(jnp.uint32)
        return jnp.zeros(shape, jnp.uint32), rb.astype(jnp.uint32)
    if key is not None:
        return key_words(key, shape, wide=r > 32)
    if seed is not None:
        return random_bits(seed, shape, wide=r > 32)
    z = jnp.zeros(shape, jnp.uint32)
    return z, z


