"""The core's seeded random stream (``lp.random_bits``: Philox4x32-10, four words per block) and
the random words of stochastic rounding, in ``jax.numpy`` uint32 lanes (JAX's default has no
64-bit integers). The same rule and names as ``lowprec.xstep.philox`` / ``random_words``, which
runs in int64 lanes; the products here are built from 16-bit limbs."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from lowprec.rounding import check_seed

__all__ = ["random_bits", "philox", "key_words", "fold", "SiteKey", "mix32", "Words"]


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
    k = jax.lax.iota(jnp.uint32, n)
    q, lane = k // per, k % per
    z = jnp.zeros_like(q)
    # each element computes its block's four words and keeps its own (a select, one output):
    # stacking the four word arrays made XLA re-expand the ten rounds for every output word
    # (1.2 s for 10M words)
    w = philox(q, z, z, z, jnp.uint32(seed & 0xFFFFFFFF), jnp.uint32(seed >> 32))
    if wide:
        lo = jnp.where(lane == 0, w[0], w[2]).reshape(shape)
        hi = jnp.where(lane == 0, w[1], w[3]).reshape(shape)
        return hi, lo
    lo = jnp.where(lane == 0, w[0], jnp.where(lane == 1, w[1], jnp.where(lane == 2, w[2], w[3])))
    return jnp.zeros(shape, jnp.uint32), lo.reshape(shape)


def mix32(x):
    """Wellons' ``lowbias32`` integer hash of uint32 words (a bijection; "Prospecting for
    hash functions", 2018): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
    x ^= x >> 16. In ``lax`` operations: ``jnp``'s operators trace several times slower, and
    every stochastic site hashes."""
    def xorshift(x, k):
        return lax.bitwise_xor(x, lax.shift_right_logical(x, np.uint32(k)))
    x = xorshift(jnp.asarray(x, jnp.uint32), 16)
    x = xorshift(lax.mul(x, np.uint32(0x7FEB352D)), 15)
    return xorshift(lax.mul(x, np.uint32(0x846CA68B)), 16)


def mix32_int(x):
    """``mix32`` of a Python int (trace-time site constants)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SiteKey:
    """A JAX PRNG key and a site number (``fold``): a pytree whose leaf is the key and whose
    site is static, so that folding costs nothing to compile. Accepted wherever ``key=`` is."""
    key: jax.Array
    site: int = dataclasses.field(default=0, metadata=dict(static=True))


def fold(key, i):
    """The key of site ``i`` of ``key`` (a JAX key or a ``SiteKey``): the same key with the
    site number mix32(mix32(site) ^ mix32(i + 1)), computed when tracing (``mix32_int``; not
    commutative: fold(fold(k, a), b) and fold(fold(k, b), a) differ). ``jax.random.fold_in``'s
    role with nothing to compile (Threefry's 20 rounds compile again at each call site)."""
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
        raise TypeError(f"fold takes a Python int site, got {i!r}")
    base, site = (key.key, key.site) if isinstance(key, SiteKey) else (key, 0)
    return SiteKey(base, mix32_int(mix32_int(site) ^ mix32_int(int(i) + 1)))


_ROUND = (0x9E3779B9, 0x7F4A7C15)                # one constant per Feistel round


def _feistel(a, b):
    """Two Feistel rounds on the uint32 pair (a, b) with ``mix32`` as the round function: a
    bijection of the 64-bit pairs."""
    for c in _ROUND:
        a, b = b, a ^ mix32(b ^ jnp.uint32(c))
    return a, b


def key_seeds(key, wide=False):
    """The seed words of ``key_words``, uint32 (k0, k1) and, if ``wide``, (k2, k3): with (a, b)
    the key's words (a typed key's ``jax.random.key_data`` or a raw uint32 key array; further
    words are xor-ed into a) and s its site number (0 for a plain key), (k0, k1) =
    _feistel(a ^ mix32(s), b ^ mix32(s ^ 0x85EBCA6B)) and (k2, k3) = _feistel(k0 ^
    0x9E3779B9, k1). Distinct (key, site) pairs give distinct (k0, k1) when the keys differ
    in b alone (``jax.random.key(seed)``) or at random."""
    base, site = (key.key, key.site) if isinstance(key, SiteKey) else (key, 0)
    if jnp.issubdtype(base.dtype, jax.dtypes.prng_key):
        d = jax.random.key_data(base).astype(jnp.uint32)
    else:
        d = jnp.asarray(base)
        if d.dtype != jnp.uint32 or d.ndim == 0 or d.shape[-1] < 2:
            raise TypeError(f"key must be a JAX PRNG key (jax.random.key), a uint32 key array "
                            f"or a SiteKey, got {d.dtype} of shape {d.shape}")
    a = d[..., 0]
    for j in range(2, d.shape[-1]):
        a = a ^ d[..., j]
    k0, k1 = _feistel(a ^ jnp.uint32(mix32_int(site)),
                      d[..., 1] ^ jnp.uint32(mix32_int(site ^ 0x85EBCA6B)))
    if not wide:
        return jnp.stack([k0, k1], axis=-1)
    k2, k3 = _feistel(k0 ^ jnp.uint32(0x9E3779B9), k1)
    return jnp.stack([k0, k1, k2, k3], axis=-1)


def key_words(key, shape, wide=False):
    """The random words of ``key=`` (stochastic rounding) as (hi, lo) uint32 arrays; hi is 0
    unless ``wide``. With (k0, k1[, k2, k3]) = ``key_seeds(key, wide)`` (the key's words and
    its site number, mixed by two Feistel rounds), element i (flat, row-major) takes
    lo = mix32(mix32(i ^ k0) ^ k1) and hi = mix32(mix32(i ^ k2) ^ k3) (``mix32``: Wellons'
    lowbias32). Integer hashing alone: no Threefry to compile at each site, a twentieth of
    its cost per word. The words depend on the key, the site, the shape and the index
    alone: not on ``jit``, ``vmap``, ``scan`` or sharding (the index is a global ``iota``)."""
    return Words.of(key, shape, wide).draw()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Words:
    """``key_words`` not yet drawn: the seeds (``key_seeds``, the one leaf), the ``shape``
    whose row-major index each word hashes, ``wide``, and ``perm``, the order of ``shape``'s
    axes the words are drawn in (``draw`` gives ``key_words(...)`` transposed by ``perm``,
    each word computed at its place). A quantizer that draws them where it reads them writes
    no array of words (XLA would compute every site's words at the start of a step, since
    they depend on the key alone, and keep them all until used: 16 MB of an NVFP4 step at
    d = 1024, beyond the size glibc's malloc keeps between steps)."""
    seeds: jax.Array
    shape: tuple = dataclasses.field(metadata=dict(static=True))
    wide: bool = dataclasses.field(default=False, metadata=dict(static=True))
    perm: tuple | None = dataclasses.field(default=None, metadata=dict(static=True))

    @classmethod
    def of(cls, key, shape, wide=False):
        """The words of ``key`` at ``shape`` (a ValueError beyond 2^32 elements)."""
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape, dtype=np.int64)) >= 2**32:
            raise ValueError(f"key= supports up to 2^32 elements per call, got shape {shape}")
        return cls(key_seeds(key, wide), shape, bool(wide))

    @property
    def drawn_shape(self):
        return self.shape if self.perm is None else tuple(self.shape[p] for p in self.perm)

    def swap(self, a, b):
        """The same words with the drawn axes a and b swapped (``jnp.swapaxes``)."""
        perm = list(range(len(self.shape)) if self.perm is None else self.perm)
        a, b = a % len(perm), b % len(perm)
        perm[a], perm[b] = perm[b], perm[a]
        return dataclasses.replace(self, perm=tuple(perm))

    def draw(self):
        """(hi, lo) uint32 arrays at ``drawn_shape`` (hi 0 unless ``wide``)."""
        shape, seeds = self.shape, self.seeds
        if self.perm is None:
            i = lax.iota(jnp.uint32, int(np.prod(shape, dtype=np.int64))).reshape(shape)
        else:                                # the row-major index of shape, in perm's order
            strides = [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape))]
            out = self.drawn_shape
            i = jnp.zeros(out, jnp.uint32)
            for k, d in enumerate(self.perm):
                if shape[d] > 1:
                    i = i + lax.broadcasted_iota(jnp.uint32, out, k) * np.uint32(strides[d])
        lo = mix32(mix32(i ^ seeds[..., 0]) ^ seeds[..., 1])
        if not self.wide:
            return jnp.zeros(i.shape, jnp.uint32), lo
        return mix32(mix32(i ^ seeds[..., 2]) ^ seeds[..., 3]), lo


def random_words(shape, W, r, seed, rbits, key, lazy=False):
    """(hi, lo) uint32 words of stochastic rounding at ``shape`` from one of ``rbits`` (an
    array, or ``Words``), ``key`` or ``seed``; zeros without any. ``lazy``: words of a key
    (or given as ``Words``) come back undrawn, as (None, Words), and no words as (None,
    None), for a quantizer that draws them where it reads them."""
    if isinstance(rbits, Words):
        if rbits.drawn_shape != tuple(shape):
            raise ValueError(f"the words are drawn at {rbits.drawn_shape}, not at {shape}")
        if r > 32 and not rbits.wide:
            raise ValueError(f"{r} random bits need wide words")
        return (None, rbits) if lazy else rbits.draw()
    if lazy and rbits is None and seed is None:
        return (None, None) if key is None else (None, Words.of(key, shape, r > 32))
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


