"""Accumulation orders other than the fused adder, in JAX: the core's postfix program (pairwise,
blocked, explicit trees, rounded products) evaluated level by level, one rounding per addition;
integer accumulators that wrap or saturate; and the "exact" order, a long fixed-point
accumulator in 32-bit limbs rounded once."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

import lowprec as lp
from lowprec import accumulate as _acc

from ._clz import clz
from .fused import _any, _outer, _product, _view
from .sums import _INF, I64, MASK52, QNAN, U32, U64, _bits_odd, _parts, _Rounder, _sum, _zero


def _levels(prog, K, round_prod=False):
    """The postfix program (``lowprec.accumulate.program``) as a table of nodes: products
    0..K-1, c at K, additions after. Returns (n_nodes, levels, result node) where each level is
    (left, right, dest, j) arrays of the additions whose operands are ready together (padded
    with additions into a scratch node), j the rounding's index in program order (product
    roundings count too when ``round_prod``: the core's seeded words)."""
    stack, adds, height = [], [], {}
    j = 0
    for op in prog:
        if op == _acc.ADD:
            r, l = stack.pop(), stack.pop()
            node = K + 1 + len(adds)
            adds.append((l, r, node, j))
            height[node] = 1 + max(height.get(l, 0), height.get(r, 0))
            stack.append(node)
        else:
            stack.append(K if op == _acc.LEAF_C else int(op))
        j += 1 if (op == _acc.ADD or (op >= 0 and round_prod)) else 0
    n_nodes = K + 2 + len(adds)                          # the last one is the scratch node
    by = {}
    for a in adds:
        by.setdefault(height[a[2]], []).append(a)
    width = max((len(v) for v in by.values()), default=1)
    levels = np.full((len(by), 4, width), n_nodes - 1, np.int64)
    for i, h in enumerate(sorted(by)):
        levels[i, :, :len(by[h])] = np.array(by[h]).T
    return n_nodes, levels, stack[0]


def _product_table(ab, bb, n_nodes, K):
    """(n_out, n_nodes) float64 bits with the exact products in columns 0..K-1."""
    va, vb = _view(ab, None), _view(bb, None)
    (sa, sb), (ea, eb), (fa, fb) = (_outer(va[i], vb[i]) for i in range(3))
    prods = _product(sa, ea, fa, sb, eb, fb)
    return jnp.pad(prods, ((0, 0), (0, n_nodes - K)))


def _flush(b, emin, keep_sign=True):
    """float64 bits with every value below 2^emin in magnitude made a zero of its sign (or
    +0): ``Accumulator.ftz``."""
    small = ((b >> 52) & U64(0x7FF)) < U64(emin + 1023)
    return jnp.where(small, b & U64(1 << 63) if keep_sign else U64(0), b)


def _program(acc, ab, bb, cb, prog, rnd):
    """Float accumulators in any order (pairwise, blocked, trees), products exact or rounded
    first into ``acc.products``: every addition of two exact operands rounded once, in
    levels of additions that do not depend on each other. Forms the (M * N, K) products.
    ``acc.ftz``: subnormal inputs and c read as +0, products and sums below the format's
    smallest normal become zeros of their sign (``program_matmul`` (lowprec/_accumulate.py))."""
    K = ab.shape[-1]
    emin = acc.fmt.emin
    if acc.ftz:
        fa, fb = (f or lp.format("float32") for f in acc.input_formats)
        ab, bb, cb = _flush(ab, fa.emin, False), _flush(bb, fb.emin, False), _flush(
            cb, emin, False)
    n_nodes, levels, res = _levels(prog, K, acc.products is not None)
    T = _product_table(ab, bb, n_nodes, K)
    if acc.products is not None:                  # never stochastic (lp.Accumulator's rule)
        prnd = _Rounder(acc.products, acc.product_rounding, None, None, "srff", None, 1)
        T = T.at[:, :K].set(prnd(T[:, :K], 0)[0])
    if acc.ftz:
        T = T.at[:, :K].set(_flush(T[:, :K], emin))
    T = T.at[:, K].set(cb)

    def level(T, lv):
        left, right, dest, j = lv
        v, _ = rnd(_sum(T[:, left], T[:, right], rnd.down), j.astype(U32))
        if acc.ftz:
            v = _flush(v, emin)
        return T.at[:, dest].set(v), None

    T, _ = lax.scan(level, T, jnp.asarray(levels))
    return T[:, res]


def _program_int(acc, ab, bb, ci, prog):
    """Integer accumulators (``lowprec._accumulate.int_matmul``): exact int64 products of
    integer inputs (below 2^31 in magnitude, as the core requires), each addition wrapping
    modulo 2^P into [min, max] or saturating."""
    fmt = acc.fmt
    lo, hi = int(fmt.min_int), int(fmt.max_int)
    K = ab.shape[-1]
    n_nodes, levels, res = _levels(prog, K)
    to_int = lambda b: lax.bitcast_convert_type(b, jnp.float64).astype(I64)  # noqa: E731
    A, B = _outer(to_int(ab), to_int(bb))
    T = jnp.pad(A * B, ((0, 0), (0, n_nodes - K))).at[:, K].set(ci)
    span = hi - lo + 1

    def level(T, lv):
        left, right, dest, _ = lv
        v = T[:, left] + T[:, right]
        if acc.overflow == "saturate":
            v = jnp.clip(v, lo, hi)
        else:
            v = jnp.where((v < lo) | (v > hi), (v - lo) % span + lo, v)
        return T.at[:, dest].set(v), None

    T, _ = lax.scan(level, T, jnp.asarray(levels))
    return T[:, res]


XMIN, NLIMB = -1120, 72        # limb 0's lowest bit; 32-bit limbs up to 2^1184 (the core's)


def _normalise(L):
    """Carry-propagated limbs (each in [0, 2^32)) and the sign of sum_i L_i 2^(32 i)."""
    def step(carry, x):
        v = x + carry
        return v >> 32, v & I64(0xFFFFFFFF)
    carry, out = lax.scan(step, jnp.zeros(L.shape[0], I64), L.T)
    return out.T, carry < 0


def _exact(ab, bb, cb, rnd, j=0):
    """round(sum_k a_k b_k + c) (rounding j's words) with the exact sum (``_exact_dot`` (lowprec/_accumulate.py)): every
    finite term's signed significand added into 32-bit limbs held in int64, carries
    propagated, the top 62 bits (sticky below) rounded to odd into float64 and then once into
    the format. IEEE Inf / NaN; -0 only when every term is -0."""
    va, vb = _view(ab, None), _view(bb, None)
    (sa, sb), (ea, eb), (fa, fb) = (_outer(va[i], vb[i]) for i in range(3))
    terms = jnp.concatenate([_product(sa, ea, fa, sb, eb, fb), cb[:, None]], axis=1)
    fin = (terms >> 52) & 0x7FF != 0x7FF
    m, e, _ = _parts(terms)
    m = jnp.where(fin, m, I64(0))
    pos = jnp.where(m != 0, e - XMIN, I64(0))
    i, r = pos >> 5, (pos & 31).astype(U64)
    a = jnp.abs(m).astype(U64)
    sgn = jnp.where(m < 0, I64(-1), I64(1))
    rows = jnp.broadcast_to(jnp.arange(terms.shape[0])[:, None], terms.shape)
    L = jnp.zeros((terms.shape[0], NLIMB + 2), I64)
    parts = ((a << r) & U64(0xFFFFFFFF), ((a << r) >> U64(32)) & U64(0xFFFFFFFF),
             jnp.where(r > 0, a >> jnp.where(r > 0, U64(64) - r, U64(0)), U64(0)))
    for k, part in enumerate(parts):
        L = L.at[rows, i + k].add(sgn * part.astype(I64))
    Ln, neg = _normalise(L)
    Ln, _ = _normalise(jnp.where(neg[:, None], -L, L))          # the magnitude's limbs
    idx = jnp.arange(NLIMB + 2)
    t = jnp.max(jnp.where(Ln != 0, idx, -1), axis=1)
    limb = lambda j: jnp.where(j >= 0, jnp.take_along_axis(  # noqa: E731
        Ln, jnp.clip(j, 0, NLIMB + 1)[:, None], axis=1)[:, 0], I64(0)).astype(U64)
    hi64, lo32 = (limb(t) << U64(32)) | limb(t - 1), limb(t - 2)
    p = 63 - clz(jnp.where(limb(t) == 0, U64(1), limb(t))).astype(I64)   # msb of limb t
    sh = jnp.clip(p - 29, 0, 2).astype(U64)
    sl = jnp.clip(29 - p, 0, 29).astype(U64)
    w = jnp.where(p >= 29, hi64 >> sh, (hi64 << sl) | (lo32 >> (U64(32) - sl)))
    lost = jnp.where(p >= 29, ((hi64 & ((U64(1) << sh) - U64(1))) != 0) | (lo32 != 0),
                     (lo32 & ((U64(1) << (U64(32) - sl)) - U64(1))) != 0)
    lost = lost | _any((Ln != 0) & (idx[None, :] < (t - 2)[:, None]))
    v = _bits_odd(neg, (w | lost.astype(U64)).astype(I64), XMIN + 32 * (t - 2) + 3 + p)
    neg_zero = ~_any((terms >> 63) == 0)                          # every term is -0
    v = jnp.where(t < 0, _zero(neg_zero), v)
    # Inf and NaN terms: their IEEE sum (NaN for NaN, or +Inf with -Inf)
    nan = _any(~fin & ((terms & U64(MASK52)) != 0))
    pinf = _any(~fin & (terms == _INF))
    ninf = _any(~fin & ((terms & U64(MASK52)) == 0) & ((terms >> 63) == 1))
    v = jnp.where(nan | (pinf & ninf), QNAN, jnp.where(
        pinf, _INF, jnp.where(ninf, _INF | (ninf.astype(U64) << 63), v)))
    return rnd(v, j)[0]
