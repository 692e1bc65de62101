"""lowprec_jax.matmul gives lp.matmul's bits (the core is checked against the rational model of
tests/oracle_mma.py and the real-GPU rows) for every fused-adder preset, random fused adders,
promotion, and sequential accumulators in every mode, with special values, batch broadcasting,
under jit and vmap; and for block-scaled operands (QuantizedArray: MX product scales, NVFP4
groups and tensor scales, the exact-per-block model, checked itself against exact rationals)."""
import builtins
import dataclasses
import re
from fractions import Fraction as Fr

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from lowprec_jax import blocks as jb
from lowprec_jax.matmul import matmul

import oracle_mma

builtins_sum = builtins.sum
FUSED_PRESETS = [n for n in lp.hardware.presets() if lp.hardware.preset(n).fused is not None
                 and lp.hardware.preset(n).block_scales != "group"]   # group: BlockTensors


def values(rng, fmt, shape, spread=10):
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread, shape)))
    x = x.astype(np.float32)
    return x if fmt is None or fmt.name == "float32" else lp.round(x, fmt, dtype=np.float32)


def specials(rng, A, B, fa=None, fb=None):
    """Inf, NaN and -0 where the input formats have them (the fnuz formats have none)."""
    def has(f, what):
        return f is None or getattr(f, what)
    pa = [v for v, w in ((np.inf, "has_inf"), (-np.inf, "has_inf"), (np.nan, "has_nan"))
          if has(fa, w)]
    if pa:
        A.reshape(-1)[rng.integers(0, A.size)] = rng.choice(pa)
    pb = [v for v, w in ((np.inf, "has_inf"), (-np.inf, "has_inf"), (-0.0, "has_neg_zero"))
          if has(fb, w)] + [0.0]
    B.reshape(-1)[rng.integers(0, B.size)] = rng.choice(pb)
    if has(fa, "has_neg_zero"):
        A[..., 0, :] = -0.0


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a.view(f"u{a.itemsize}"),
                                                 b.view(f"u{b.itemsize}"))


def check(acc, rng, shape_a, shape_b, with_specials, seed=None):
    fa, fb = acc.input_formats
    A, B = values(rng, fa, shape_a), values(rng, fb, shape_b)
    cf = acc.addend_format or acc.fmt
    if acc.promote_to is not None:
        cf = acc.promote_to.fmt
    out_shape = np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (shape_a[-2], shape_b[-1])
    c = values(rng, cf, out_shape)
    if with_specials:
        specials(rng, A, B, fa, fb)
    kw = dict(seed=seed) if seed is not None else {}
    want = lp.matmul(A, B, acc, c, **kw)
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c, **kw))(A, B, c)
    assert same(got, want)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(FUSED_PRESETS + ["fp32-sequential", "exact"]),
       K=st.integers(1, 200), batch=st.sampled_from([(), (2,)]), sp=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_presets_equal_the_core(name, K, batch, sp, seed):
    rng = np.random.default_rng(seed)
    check(lp.hardware.preset(name), rng, batch + (3, K), (K, 4), sp)


@settings(max_examples=14, deadline=None)
@given(n=st.integers(1, 40), F=st.integers(0, 30), align=st.booleans(),
       terms=st.sampled_from(["truncate", "floor", "nearest"]),
       ins=st.sampled_from([("float8_e4m3fn", "float8_e5m2"), ("float16", "float16"),
                            ("bfloat16", "bfloat16"), ("float4_e2m1fn", "float6_e3m2fn")]),
       out=st.sampled_from(["float32", "bfloat16", "float16", "e8m13"]),
       mode=st.sampled_from(["toward_zero", "nearest_even", "down", "odd", "stochastic"]),
       promote=st.sampled_from([None, 1, 3]), K=st.integers(1, 100),
       seed=st.integers(0, 2**32 - 1), sp=st.booleans())
def test_random_fused_adders_equal_the_core(n, F, align, terms, ins, out, mode, promote, K,
                                            seed, sp):
    if out == "e8m13":
        out = lp.FloatFormat(8, 13, name="e8m13")
    sr = mode == "stochastic"
    if sr and not align:
        mode = "nearest_even"                   # stochastic + unaligned addend: see below
        sr = False
    acc = lp.Accumulator(out, mode, fused=lp.FusedAdder(n, F, align, terms),
                         input_formats=ins, addend_format="float32",
                         promote_every=None if promote is None else promote * n,
                         promote_to=None if promote is None else lp.Accumulator("float32"),
                         sr_bits=10 if sr else None)
    rng = np.random.default_rng(seed)
    check(acc, rng, (2, K), (K, 3), sp, seed if sr else None)


@settings(max_examples=15, deadline=None)
@given(fmt=st.sampled_from(["float32", "bfloat16", "float16", "float8_e5m2", "tfloat32"]),
       mode=st.sampled_from(["nearest_even", "nearest_away", "toward_zero", "up", "down",
                             "odd", "stochastic"]),
       K=st.integers(0, 64), seed=st.integers(0, 2**32 - 1), sp=st.booleans())
def test_sequential_accumulators_equal_the_core(fmt, mode, K, seed, sp):
    sr = mode == "stochastic"
    acc = lp.Accumulator(fmt, mode, sr_bits=8 if sr else None,
                         overflow="saturate" if fmt == "float8_e5m2" and sp is False else None)
    rng = np.random.default_rng(seed)
    if K == 0:
        sp = False
    check(acc, rng, (3, K), (K, 2), sp, seed if sr else None)


def random_tree(rng, idx):
    if len(idx) == 1:
        return int(idx[0])
    cuts = np.sort(rng.choice(np.arange(1, len(idx)), rng.integers(1, min(3, len(idx) - 1) + 1),
                              replace=False))
    return tuple(random_tree(rng, part) for part in np.split(idx, cuts))


@settings(max_examples=15, deadline=None)
@given(order=st.sampled_from(["pairwise", "blocked", "tree", "sequential"]),
       fmt=st.sampled_from(["float32", "bfloat16", "float16", "float8_e5m2"]),
       mode=st.sampled_from(["nearest_even", "toward_zero", "down", "stochastic"]),
       products=st.sampled_from([None, "bfloat16", "float16"]), K=st.integers(1, 19),
       sp=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_any_order_and_rounded_products_equal_the_core(order, fmt, mode, products, K, sp, seed):
    rng = np.random.default_rng(seed)
    if order == "sequential" and products is None:
        products = "bfloat16"                          # exact products: the scan path
    kw = dict(order=order)
    if order == "blocked":
        kw["block"] = int(rng.integers(1, K + 1))
    if order == "tree":
        kw["order"] = random_tree(rng, np.arange(K))
    sr = dict(sr_bits=5) if mode == "stochastic" else {}
    acc = lp.Accumulator(fmt, mode, products=products, **kw, **sr)
    check(acc, rng, (2, 3, K), (K, 2), sp, seed if mode == "stochastic" else None)


@settings(max_examples=12, deadline=None)
@given(fmt=st.sampled_from(["float32", "bfloat16", "float16", "float8_e4m3fn", "tfloat32"]),
       mode=st.sampled_from(["nearest_even", "down", "up", "toward_zero", "odd", "stochastic"]),
       K=st.integers(1, 40), spread=st.sampled_from([2, 60, 120]), cancel=st.booleans(),
       sp=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_exact_order_equals_the_core(fmt, mode, K, spread, cancel, sp, seed):
    """The long accumulator: exact sums over float32's whole range, cancellation to zero
    (signs of zero), specials, every mode."""
    rng = np.random.default_rng(seed)
    A = values(rng, None, (2, 3, K), spread)
    B = values(rng, None, (K, 4), spread)
    if cancel and K > 1:                          # row 0 x column 0 sums to exactly zero
        h = K // 2
        A[:, 0, h:2 * h] = -A[:, 0, :h]
        B[h:2 * h, 0] = B[:h, 0]
        A[:, 0, 2 * h:] = 0.0
    if sp:
        specials(rng, A, B)
    f = lp.format(fmt)
    over = "saturate" if not f.has_inf else None
    acc = lp.Accumulator(fmt, mode, order="exact", overflow=over,
                         sr_bits=6 if mode == "stochastic" else None)
    c = values(rng, f, (3, 4)) * np.float32(0 if cancel else 1)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    try:
        want = lp.matmul(A, B, acc, c, **kw)
    except ValueError:                            # a NaN sum into a format without NaN
        return
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c, **kw))(A, B, c)
    assert same(got, want)


@settings(max_examples=10, deadline=None)
@given(bits=st.integers(4, 20), saturate=st.booleans(),
       order=st.sampled_from(["sequential", "pairwise", "blocked"]), K=st.integers(1, 30),
       seed=st.integers(0, 2**32 - 1))
def test_integer_accumulators_equal_the_core(bits, saturate, order, K, seed):
    rng = np.random.default_rng(seed)
    acc = lp.Accumulator(lp.IntFormat(bits), order=order, block=3 if order == "blocked" else None,
                         overflow="saturate" if saturate else "wrap")
    A = rng.integers(-128, 128, (3, K)).astype(np.float32)
    B = rng.integers(-8, 8, (K, 4)).astype(np.float32)
    c = rng.integers(-100, 100, (3, 4)).astype(np.float64)
    want = lp.matmul(A, B, acc, c)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(lambda a, b, c: matmul(a, b, acc, c))(A, B, c))
    assert got.dtype == want.dtype == np.int64 and np.array_equal(got, want)


def test_vmap_and_batch_broadcasting():
    rng = np.random.default_rng(5)
    acc = lp.hardware.preset("h100-fp8")
    A = values(rng, lp.format("float8_e4m3fn"), (4, 3, 40))
    B = values(rng, lp.format("float8_e4m3fn"), (40, 5))
    want = lp.matmul(A, B, acc)
    with jax.enable_x64(True):
        got = jax.vmap(lambda a: matmul(a, B, acc))(A)
    assert same(got, want)


def test_what_is_left_to_the_core_is_said():
    A = np.ones((2, 4), np.float32)
    with jax.enable_x64(True):
        for acc in (lp.Accumulator("float64"),
                    lp.Accumulator(lp.FloatFormat(11, 40), order="exact")):
            with pytest.raises(NotImplementedError, match="lp.matmul"):
                matmul(A, A.T, acc)
        sr_unaligned = lp.Accumulator("float32", "stochastic", fused=lp.FusedAdder(4, 20, False),
                                      input_formats=("float16", "float16"))
        with pytest.raises(NotImplementedError, match="random bits"):
            matmul(A, A.T, sr_unaligned, seed=1)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            matmul(A, A.T)


# ---- block-scaled operands --------------------------------------------------------------------

def _rne32(x):
    return oracle_mma.round_ieee(x, 24, -126, 127, "nearest_even")


def test_exact_per_block_is_exact_block_sums_rounded_once():
    """lp.exact_per_block against the rational model: c, then each 32-long block's exact
    scaled dot product added with one nearest-even float32 rounding."""
    rng = np.random.default_rng(11)
    for bf_a, bf_b in (("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp4", "mxfp6_e3m2")):
        A = (rng.standard_normal((3, 96)) * np.exp2(rng.integers(-8, 8, (3, 96)))).astype(
            np.float32)
        B = (rng.standard_normal((96, 4)) * np.exp2(rng.integers(-8, 8, (96, 4)))).astype(
            np.float32)
        c = rng.standard_normal((3, 4)).astype(np.float32)
        qa, qb = lp.quantize(A, bf_a), lp.quantize(B, bf_b, axis=-2)
        acc = lp.exact_per_block(qa.fmt.elem, qb.fmt.elem)
        got = lp.matmul(qa, qb, acc, c)
        va, vb = qa.dequantize(np.float64), qb.dequantize(np.float64)   # exact products
        for m in range(3):
            for n in range(4):
                s = Fr(float(c[m, n]))
                for k0 in range(0, 96, 32):
                    s = _rne32(s + builtins_sum(Fr(float(va[m, k])) * Fr(float(vb[k, n]))
                                                for k in range(k0, k0 + 32)))
                assert np.float32(s).view(np.uint32) == got[m, n].view(np.uint32)
    with pytest.raises(ValueError, match="span 62 bits"):
        lp.exact_per_block("float8_e5m2", "float8_e5m2")


BLOCK_PAIRS = [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e4m3"),
               ("mxfp4", "mxfp6_e2m3"), ("mxfp4", "mxfp4"), ("nvfp4", "nvfp4"),
               ("nvfp4", "nvfp4_2d"), ("mxfp8_e4m3_rceil", "mxfp8_e4m3")]


def block_case(rng, bf_a, bf_b, batch, M, K, N, with_specials):
    A = (rng.standard_normal(batch + (M, K)) * np.exp2(rng.integers(-20, 20, (M, 1)))
         ).astype(np.float32)
    B = (rng.standard_normal((K, N)) * np.exp2(rng.integers(-20, 20, (1, N)))).astype(
        np.float32)
    if with_specials:
        A.reshape(-1)[rng.integers(0, A.size)] = rng.choice([np.inf, np.nan, 3e38])
        B[:, 0] = 0.0
    axis_b = -1 if lp.block_format(bf_b).tile is not None else -2
    return jb.quantize(A, bf_a), jb.quantize(B, bf_b, axis_b)


@settings(max_examples=8, deadline=None)
@given(pair=st.sampled_from(BLOCK_PAIRS), model=st.sampled_from(
    ["b200-mxf8f6f4", "b200-mxf4nvf4", "exact", "sr"]), batch=st.sampled_from([(), (2,)]),
    MKN=st.sampled_from([(3, 64, 5), (2, 96, 3), (1, 40, 2)]), sp=st.booleans(),
    seed=st.integers(0, 2**32 - 1))
def test_block_operands_equal_the_core(pair, model, batch, MKN, sp, seed):
    rng = np.random.default_rng(seed)
    qa, qb = block_case(rng, *pair, batch, *MKN, sp)
    ins = (qa.fmt.elem, qb.fmt.elem)
    kw = {}
    if model == "exact":
        try:
            acc = lp.exact_per_block(*ins)
        except ValueError:
            return
    elif model == "sr":
        acc = lp.Accumulator("bfloat16", "stochastic", fused=lp.FusedAdder(32, 20),
                             input_formats=ins, sr_bits=8, block_scales="group" if "nvfp4" in
                             pair[0] + pair[1] else "product")
        kw = dict(seed=seed)
    else:
        acc = lp.hardware.preset(model, inputs=ins)
    if acc.stochastic and "nvfp4" in pair[0] + pair[1]:
        with pytest.raises(NotImplementedError, match="epilogue"), jax.enable_x64(True):
            matmul(qa, qb, acc, seed=seed)
        return
    c = rng.standard_normal(batch + (MKN[0], MKN[2])).astype(np.float32)
    c = c if acc.fmt.name == "float32" else lp.round(c, acc.fmt, dtype=np.float32)
    try:
        want = lp.matmul(qa.to_core(), qb.to_core(), acc, c, **kw)
    except ValueError as e:                    # e.g. non-power-of-two scales with "product"
        with pytest.raises(ValueError, match=re.escape(str(e)[:25])):
            with jax.enable_x64(True):
                matmul(qa, qb, acc, c, **kw)
        return
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c, **kw))(qa, qb, c)
    assert same(got, want)


@settings(max_examples=4, deadline=None)
@given(K=st.sampled_from([128, 256, 300]), nan=st.booleans(), batch=st.sampled_from([(), (2,)]),
       seed=st.integers(0, 2**32 - 1))
def test_block_scales_at_promotion_equal_the_core(K, nan, batch, seed):
    """DeepSeek-V3's recipe: 1 x 128 activation blocks, 128 x 128 weight tiles, h100-fp8 steps
    from the unscaled elements, scales applied when each 128-product partial sum is promoted.
    A NaN block gives NaN results (the core used to raise on its NaN scale)."""
    rng = np.random.default_rng(seed)
    acc = dataclasses.replace(lp.hardware.preset("deepseek-v3-fp8"), block_scales="promotion")
    A = (rng.standard_normal(batch + (3, K)) * np.exp2(rng.integers(-10, 10, (3, 1)))).astype(
        np.float32)
    B = rng.standard_normal((K, 5)).astype(np.float32)
    if nan:
        A[..., 0, 5] = np.nan
    qa = jb.quantize(A, lp.BlockFormat("float8_e4m3fn", k=128))
    qb = jb.quantize(B, lp.BlockFormat("float8_e4m3fn", tile=(128, 128)))
    c = rng.standard_normal(batch + (3, 5)).astype(np.float32)
    want = lp.matmul(qa.to_core(), qb.to_core(), acc, c)
    assert np.isnan(want[..., 0, :]).all() == nan
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c))(qa, qb, c)
    assert same(got, want)


@pytest.mark.parametrize("pair", [("nvfp4", "nvfp4"), ("mxfp4", "mxfp4"), ("nvfp4", "nvfp4_2d")])
@pytest.mark.parametrize("sparse", [False, True])
def test_group_rule_equals_the_core(pair, sparse):
    """block_scales="group" (b200-mxf4nvf4: group terms aligned on their scales' exponents,
    lowprec/group_step.py) in JAX, under jit, against lp.matmul: chains of 1 and 2 steps,
    whole zero groups, a zero c, batches."""
    rng = np.random.default_rng(len(pair[1]) + sparse)
    for batch, (M, K, N) in (((), (4, 64, 3)), ((2,), (3, 128, 5))):
        qa, qb = block_case(rng, *pair, batch, M, K, N, False)
        if sparse:
            a = np.asarray(qa.to_core().dequantize()).copy()
            a[..., :, 16:32] = 0.0
            b = np.asarray(qb.to_core().dequantize()).copy()
            b[..., 32:48, :] = 0.0
            qa, qb = jb.quantize(a, pair[0]), jb.quantize(b, pair[1], -1 if lp.block_format(
                pair[1]).tile is not None else -2)
        acc = lp.hardware.preset("b200-mxf4nvf4")
        for c in (None, rng.standard_normal(batch + (M, N)).astype(np.float32)):
            want = lp.matmul(qa.to_core(), qb.to_core(), acc, c)
            with jax.enable_x64(True):
                got = jax.jit(lambda a, b, c: matmul(a, b, acc, c))(qa, qb, c)
            assert same(got, want)


@pytest.mark.parametrize("acc", [lp.hardware.instruction("gfx908", "v_mfma", "f16"),
                                 lp.hardware.instruction("gfx908", "v_mfma", "bf16"),
                                 lp.Accumulator("bfloat16", "stochastic", order="exact", block=3,
                                                sr_bits=9)])
def test_exact_order_per_block_equals_the_core(acc):
    """order="exact" with block=L (AMD CDNA1): one rounding per L products, as lp.matmul."""
    rng = np.random.default_rng(11)
    f = acc.input_formats[0] or lp.format("bfloat16")
    A = lp.round(rng.standard_normal((5, 26)) * 2.0 ** rng.integers(-20, 20, (5, 26)), f,
                 dtype=np.float32)
    B = lp.round(rng.standard_normal((26, 3)), f, dtype=np.float32)
    c = lp.round(rng.standard_normal((5, 3)), acc.fmt, dtype=np.float32)
    kw = dict(seed=5) if acc.stochastic else {}
    want = lp.matmul(A, B, acc, c, **kw)
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c, **kw))(A, B, c)
    assert same(got, want)


def test_blocked_pairwise_and_ftz_equal_the_core():
    """order="blocked_pairwise" with ftz=True (AMD CDNA2's flushed pairs) as in lp.matmul, on
    values whose products and sums fall below float32's normal range."""
    rng = np.random.default_rng(12)
    for a in ("bf16", "bf16_1k", "f16"):
        acc = lp.hardware.instruction("gfx90a", "v_mfma", a)
        f = acc.input_formats[0]
        lo = -70 if f.emax > 100 else -12
        A = lp.round(rng.standard_normal((4, 24)) * 2.0 ** rng.integers(lo, 8, (4, 24)), f,
                     dtype=np.float32)
        B = lp.round(rng.standard_normal((24, 3)) * 2.0 ** rng.integers(lo, 8, (24, 3)), f,
                     dtype=np.float32)
        c = lp.round(rng.standard_normal((4, 3)) * 2.0 ** rng.integers(-140, 0, (4, 3)),
                     "float32", dtype=np.float32)
        if f.emax > 100:                  # row 0: products just below 2^-126, c just above
            A[0] = lp.round(np.abs(A[0]) * 2.0**-60 + 2.0**-64, f, dtype=np.float32)
            B[:] = lp.round(np.abs(B) * 2.0**-60 + 2.0**-64, f, dtype=np.float32)
            c[0] = np.float32(2.0**-125)
        want = lp.matmul(A, B, acc, c)
        plain = lp.matmul(A, B, dataclasses.replace(acc, ftz=False), c)
        if f.emax > 100:
            assert not np.array_equal(want.view(np.uint32), plain.view(np.uint32))
        with jax.enable_x64(True):
            assert same(jax.jit(lambda x, y, z: matmul(x, y, acc, z))(A, B, c), want), a
