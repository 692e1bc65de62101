"""lowprec_jax.round / encode / decode give the core's bits (the core itself is checked against
the oracle), under jax.jit and vmap, with JAX's x64 off (float32 work) and on (float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from helpers import overflow_inputs, round_inputs as inputs
import lowprec_jax as lj
from lowprec.testing import float_formats

U = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd"]
# the formats tests/test_conformance.py does not already check on JAX against the oracle
F32_FORMATS = ["float8_e3m4", "float6_e3m2fn", "bfloat16", "float16", "tfloat32", "float32",
               "uint4", "mxint8_element"]
NO_NAN = ("int8", "uint4", "mxint8_element", "float6_e3m2fn", "float4_e2m1fn")




def same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    bad = np.flatnonzero(got.view(U[got.itemsize]) != want.view(U[want.itemsize]))
    assert bad.size == 0, f"{bad.size} differ, first at {bad[:3]}"


def check(x, fmt, mode, **kw):
    xs = np.nan_to_num(x) if fmt in NO_NAN else x
    same(jax.jit(lambda v: lj.encode(v, fmt, mode, **kw))(xs), lp.encode(xs, fmt, mode, **kw))
    same(jax.jit(lambda v: lj.round(v, fmt, mode, **kw))(xs), lp.round(xs, fmt, mode, **kw))


@pytest.mark.parametrize("fmt", F32_FORMATS)
def test_float32_inputs_every_mode(fmt):
    x = inputs(np.float32)
    every = fmt in ("float8_e4m3fn", "int8", "bfloat16", "float6_e3m2fn", "float32")
    for mode in MODES if every else ("nearest_even", "up", "odd"):
        check(x, fmt, mode)
    check(x, fmt, "stochastic", seed=11)


@pytest.mark.parametrize("fmt", ["float8_e5m2", "bfloat16", "float16", "float32"])
def test_overflow_inf_always(fmt):
    """overflow="inf_always" (Inf even where the rounding goes toward zero), every mode."""
    for mode in MODES:
        check(overflow_inputs(float(lp.format(fmt).max)), fmt, mode, overflow="inf_always")


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float4_e2m1fn", "bfloat16", "float16"])
def test_float16_and_bfloat16_inputs(fmt):
    for dt in (np.float16, jnp.bfloat16):
        x = inputs(np.float32).astype(dt)
        for mode in ("nearest_even", "toward_zero", "odd"):
            check(x, fmt, mode)


@pytest.mark.parametrize("variant", ["srff", "srf", "src", "sr_odd", "sr_nearest_odd"])
@pytest.mark.parametrize("r", [1, 8, 31, 32])
def test_stochastic_variants_with_explicit_bits(variant, r):
    x = inputs(np.float32, 2000, seed=r)
    rb = np.random.default_rng(r).integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    for fmt in ("float8_e4m3fn", "float6_e2m3fn"):
        check(np.nan_to_num(x), fmt, "stochastic", sr_bits=r, sr_variant=variant, rbits=rb)


def test_key_gives_the_documented_words():
    """key=: the key's words hashed with each element's index (docs/training.md); the words
    rebuilt in NumPy (helpers.key_words) give the core's bits, 32- and 64-bit SR, under jit
    and vmap; lowprec_jax.fold's site numbers equal their rebuild (and do not commute), and
    a raw uint32 key is read as its words."""
    from helpers import key_words
    x = inputs(np.float32, 1000).reshape(8, 125)
    key = jax.random.key(3)
    same(lj.round(x, "bfloat16", "stochastic", key=key),
         lp.round(x, "bfloat16", "stochastic", rbits=key_words(key, x.shape)))
    with jax.enable_x64(True):
        x64 = x.astype(np.float64)
        same(jax.jit(lambda v: lj.round(v, "bfloat16", "stochastic",
                                        key=key))(x64),
             lp.round(x64, "bfloat16", "stochastic",
                      rbits=key_words(key, x.shape, wide=True)))
    from helpers import fold_site
    k = lj.fold(lj.fold(key, 7), 2)
    assert k.site == fold_site(fold_site(0, 7), 2) != lj.fold(lj.fold(key, 2), 7).site
    same(lj.round(x, "bfloat16", "stochastic", key=k),
         lp.round(x, "bfloat16", "stochastic", rbits=key_words(key, x.shape, site=k.site)))
    same(lj.round(x, "bfloat16", "stochastic", key=jax.random.key_data(key)),
         lp.round(x, "bfloat16", "stochastic", rbits=key_words(key, x.shape)))
    keys = jax.random.split(key, 3)
    got = jax.vmap(lambda k: lj.round(x[0], "bfloat16", "stochastic", key=k))(keys)
    for j in range(3):
        same(got[j], lp.round(x[0], "bfloat16", "stochastic",
                              rbits=key_words(keys[j], x[0].shape)))


def test_key_words_are_uniform_and_unbiased_for_stochastic_rounding():
    """The hashed stream is fit for SR: each of the 32 bit positions of 2^20 words is one
    with frequency 1/2 within 5 sigma, words of neighbouring keys are uncorrelated, and
    the mean of 4096 stochastically rounded copies of 1 + 2^-9 in bfloat16 (step 2^-7, so
    P(up) = 1/4) is within 5 sigma of the value."""
    hi, lo = lj.key_words(jax.random.key(0), (1 << 20,))
    w = np.asarray(lo)
    ones = ((w[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
    assert np.all(np.abs(ones - 0.5) < 5 * 0.5 / np.sqrt(w.size)), ones
    w2 = np.asarray(lj.key_words(jax.random.key(1), (1 << 20,))[1])
    c = np.corrcoef(w.astype(np.float64), w2.astype(np.float64))[0, 1]
    assert abs(c) < 5 / np.sqrt(w.size), c
    x = np.full(4096, 1 + 2.0**-9, np.float32)
    r = np.asarray(lj.round(x, "bfloat16", "stochastic", key=jax.random.key(7)))
    up = np.mean(r > 1)
    assert abs(up - 0.25) < 5 * np.sqrt(0.25 * 0.75 / x.size), up


def test_seed_words_equal_the_cores():
    hi, lo = lj.random_bits(2**40 + 7, (3, 5), wide=True)
    w = lp.random_bits(2**40 + 7, (3, 5), wide=True)
    assert np.array_equal((np.asarray(hi).astype(np.uint64) << np.uint64(32))
                          | np.asarray(lo).astype(np.uint64), w)


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e8m0fnu", "bfloat16", "float32",
                                 "float64", "ue4m3", "int8", "float8_e5m2fnuz"])
def test_float64_inputs_with_x64(fmt):
    with jax.enable_x64(True):
        x = inputs(np.float64)
        for mode in MODES if fmt in ("float8_e4m3fn", "float64") else ("nearest_even", "down"):
            check(x, fmt, mode)
        check(np.nan_to_num(x), fmt, "stochastic", seed=2)
        rb = np.random.default_rng(1).integers(0, 2**63, x.shape, dtype=np.uint64) * np.uint64(2)
        check(np.nan_to_num(x), fmt, "stochastic", rbits=rb)
        check(np.nan_to_num(x), fmt, "stochastic", sr_bits=7, sr_variant="src", rbits=rb)


@settings(max_examples=25, deadline=None)
@given(fmt=float_formats(), mode=st.sampled_from(MODES + ["stochastic"]),
       seed=st.integers(0, 2**32 - 1))
def test_random_formats(fmt, mode, seed):
    with jax.enable_x64(True):
        x = inputs(np.float64, 500, seed)
        if not fmt.has_nan:
            x = np.nan_to_num(x)
        kw = dict(seed=seed) if mode == "stochastic" else {}
        same(lj.encode(x, fmt, mode, **kw), lp.encode(x, fmt, mode, **kw))
        same(lj.round(x, fmt, mode, **kw), lp.round(x, fmt, mode, **kw))


def test_vmap_decode_and_dtypes():
    x = inputs(np.float32, 64).reshape(8, 8)
    same(jax.vmap(lambda r: lj.round(r, "float8_e4m3fn"))(x), lp.round(x, "float8_e4m3fn"))
    codes = np.arange(256, dtype=np.uint8)
    same(lj.decode(codes, "float8_e4m3fn"), lp.decode(codes, "float8_e4m3fn"))
    same(lj.decode(np.arange(16), "float4_e2m1fn"), lp.decode(np.arange(16), "float4_e2m1fn"))
    assert lj.round(x, "bfloat16", dtype=jnp.bfloat16).dtype == jnp.bfloat16


def test_errors():
    x = np.float32([1.0, np.nan])
    with pytest.raises(ValueError, match="no NaN"):
        lj.round(x, "float4_e2m1fn", overflow="saturate")
    under_jit = jax.jit(lambda v: lj.encode(v, "float4_e2m1fn", overflow="saturate"))(x)
    assert np.asarray(under_jit).tolist() == [2, 15]
    with pytest.raises(ValueError, match="jax_enable_x64"):
        lj.round(x, "float8_e8m0fnu")
    with pytest.raises(TypeError, match="x must be"):
        lj.round(np.int32([1]), "float16")
    with pytest.raises(ValueError, match="exactly one source"):
        lj.round(x, "float16", "stochastic")
    with pytest.raises(NotImplementedError, match="table formats"):
        lj.round(x, "hifloat8")


def test_straight_through_gradient_and_gradient_quantisation():
    x = jnp.asarray(inputs(np.float32, 64)[8:])
    w = jnp.asarray(np.random.default_rng(0).standard_normal(x.shape).astype(np.float32))
    loss = lambda v, **kw: jnp.sum(lj.round(v, "float8_e4m3fn", **kw) * w)  # noqa: E731
    same(jax.jit(jax.grad(loss))(x), np.asarray(w))                         # ste: w itself
    same(jax.grad(lambda v: loss(v, grad="none"))(x), np.zeros(x.shape, np.float32))
    g = jax.grad(lambda v: loss(v, grad_fmt="float8_e5m2"))(x)
    same(g, lp.round(np.asarray(w), "float8_e5m2"))
    g = jax.grad(lambda v: loss(v, grad_fmt="float8_e5m2", grad_rounding="stochastic",
                                grad_kw=dict(seed=4)))(x)
    same(g, lp.round(np.asarray(w), "float8_e5m2", "stochastic", seed=4))
    xb = x.astype(jnp.bfloat16)
    gb = jax.grad(lambda v: jnp.sum(lj.round(v, "float8_e4m3fn").astype(jnp.float32)))(xb)
    assert gb.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="grad="):
        lj.round(x, "float16", grad="stochastic")


def test_portable_clz_equals_lax_clz():
    """lowprec_jax counts leading zeros through exact int-to-float conversion (Pallas' Triton
    backend cannot lower math.ctlz for a real GPU); the counts must be lax.clz's, eagerly and
    under jit: 0, all-ones, and every power of two with its neighbours (2^24, where the
    conversion stops being exact, included)."""
    from jax import lax
    from lowprec_jax._clz import clz
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for dt, W in ((np.uint32, 32), (np.uint64, 64)):
            x = (rng.integers(0, 2**63, 5000, dtype=np.uint64).astype(dt)
                 >> rng.integers(0, W, 5000).astype(dt))
            x[:3] = [0, 1, np.iinfo(dt).max]
            p = np.array([1 << k for k in range(W)], dtype=object)
            edges = np.array([v for q in p for v in (q - 1, q, q + 1) if v < 1 << W], dt)
            x = np.concatenate([x, edges])
            want = np.asarray(lax.clz(jnp.asarray(x)))
            for f in (clz, jax.jit(clz)):
                got = np.asarray(f(jnp.asarray(x)))
                assert got.dtype == want.dtype and np.array_equal(got, want)


def test_decode_refuses_out_of_range_codes_as_the_core():
    """Issue 21: a code past the format's range raises as lp.decode does; under jit, where
    nothing can raise, it decodes as NaN instead of wrapping to another code's value."""
    with pytest.raises(ValueError, match=r"code 16 is out of range for float4_e2m1fn: codes "
                                         r"are 0 .. 15 \(4 bits\)"):
        lj.decode(np.array([16, 3]), "float4_e2m1fn")
    got = np.asarray(jax.jit(lambda c: lj.decode(c, "float4_e2m1fn"))(np.array([16, 3, -1])))
    assert np.isnan(got[0]) and got[1] == 1.5 and np.isnan(got[2])
