"""lowprec_jax.matmul gives lp.matmul's bits (the core is checked against the rational model of
tests/oracle_mma.py and the real-GPU rows) for every fused-adder preset, random fused adders,
promotion, and sequential accumulators in every mode, with special values, batch broadcasting,
under jit and vmap."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from lowprec_jax.matmul import matmul

FUSED_PRESETS = [n for n in lp.hardware.presets() if lp.hardware.preset(n).fused is not None
                 and lp.hardware.preset(n).block_scales != "group"]


def values(rng, fmt, shape, spread=10):
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread, shape)))
    x = x.astype(np.float32)
    return x if fmt is None or fmt.name == "float32" else lp.round(x, fmt, dtype=np.float32)


def specials(rng, A, B):
    A.reshape(-1)[rng.integers(0, A.size)] = rng.choice([np.inf, -np.inf, np.nan])
    B.reshape(-1)[rng.integers(0, B.size)] = rng.choice([np.inf, -np.inf, 0.0, -0.0])
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
        specials(rng, A, B)
    kw = dict(seed=seed) if seed is not None else {}
    want = lp.matmul(A, B, acc, c, **kw)
    with jax.enable_x64(True):
        got = jax.jit(lambda a, b, c: matmul(a, b, acc, c, **kw))(A, B, c)
    assert same(got, want)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(FUSED_PRESETS + ["fp32-sequential"]),
       K=st.integers(1, 200), batch=st.sampled_from([(), (2,)]), sp=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_presets_equal_the_core(name, K, batch, sp, seed):
    rng = np.random.default_rng(seed)
    check(lp.hardware.preset(name), rng, batch + (3, K), (K, 4), sp)


@settings(max_examples=20, deadline=None)
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
        for acc in (lp.Accumulator("float32", order="pairwise"), "exact",
                    lp.Accumulator(lp.IntFormat(32))):
            with pytest.raises(NotImplementedError, match="lp.matmul"):
                matmul(A, A.T, acc)
        sr_unaligned = lp.Accumulator("float32", "stochastic", fused=lp.FusedAdder(4, 20, False),
                                      input_formats=("float16", "float16"))
        with pytest.raises(NotImplementedError, match="random bits"):
            matmul(A, A.T, sr_unaligned, seed=1)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            matmul(A, A.T)
