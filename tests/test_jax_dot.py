"""lowprec_jax.quantized_dot_general: forward, input-gradient and weight-gradient products on
operands fake-quantized as the recipe says give the core's bits (lp.fake_quantize along the
contracted axis, then lp.matmul with the same accumulator); any dimension_numbers; and the
quantized matmul under jit on a mesh of 4 CPU devices gives the single-device bits."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import lowprec as lp
import lowprec_jax as lj
from lowprec_jax.dot import Quant, Recipe, quantized_dot_general, recipe

from helpers import _mix, key_words

DN = (((1,), (0,)), ((), ()))                      # x @ w


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def core_parts(q, v, axis, **kw):
    """(values, tensor scale or None) of v quantized as q by the core: a two-level format's
    (NVFP4's) operand as element x block scale (lp.quantize's codes decoded, exact) and its
    float32 tensor scale apart, the others lp.fake_quantize's (lp.round's) values. ``kw``:
    the block quantizers' random source."""
    if q.prescale is not None:                    # the prescale before the rounding
        v = (v * np.float32(q.prescale)).astype(np.float32)
    if q.fmt is None:
        return v, None
    if q.is_block:
        bf = lp.block_format(q.fmt)
        ax = -1 if bf.tile else axis
        if bf.scale_rule in ("nvfp4", "nvfp4_torchao"):
            bt = lp.quantize(v, bf, ax, q.rounding, **kw)
            e, s = bt.element_and_scale_values()
            return (e * s).astype(np.float32), np.float32(bt.tensor_scale)
        return lp.fake_quantize(v, bf, ax, q.rounding, **kw), None
    return lp.round(v, q.fmt, q.rounding, dtype=np.float32), None


def times_scales(y, ta, tb):
    """y times alpha = ta x tb (the tensor scales that are there), each float32 product
    rounded once by NumPy (IEEE, subnormals kept)."""
    ts = [np.float32(t) for t in (ta, tb) if t is not None]
    if not ts:
        return y
    alpha = ts[0] if len(ts) == 1 else np.float32(ts[0] * ts[1])
    return (np.asarray(y, np.float32) * alpha).astype(np.float32)


def core_products(x, w, g, rc):
    """The three products as the core computes them: lp.matmul of the operands' values, then
    the two-level operands' tensor scales, then divided by the prescales' product (NumPy's
    float32 division, IEEE)."""
    def mm(pair, a, b, ax, bx, ta=False, tb=False):
        (u, su), (v, sv) = core_parts(pair[0], a, ax), core_parts(pair[1], b, bx)
        y = times_scales(lp.matmul(u.T if ta else u, v.T if tb else v, rc.acc), su, sv)
        s = np.float32(np.prod([q.prescale or 1.0 for q in pair]))
        return y if s == 1 else (np.asarray(y, np.float32) / s).astype(np.float32)
    y = mm(rc.fwd, x, w, -1, -2)
    dx = mm(rc.dgrad, g, w, -1, -1, tb=True)
    dw = mm(rc.wgrad, x, g, -2, -2, ta=True)
    return y, dx, dw


def _pairs(a, b):
    """A recipe's three (X, W) pairs from Quant format names (None: not quantized), as
    (fwd, dgrad, wgrad) of ``Recipe``: (a, b), (b, a), (a, b)."""
    qa, qb = Quant(a), Quant(b)
    return (qa, qb), (qb, qa), (qa, qb)


@pytest.mark.parametrize("pairs", [
    _pairs("mxfp8_e4m3", "mxfp8_e5m2"), _pairs("nvfp4", "nvfp4_2d"),
    _pairs("bfloat16", "float8_e4m3fn"), _pairs("mxfp4", "mxfp4"),
    # NVFP4's 16 x 16 weight tiles kept from the forward for the input gradient (dot._kept)
    ((Quant("nvfp4"), Quant("nvfp4_2d")), (Quant("nvfp4"), Quant("nvfp4_2d")),
     (Quant("nvfp4"), Quant("nvfp4"))),
    # the weight gradient in float32 under a quantized forward
    ((Quant("mxfp4"), Quant("mxfp4")), (Quant("mxfp4"), Quant("mxfp4")), (Quant(), Quant())),
    # Tseng et al.'s 3/4 prescale: each product divided by 9/16 (or 3/4), rounded once
    ((Quant("mxfp4", prescale=0.75), Quant("mxfp4", prescale=0.75)),
     (Quant("mxfp4", prescale=0.75), Quant()), (Quant(), Quant("nvfp4", prescale=0.75))),
], ids=["mx8", "nv-tiles", "scalar", "mx4", "nv-kept", "wgrad-f32", "prescale"])
def test_three_products_equal_the_core(pairs):
    rc = Recipe(*pairs, acc="fp32-sequential")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 48)).astype(np.float32)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    g = rng.standard_normal((32, 64)).astype(np.float32)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(lambda x, w: quantized_dot_general(x, w, DN, rc), x, w)
        dx, dw = vjp(jnp.asarray(g))
    want = core_products(x, w, g, rc)
    for got, ref in zip((y, dx, dw), want):
        assert same(got, ref)


def _bf16_truth(fmt, flushed):
    """Is every float32 value of ``fmt`` (for the MX formats an element times each scale
    2^-127 .. 2^127 of E8M0, OCP MX v1.0 section 5.3) a bfloat16, by enumeration (ml_dtypes
    decodes the elements; MXINT8's are k / 64)? ``flushed``: those of magnitude 2^-126 or
    more."""
    import ml_dtypes as md
    elems = {"mxfp8_e4m3": (md.float8_e4m3fn, 8), "mxfp8_e5m2": (md.float8_e5m2, 8),
             "mxfp6_e3m2": (md.float6_e3m2fn, 6), "mxfp6_e2m3": (md.float6_e2m3fn, 6),
             "mxfp4": (md.float4_e2m1fn, 4), "bfloat16": (md.bfloat16, 16),
             "nvfp4": (md.float4_e2m1fn, 4),
             "float8_e4m3fn": (md.float8_e4m3fn, 8), "float16": (np.float16, 16)}
    if isinstance(fmt, tuple):                     # (exponent bits, fraction bits, bias)
        E, m, b = fmt
        f = np.arange(2**m) / 2**m
        e = np.concatenate([np.ldexp(f, 1 - b)] + [np.ldexp(1 + f, k - b)
                                                    for k in range(1, 2**E - 1)])
        fmt = "custom"
    elif fmt == "mxint8":
        e = np.arange(-127, 128) / 64
    else:
        dt, bits = elems[fmt]
        codes = np.arange(2**bits, dtype=np.uint16).astype(np.uint8 if bits <= 8 else np.uint16)
        with np.errstate(invalid="ignore"):
            e = codes.view(dt).astype(np.float64)
    e = e[np.isfinite(e)]
    scales = range(-127, 128) if fmt.startswith("mx") else [0]
    with np.errstate(over="ignore"):
        v = np.concatenate([np.ldexp(e, k) for k in scales]).astype(np.float32)
    if fmt == "nvfp4":          # operands without their tensor scale: each E4M3 block scale
        s = np.arange(256, dtype=np.uint8).view(md.float8_e4m3fn).astype(np.float64)
        v = (e[:, None] * s[np.isfinite(s)][None, :]).ravel().astype(np.float32)
    v = v[np.isfinite(v) & ((np.abs(v) >= 2.0**-126) | (not flushed))]
    return bool(np.all(v.astype(md.bfloat16).astype(np.float32) == v))


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3",
                                 "mxfp4", "mxint8", "nvfp4", "bfloat16", "float8_e4m3fn",
                                 "float16"])
def test_bfloat16_carriers_exactly_where_every_value_is_a_bfloat16(fmt):
    """dot._bf16_exact (which products take their operands as bfloat16) against enumeration,
    for named formats and for two made at the edges: 7 fraction bits with a smallest step of
    2^-134 (bfloat16's is 2^-133), and 8 fraction bits."""
    from lowprec_jax.dot import _bf16_exact
    for flushed in (False, True):
        assert _bf16_exact(Quant(fmt), flushed) == _bf16_truth(fmt, flushed), (fmt, flushed)
        for E, m, b in ((8, 7, 128), (5, 8, 15)):
            q = Quant(lp.FloatFormat(E, m, bias=b))
            assert _bf16_exact(q, flushed) == _bf16_truth((E, m, b), flushed), (E, m, flushed)
    assert not _bf16_exact(Quant(), True)


def test_bfloat16_carriers_of_table_formats_by_their_values():
    """A table format has no geometry (its plan's fields are 0): its values decide. HiFloat8's
    (the specification's decoded codes) are all bfloat16s; a made-up table holding 1 + 2^-10
    is not, and must keep float32 operands."""
    from fractions import Fraction
    import ml_dtypes
    from lowprec_jax.dot import _bf16_exact
    hif = lp.format("hifloat8").values()
    hif = hif[np.isfinite(hif)]
    assert np.all(hif.astype(ml_dtypes.bfloat16).astype(np.float64) == hif)
    assert _bf16_exact(Quant("hifloat8")) and _bf16_exact(Quant("hifloat8"), True)
    table = lp.TableFormat("fine2", 2, lambda c: [Fraction(0), Fraction(1),
                                                  1 + Fraction(1, 1024), Fraction(2)][c])
    assert not _bf16_exact(Quant(table)) and not _bf16_exact(Quant(table), True)


@pytest.mark.parametrize("pairs", [_pairs("mxfp8_e4m3", "mxfp8_e5m2"),
                                   _pairs("mxfp4", "mxfp6_e2m3"),
                                   _pairs("bfloat16", "float8_e4m3fn"),
                                   _pairs("nvfp4", "nvfp4_2d")],
                         ids=["mx8-flushed", "mx4", "scalar", "nv"])
def test_bfloat16_carriers_give_the_float32_products(pairs):
    """The three products (with bfloat16 operands where both contract their last axis, and
    in the forward form) equal float32 dot_general on the core's quantized operands on this
    backend, bit for bit (NVFP4's without their tensor scales, then times both: core_parts,
    times_scales): small positive
    integers (every sum exact in any order), and blocks scaled by 2^-130, whose FP8 values
    bfloat16 cannot hold (whole blocks of dY and of W along N among them): XLA's CPU must
    treat those as zeros in both products, as dot._bf16_exact(flushed=True) assumes."""
    rc = Recipe(*pairs)
    rng = np.random.default_rng(5)
    x = rng.integers(1, 9, (4, 64)).astype(np.float32)
    w = rng.integers(1, 9, (64, 32)).astype(np.float32)
    g = rng.integers(1, 9, (4, 32)).astype(np.float32)
    tiny = np.float32(2.0**-130)
    x[2] *= tiny                                   # a row of tiny blocks
    x[3, :32] *= tiny                              # and one tiny block
    w[:, 5] *= tiny                                # a column of tiny blocks
    w[7] *= tiny                                   # a block of W along N
    g[1] *= tiny                                   # a row of dY
    y, vjp = jax.vjp(lambda x, w: quantized_dot_general(x, w, DN, rc), x, w)
    dx, dw = vjp(jnp.asarray(g))

    def f32(a, b, ca, cb):
        (a, sa), (b, sb) = a, b
        return times_scales(jax.lax.dot_general(
            jnp.asarray(a), jnp.asarray(b), (((ca,), (cb,)), ((), ())), precision="highest",
            preferred_element_type=jnp.float32), sa, sb)
    fq = core_parts
    want = (f32(fq(rc.fwd[0], x, -1), fq(rc.fwd[1], w, -2), 1, 0),
            f32(fq(rc.dgrad[0], g, -1), fq(rc.dgrad[1], w, -1), 1, 1),
            f32(fq(rc.wgrad[0], x, -2), fq(rc.wgrad[1], g, -2), 0, 0))
    for got, ref in zip((y, dx, dw), want):
        assert same(got, ref)
    assert not np.any(np.asarray(y)[2]) and not np.any(np.asarray(y)[:, 5])
    assert not np.any(np.asarray(dx)[1]) and not np.any(np.asarray(dx)[:, 7])


@pytest.mark.parametrize("rc", ["bf16", "mxfp8", "mxfp4"])
def test_bfloat16_carriers_with_transposes_and_vmap(rc):
    """The bfloat16 products run whatever XLA's rewrites do with them (dot._product: the
    forward form behind an optimization barrier, both-last forms as they are): an output
    transposed, an input given transposed (its gradient is transposed back) and a weight
    given transposed (tied embeddings), under jit and under vmap. With small integers, whose
    sums are exact in any order, each vmapped result equals each member's."""
    rng = np.random.default_rng(2)
    xs = rng.integers(-8, 9, (3, 16, 64)).astype(np.float32)
    wts = rng.integers(-8, 9, (3, 32, 64)).astype(np.float32)        # W^T, as tied embeddings
    key = jax.random.key(1)

    def model(x, wt):                             # y^T of x W, W given as W^T
        return quantized_dot_general(x, wt, (((1,), (1,)), ((), ())), rc, key=key).T

    def grads(xt, wt):                            # x given as x^T: dx is transposed back
        return jax.grad(lambda xt, wt: jnp.sum(jnp.sin(model(xt.T, wt))), argnums=(0, 1))(
            xt, wt)
    for f, a in ((model, xs), (grads, xs.transpose(0, 2, 1))):
        batched = jax.jit(jax.vmap(f))(a, wts)
        for i in range(3):
            one = jax.jit(f)(a[i], wts[i])
            for u, v in zip(jax.tree.leaves(batched), jax.tree.leaves(one)):
                assert same(u[i], v), (f.__name__, i)


@pytest.mark.parametrize("rc", ["bf16", "mxfp8"])
def test_bfloat16_products_survive_every_arrangement_of_transposes(rc):
    """XLA's CPU fails at run time on a bfloat16 product whose first operand contracts its
    first axis, a form its rewrites make from the forward one when they fold a transpose of
    the result or of an operand into it (dot._product). Every arrangement: each operand
    given as itself or transposed, the result as itself, transposed, or reversed and
    transposed; forward, gradients, vmapped, and batched einsums with their outputs
    permuted. Each must run (without the barrier, 60 of these failed), and the vmapped
    results equal the single ones'."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.integers(-8, 9, (32, 64)).astype(np.float32))
    w = jnp.asarray(rng.integers(-8, 9, (64, 48)).astype(np.float32))
    key = jax.random.key(3)
    for tx, tw, out in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in range(3)]:
        def f(xx, ww):
            y = quantized_dot_general(xx.T if tx else xx, ww.T if tw else ww, DN, rc, key=key)
            return (y, y.T, y[::-1].T)[out]

        def grads(xx, ww):
            return jax.grad(lambda a, b: jnp.sum(jnp.sin(f(a, b))), argnums=(0, 1))(xx, ww)
        xx, ww = (x.T if tx else x), (w.T if tw else w)
        for g in (f, grads):
            one = jax.jit(g)(xx, ww)
            many = jax.jit(jax.vmap(g))(jnp.stack([xx, xx]), jnp.stack([ww, ww]))
            for u, v in zip(jax.tree.leaves(many), jax.tree.leaves(one)):
                assert same(u[1], v), (tx, tw, out, g.__name__)
    a = jnp.asarray(rng.integers(-8, 9, (2, 16, 32)).astype(np.float32))
    b = jnp.asarray(rng.integers(-8, 9, (2, 16, 32)).astype(np.float32))
    for sub in ("bqd,bkd->bqk", "bqd,bkd->bkq", "bqd,bkd->kbq"):
        e = lambda a, b: lj.quantized_einsum(sub, a, b, rc, key=key)  # noqa: E731
        jax.block_until_ready(jax.jit(e)(a, b))
        jax.block_until_ready(jax.jit(jax.grad(lambda a, b: jnp.sum(jnp.sin(e(a, b))),
                                               argnums=(0, 1)))(a, b))


def _site(i, base=0):
    """lowprec_jax.fold's documented site number of i under base (docs/training.md)."""
    return int(_mix(_mix(base) ^ _mix(i + 1)))


def _small_integer_step(rc, m, k, n, seed, key, scale=1):
    """x (m, k), w (k, n) and g (m, n) of small integers (-8..8, times ``scale``), and
    quantized_dot_general's (y, dx, dw) for them with ``rc`` and ``key``."""
    rng = np.random.default_rng(seed)
    x, w, g = (rng.integers(-8, 9, s).astype(np.float32) * np.float32(scale)
               for s in ((m, k), (k, n), (m, n)))
    y, vjp = jax.vjp(lambda x, w: quantized_dot_general(x, w, DN, rc, key=key), x, w)
    return (x, w, g), (y, *vjp(jnp.asarray(g)))


def test_stochastic_operands_take_the_documented_words():
    """Each stochastically rounded operand draws key_words(fold(k, i)) at its own shape: the
    forward X and W i = 0, 1, the backward dY, W, X, dY (in that order) fold(fold(k, 7), i)
    (docs/training.md), rebuilt in NumPy (tests/helpers.key_words) and given to the core as
    rbits. NVFP4 operands blocked along the first axis are quantized on a transposed copy, MX
    ones in place: the words must follow the elements either way. NVFP4 operands enter
    their products without the tensor scale, applied after the sum (core_parts)."""
    sr = lambda f: Quant(f, "stochastic")  # noqa: E731
    rc = Recipe((sr("nvfp4"), sr("mxfp4_rceil")), (sr("mxfp4_rceil"), sr("nvfp4")),
                (sr("nvfp4"), sr("mxfp4_rceil")), acc="fp32-sequential")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((32, 48)).astype(np.float32)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    g = rng.standard_normal((32, 64)).astype(np.float32)
    key = jax.random.key(11)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(lambda x, w: quantized_dot_general(x, w, DN, rc, key=key), x, w)
        dx, dw = vjp(jnp.asarray(g))

    def fq(q, v, axis, s):
        return core_parts(q, v, axis, rbits=key_words(key, v.shape, site=s))
    b = _site(7)
    (fx, sx), (fw, sw) = fq(rc.fwd[0], x, -1, _site(0)), fq(rc.fwd[1], w, -2, _site(1))
    (gd, sg), (wd, sw2) = fq(rc.dgrad[0], g, -1, _site(0, b)), fq(rc.dgrad[1], w, -1, _site(1, b))
    (xw, sx2), (gw, sg2) = fq(rc.wgrad[0], x, -2, _site(2, b)), fq(rc.wgrad[1], g, -2, _site(3, b))
    acc = lp.hardware.preset("fp32-sequential")
    for got, ref in zip((y, dx, dw), (times_scales(lp.matmul(fx, fw, acc), sx, sw),
                                      times_scales(lp.matmul(gd, wd.T, acc), sg, sw2),
                                      times_scales(lp.matmul(xw.T, gw, acc), sx2, sg2))):
        assert same(got, ref)


@pytest.mark.parametrize("fmt", ["mxfp4_rceil", "e4m3"])
def test_stochastic_bfloat16_weight_gradient_takes_the_documented_words(fmt):
    """Operands rounded stochastically (MX blocks, or a scalar format) whose weight-gradient
    product runs in bfloat16 on X^T written out (dot._swapped: X and dY are quantized in
    place, blocked along M, and the product takes the forward form): each operand's values
    are the core's with key_words at its own shape, and the products equal float64 sums of
    them, exact here (integers, times 17 for E4M3 so that they round: every sum fits
    float32), so the backend's summation order cannot show."""
    sr = Quant(fmt, "stochastic")
    rc = Recipe((sr, sr), (sr, sr), (sr, sr))
    key = jax.random.key(13)
    (x, w, g), (y, dx, dw) = _small_integer_step(rc, 16, 512, 512, 12, key,
                                                 17 if fmt == "e4m3" else 1)

    def fq(v, axis, s):
        rbits = key_words(key, v.shape, site=s)
        if fmt == "e4m3":
            return lp.round(v, fmt, "stochastic", rbits=rbits).astype(np.float64)
        return lp.fake_quantize(v, fmt, axis, "stochastic", rbits=rbits).astype(np.float64)
    b = _site(7)
    want = (fq(x, -1, _site(0)) @ fq(w, -2, _site(1)),
            fq(g, -1, _site(0, b)) @ fq(w, -1, _site(1, b)).T,
            fq(x, -2, _site(2, b)).T @ fq(g, -2, _site(3, b)))
    for got, ref in zip((y, dx, dw), want):
        assert np.array_equal(ref.astype(np.float32).astype(np.float64), ref)   # exact sums
        assert same(got, ref.astype(np.float32))


@pytest.mark.parametrize("first", [1.5, np.nan])
def test_swapped_copy_is_the_transpose(first):
    """dot._swapped writes v^T out through a lax.cond whose predicate reads v's first value
    (False for NaN): either branch gives the transpose's bits, under jit and vmap."""
    from lowprec_jax.dot import _swapped
    v = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) - 7.25
    v[0, 0, 0] = first
    want = np.swapaxes(v, -1, -2)
    assert same(jax.jit(_swapped)(v), want)
    assert same(jax.vmap(_swapped)(v), want)
    assert same(_swapped(v[0]), want[0])
    assert _swapped(np.zeros((3, 0, 4), np.float32)).shape == (3, 4, 0)


@pytest.mark.parametrize("rc", ["bf16", "mxfp8", "mxfp4"])
@pytest.mark.parametrize("m, n", [(0, 32), (32, 0)])
def test_empty_operands_give_empty_products_and_gradients(rc, m, n):
    """No rows (M = 0, the weight gradient's contracted axis) or no columns: the product and
    both gradients have dot_general's shapes, and the gradient that sums over the empty axis
    is zeros, as an empty sum is (dW for M = 0, dX for N = 0)."""
    x, w = np.ones((m, 64), np.float32), np.ones((64, n), np.float32)
    f = lambda x, w: jnp.sum(quantized_dot_general(x, w, DN, rc, key=jax.random.key(0)))  # noqa
    y, (dx, dw) = jax.value_and_grad(f, argnums=(0, 1))(x, w)
    assert (dx.shape, dw.shape) == (x.shape, w.shape) and float(y) == 0.0
    assert same(dx, np.zeros_like(x)) and same(dw, np.zeros_like(w))


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4", "mxfp4_backward"])
def test_weight_gradient_in_rht_groups_takes_the_documented_words(name):
    """A weight gradient with an RHT along M and 1 x 16 (NVFP4) or 1 x 32 (MX) blocks along
    M, dY stochastic, quantized in the transform's groups (dot._rht_blocks: (B, M / k, K,
    k), no transposed copy): the core's values of the transformed X and dY (after the 3/4
    prescale where the recipe has it), dY's with key_words at its own shape, and the
    product their exact float64 sum times the tensor scales, divided by the prescales.
    Small integers, so the transform is exact (multiples of 1/4) and every sum fits
    float32: neither the backend's order in the transform nor in the product can show."""
    from lowprec.hadamard import rht16_matrix
    from lowprec_jax.dot import _rht_in_blocks
    rc = recipe(name)
    assert all(_rht_in_blocks(q, 64) for q in rc.wgrad)
    assert not any(_rht_in_blocks(q, 48) for q in rc.wgrad) or name == "nvfp4"
    assert not _rht_in_blocks(Quant("nvfp4_2d", rht=True), 64)
    assert not _rht_in_blocks(Quant("nvfp4"), 64)
    key = jax.random.key(15)
    (x, w, g), (_, _, dw) = _small_integer_step(rc, 64, 48, 40, 14, key)

    def rht(v):                                   # along M, in float64 (exact here)
        m, n = v.shape
        h = rht16_matrix()
        return np.einsum("bjk,ji->bik", v.astype(np.float64).reshape(m // 16, 16, n),
                         h).reshape(m, n).astype(np.float32)

    b = _site(7)
    qx, qg = rc.wgrad
    kx = {} if qx.rounding != "stochastic" else dict(
        rbits=key_words(key, x.shape, site=_site(2, b)))
    xw, sx = core_parts(qx, rht(x), -2, **kx)         # core_parts applies the prescale
    gw, sg = core_parts(qg, rht(g), -2, rbits=key_words(key, g.shape, site=_site(3, b)))
    ref = xw.astype(np.float64).T @ gw.astype(np.float64)
    assert np.array_equal(ref.astype(np.float32).astype(np.float64), ref)   # exact sums
    want = times_scales(ref.astype(np.float32), sx, sg)
    s = np.float32(np.prod([q.prescale or 1.0 for q in rc.wgrad]))   # 9/16
    if s != 1:               # the float32 dot's path divides as the backend does (XLA's CPU
        want = np.asarray(jnp.asarray(want) / s)          # by a reciprocal: not IEEE)
    assert same(dw, want)


def test_rht_needs_groups_of_16_and_says_so():
    """The weight gradient's RHT along M needs M a multiple of 16: otherwise a ValueError
    naming the length (NVFP4, M = 24). MX's 32-element blocks take the transform's groups
    only where M is a multiple of 32; M = 48 takes the transposed path and runs."""
    from lowprec_jax.dot import _rht_in_blocks
    w = np.ones((32, 16), np.float32)
    grad = lambda x, rc: jax.grad(lambda w: jnp.sum(quantized_dot_general(  # noqa: E731
        x, w, DN, rc, key=jax.random.key(0))))(w)
    with pytest.raises(ValueError, match="multiple of 16, got length 24"):
        grad(np.ones((24, 32), np.float32), "nvfp4")
    assert not _rht_in_blocks(recipe("mxfp4").wgrad[0], 48)
    assert np.all(np.isfinite(np.asarray(grad(np.ones((48, 32), np.float32), "mxfp4"))))


def test_any_dimension_numbers_match_dot_general_without_quantization():
    """With recipe 'none' the canonicalisation must reproduce dot_general's layout."""
    rng = np.random.default_rng(1)
    lhs = rng.integers(-4, 5, (2, 3, 5, 4)).astype(np.float32)    # small ints: exact sums
    rhs = rng.integers(-4, 5, (5, 2, 6, 4)).astype(np.float32)
    dn = (((2, 3), (0, 3)), ((0,), (1,)))
    want = jax.lax.dot_general(lhs, rhs, dn)
    got = quantized_dot_general(lhs, rhs, dn, "none")
    assert got.shape == want.shape and same(got, want)
    gl, gr = jax.grad(lambda a, b: jnp.sum(quantized_dot_general(a, b, dn, "none") ** 2),
                      (0, 1))(lhs, rhs)
    wl, wr = jax.grad(lambda a, b: jnp.sum(jax.lax.dot_general(a, b, dn) ** 2), (0, 1))(lhs,
                                                                                         rhs)
    assert same(gl, wl) and same(gr, wr)


def test_stochastic_recipes_need_a_key_and_are_reproducible():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    w = rng.standard_normal((64, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="key="):
        quantized_dot_general(x, w, DN, "nvfp4")
    loss = lambda x, w, k: jnp.sum(quantized_dot_general(x, w, DN, "nvfp4", key=k) ** 2)  # noqa
    grad = jax.jit(jax.grad(loss, (0, 1)))
    g1, g2, g3 = (grad(x, w, jax.random.key(s)) for s in (0, 0, 1))
    assert all(same(a, b) for a, b in zip(g1, g2))
    assert not same(g1[0], g3[0])                 # the gradient's rounding is random


def test_rht_cancels_in_the_weight_gradient():
    """X^T H^T H dY = X^T dY: with the RHT and no quantization the weight gradient is the
    plain one up to float32 rounding of the rotations."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    q = Quant(None)
    rc = Recipe((q, q), (q, q), (Quant("float32", rht=True), Quant("float32", rht=True)))
    dw = jax.grad(lambda w: jnp.sum(quantized_dot_general(x, w, DN, rc)))(w)
    want = x.T.astype(np.float64) @ np.ones((64, 4))
    assert np.max(np.abs(np.asarray(dw) - want)) < 1e-4 * np.max(np.abs(want))


def test_recipes_by_name():
    assert set(lj.dot.recipes()) >= {"bf16", "mxfp8", "mxfp4", "nvfp4"}
    assert recipe("nvfp4").fwd[1].fmt == "nvfp4_2d"
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("fp3")


def test_sharded_quantized_matmul_gives_the_single_device_bits():
    """What lowprec defines does not depend on the sharding: the quantized operands (scalar and
    block) are bit-identical sharded or not and equal the core's, and so is every product
    computed through the bit-exact accumulator path (``acc=``). A recipe with ``acc=None``
    multiplies with XLA's float32 dot, whose summation order XLA does not promise to keep
    across shardings, so its product is not compared here."""
    devs = np.array(jax.devices()[:4])
    assert len(devs) == 4, "tests/conftest.py asks XLA for 4 CPU devices"
    mesh = Mesh(devs.reshape(2, 2), ("rows", "cols"))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    xs = jax.device_put(x, NamedSharding(mesh, P("rows", None)))
    ws = jax.device_put(w, NamedSharding(mesh, P(None, "cols")))
    acc = lp.hardware.preset("h100-fp8")
    mx = recipe("mxfp8").fwd[0].fmt                 # the mxfp8 recipe's block format
    exact = dataclasses.replace(recipe("mxfp8"), acc="fp32-sequential")

    def f(x, w):
        xq = lj.round(x, "float8_e4m3fn", dtype=np.float32)
        wq = lj.round(w, "float8_e4m3fn", dtype=np.float32)
        xb = lj.fake_quantize(x, lp.block_format(mx), -1)
        wb = lj.fake_quantize(w, lp.block_format(mx), 0)
        return xq, wq, xb, wb, lj.matmul(xq, wq, acc), quantized_dot_general(x, w, DN, exact)

    with jax.enable_x64(True):
        sharded = jax.jit(f)(xs, ws)
        single = jax.jit(f)(x, w)
    assert len(sharded[-1].sharding.device_set) == 4
    for a, b in zip(sharded, single):
        assert same(a, b)
    xq = lp.round(x, "float8_e4m3fn", dtype=np.float32)
    wq = lp.round(w, "float8_e4m3fn", dtype=np.float32)
    xb = lp.fake_quantize(x, lp.block_format(mx), -1)
    wb = lp.fake_quantize(w, lp.block_format(mx), 0)
    want = (xq, wq, xb, wb, lp.matmul(xq, wq, acc),
            lp.matmul(xb, wb, lp.hardware.preset("fp32-sequential")))
    for got, ref in zip(sharded, want):
        assert same(got, ref)


def test_sharded_block_quantizers_take_either_path_with_the_core_bits():
    """NVFP4 and MXFP4 (SR) quantizers on a 2 x 2 mesh: a tensor the native float32 path
    serves (one with a subnormal element too), and one whose amax is below 2^-100, which
    NVFP4 sends to the core through the host callback; the bits equal the core's sharded or
    not. Both keep their input's sharding, and NVFP4 gathers only inside the callback's
    branch (the compiled step's other all-gathers would run every step)."""
    devs = np.array(jax.devices()[:4])
    mesh = Mesh(devs.reshape(2, 2), ("rows", "cols"))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    x_sub = x.copy()
    x_sub[5, 7] = np.float32(1e-40)
    x_tiny = x * np.float32(2.0**-110)
    rb = rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)

    def f(a, r):
        return (lj.fake_quantize(a, "nvfp4"),
                lj.fake_quantize(a, "mxfp4_rceil", 0, "stochastic", rbits=r))

    for v in (x, x_sub, x_tiny):
        put = lambda a: jax.device_put(a, NamedSharding(mesh, P("rows", "cols")))  # noqa: E731
        sharded = jax.jit(f)(put(v), put(rb))
        want = (lp.fake_quantize(v, "nvfp4"),
                lp.fake_quantize(v, "mxfp4_rceil", 0, "stochastic", rbits=rb))
        for got, ref in zip(sharded, want):
            assert same(got, ref)
        assert not sharded[0].sharding.is_fully_replicated
        assert not sharded[1].sharding.is_fully_replicated
    hlo = jax.jit(f).lower(put(x), put(rb)).compile().as_text()
    outside = [c for c in hlo.split("\n\n") if "all-gather(" in c and "pure_callback" not in c]
    assert not outside, outside[0][:300]


@pytest.mark.parametrize("rc", ["mxfp8", "nvfp4"])
@pytest.mark.parametrize("spec,sa,sb,dims,perm", [
    ("bhqd,bhkd->bhqk", (2, 3, 32, 64), (2, 3, 48, 64),       # attention scores
     (((3,), (3,)), ((0, 1), (0, 1))), (0, 1, 2, 3)),
    ("bhqk,bhkd->bhqd", (2, 3, 32, 64), (2, 3, 64, 48),       # attention output
     (((3,), (2,)), ((0, 1), (0, 1))), (0, 1, 2, 3)),
    ("bqd,bkd->bkq", (2, 16, 64), (2, 32, 64),                # a permuted output
     (((2,), (2,)), ((0,), (0,))), (0, 2, 1))])
def test_quantized_einsum_is_quantized_dot_general(rc, spec, sa, sb, dims, perm):
    """quantized_einsum gives, bit for bit, the forward values and both gradients of
    quantized_dot_general with the dimension numbers its subscripts name (written out here by
    hand; lhs in the X role, rhs in the W role), output axes in the subscripts' order."""
    rng = np.random.default_rng(len(spec))
    a = jnp.asarray(rng.standard_normal(sa).astype(np.float32))
    b = jnp.asarray(rng.standard_normal(sb).astype(np.float32))
    key = jax.random.key(3)

    def via_einsum(a, b):
        return jnp.sum(jnp.sin(lj.quantized_einsum(spec, a, b, rc, key=key)))

    def via_dot(a, b):
        y = jnp.transpose(quantized_dot_general(a, b, dims, rc, key=key), perm)
        return jnp.sum(jnp.sin(y))

    y1 = lj.quantized_einsum(spec, a, b, rc, key=key)
    y2 = jnp.transpose(quantized_dot_general(a, b, dims, rc, key=key), perm)
    assert y1.shape == jnp.einsum(spec, a, b).shape
    assert np.array_equal(np.asarray(y1).view(np.uint32), np.asarray(y2).view(np.uint32))
    g1 = jax.jit(jax.grad(via_einsum, argnums=(0, 1)))(a, b)
    g2 = jax.jit(jax.grad(via_dot, argnums=(0, 1)))(a, b)
    for u, v in zip(g1, g2):
        assert np.array_equal(np.asarray(u).view(np.uint32), np.asarray(v).view(np.uint32))


@pytest.mark.parametrize("spec", ["ij,jk", "ij,jk,kl->il", "ii,ij->j", "ij,kl->il", "...j,jk->k",
                                  "ij,jk->iz", "ijk,jk->i"])
def test_quantized_einsum_says_what_it_takes(spec):
    a = b = jnp.ones((4, 4), jnp.float32)
    with pytest.raises(ValueError, match=r"subscripts=.*quantized_einsum takes two operands"):
        lj.quantized_einsum(spec, a, b, "bf16")
