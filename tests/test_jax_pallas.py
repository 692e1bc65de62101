"""lowprec_jax.pallas kernels: the core's bits in interpret mode on random shapes, formats,
modes and special values; and each kernel lowers for a CUDA GPU (Pallas' Triton backend), so
code only the interpreter accepts is caught here."""
import os

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from lowprec_jax import blocks as jb
from lowprec_jax import pallas as lpp

# the interpreter on the CPU; natively on the GPU under LOWPREC_TEST_DEVICE=cuda (conftest.py)
INTERPRET = os.environ.get("LOWPREC_TEST_DEVICE", "cpu") != "cuda"
U = {1: np.uint8, 2: np.uint16, 4: np.uint32}
FORMATS = ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float6_e2m3fn", "bfloat16",
           "float16", "int8", "float8_e4m3fnuz"]
MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd", "stochastic"]


@settings(max_examples=20, deadline=None)
@given(fmt=st.sampled_from(FORMATS), mode=st.sampled_from(MODES),
       shape=st.sampled_from([(7,), (1024,), (3, 700), (2, 3, 5)]),
       seed=st.integers(0, 2**32 - 1), specials=st.booleans())
def test_pallas_round_and_encode_equal_the_core(fmt, mode, shape, seed, specials):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-30, 30, shape))).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        flat[: min(6, flat.size)] = [np.nan, -np.inf, np.inf, -0.0, 1e-45, 3e38][:flat.size]
    if not lp.format(fmt).has_nan:
        x = np.nan_to_num(x)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    got = np.asarray(lpp.encode(x, fmt, mode, **kw, interpret=INTERPRET))
    assert np.array_equal(got, lp.encode(x, fmt, mode, **kw))
    v = np.asarray(lpp.round(x, fmt, mode, **kw, interpret=INTERPRET))
    w = lp.round(x, fmt, mode, **kw)
    assert v.dtype == w.dtype and np.array_equal(v.view(U[v.itemsize]), w.view(U[w.itemsize]))


def test_pallas_rbits():
    x = np.random.default_rng(1).standard_normal(2000).astype(np.float32)
    rb = np.random.default_rng(2).integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    for variant in ("srff", "srf", "src", "sr_odd", "sr_nearest_odd"):
        kw = dict(sr_bits=6, sr_variant=variant, rbits=rb)
        assert np.array_equal(np.asarray(lpp.encode(x, "float8_e4m3fn", "stochastic", **kw, interpret=INTERPRET)),
                              lp.encode(x, "float8_e4m3fn", "stochastic", **kw))


@pytest.mark.parametrize("kw", [dict(), dict(rounding="toward_zero", overflow="saturate"),
                                dict(rounding="stochastic", seed=3),
                                dict(rounding="stochastic", sr_bits=4, sr_variant="src",
                                     rbits=np.zeros(4096, np.uint32))])
@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float4_e2m1fn", "int8"])
def test_kernels_lower_for_cuda(fmt, kw):
    for fn in (lpp.encode, lpp.round):
        f = lambda v, fn=fn: fn(v, fmt, interpret=False, **kw)  # noqa: E731
        low = jax.jit(f).trace(jax.ShapeDtypeStruct((4096,), np.float32)).lower(
            lowering_platforms=("cuda",))
        assert "tt.func" in low.as_text() or "triton" in low.as_text().lower()


def test_errors():
    with pytest.raises(ValueError, match="float32 work type"):
        lpp.round(np.float32([1.0]), "float8_e8m0fnu")


@settings(max_examples=10, deadline=None)
@given(preset=st.sampled_from(["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp4", "mxint8",
                               "mxfp8_e4m3_rceil", "bfp16", "nvfp4", "nvfp4_2d",
                               "nvfp4_torchao"]),
       mode=st.sampled_from(["nearest_even", "toward_zero", "up", "stochastic"]),
       shape_axis=st.sampled_from([((5, 64), -1), ((96, 3), 0), ((2, 64, 3), 1),
                                   ((3, 20, 40), -1)]),
       seed=st.integers(0, 2**32 - 1))
def test_pallas_fake_quantize_equals_the_core(preset, mode, shape_axis, seed):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-40, 40, shape))).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, np.inf, -0.0]
    kw = dict(seed=seed) if mode == "stochastic" else {}
    if preset == "nvfp4_2d":
        axis = -1
    try:
        want = lp.fake_quantize(x, preset, axis, mode, **kw)
    except ValueError as e:                     # torchao's rule does not pad: both refuse
        with pytest.raises(ValueError, match=str(e)[:20]):
            lpp.fake_quantize(x, preset, axis, mode, **kw, interpret=INTERPRET)
        return
    got = np.asarray(lpp.fake_quantize(x, preset, axis, mode, **kw, interpret=INTERPRET))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("preset", ["mxfp8_e4m3", "mxfp4", "mxfp8_e5m2_rceil", "nvfp4",
                                    "nvfp4_torchao"])
def test_block_kernel_lowers_for_cuda(preset):
    for kw in (dict(), dict(rounding="stochastic", seed=1)):
        f = lambda v: lpp.fake_quantize(v, preset, interpret=False, **kw)  # noqa: E731
        low = jax.jit(f).trace(jax.ShapeDtypeStruct((64, 128), np.float32)).lower(
            lowering_platforms=("cuda",))
        assert "triton" in low.as_text().lower() or "tt.func" in low.as_text()


# ---- the quantized matmul kernel --------------------------------------------------------------

MM_PAIRS = [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e4m3"), ("mxfp4", "mxfp4"),
            ("mxfp6_e3m2", "mxfp4"), ("mxfp6_e2m3", "mxfp6_e2m3")]


def _mm_operands(rng, pair, batch, M, K, N, specials):
    A = (rng.standard_normal(batch + (M, K)) * np.exp2(rng.integers(-30, 30, (M, 1)))
         ).astype(np.float32)
    B = (rng.standard_normal((K, N)) * np.exp2(rng.integers(-30, 30, (1, N)))).astype(
        np.float32)
    if specials:
        A.reshape(-1)[rng.integers(0, A.size, 2)] = rng.choice([np.nan, np.inf, -np.inf], 2)
        B[:, 0] = -0.0
        A[..., -1, :] = 0.0
    return jb.quantize(A, pair[0]), jb.quantize(B, pair[1], axis=-2)


@settings(max_examples=4, deadline=None)
@given(pair=st.sampled_from(MM_PAIRS), model=st.sampled_from(["exact", "b200-mxf8f6f4",
                                                              "nearest16"]),
       batch=st.sampled_from([(), (2,)]), MKN=st.sampled_from([(5, 64, 3), (17, 40, 18)]),
       specials=st.booleans(), with_c=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_pallas_matmul_equals_the_core(pair, model, batch, MKN, specials, with_c, seed):
    """MX operands through the exact-per-block model, the B200 block-scaled preset and an
    unaligned nearest-term fused adder, against lp.matmul on the same codes."""
    rng = np.random.default_rng(seed)
    qa, qb = _mm_operands(rng, pair, batch, *MKN, specials)
    ins = (qa.fmt.elem, qb.fmt.elem)
    if model == "exact":
        try:
            acc = lp.exact_per_block(*ins)
        except ValueError:                     # E5M2 products span too many bits
            return
    elif model == "nearest16":
        acc = lp.Accumulator("float16", "nearest_even", fused=lp.FusedAdder(16, 20, False,
                             "nearest"), input_formats=ins, addend_format="float16")
    else:
        acc = lp.hardware.preset(model, inputs=ins)
    cf = acc.addend_format or acc.fmt
    c = lp.round(rng.standard_normal(batch + (MKN[0], MKN[2])), cf, dtype=np.float32) \
        if with_c else None
    want = lp.matmul(qa.to_core(), qb.to_core(), acc, c)
    with jax.enable_x64(True):
        got = np.asarray(lpp.matmul(qa, qb, acc, c, interpret=INTERPRET))
    assert got.dtype == want.dtype and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_pallas_matmul_on_float_operands_and_what_it_refuses():
    rng = np.random.default_rng(4)
    A = lp.round(rng.standard_normal((3, 70)), "float8_e4m3fn", dtype=np.float32)
    B = lp.round(rng.standard_normal((70, 20)), "float8_e5m2", dtype=np.float32)
    for name in ("h100-fp8", "b200-fp8", "b200-fp8-tcgen05"):
        acc = lp.hardware.preset(name, inputs=("float8_e4m3fn", "float8_e5m2"))
        want = lp.matmul(A, B, acc)
        with jax.enable_x64(True):
            got = np.asarray(lpp.matmul(A, B, acc, interpret=INTERPRET))
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name
    with jax.enable_x64(True):
        for acc in ("fp32-sequential", "deepseek-v3-fp8"):
            with pytest.raises(NotImplementedError, match="Pallas matmul"):
                lpp.matmul(A, B, acc, interpret=INTERPRET)
        q = jb.quantize(A, "nvfp4")
        with pytest.raises(NotImplementedError, match="NVFP4"):
            lpp.matmul(q, q, "b200-mxf8f6f4")
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        lpp.matmul(A, B, "h100-fp8")


@pytest.mark.parametrize("name", ["mi300-fp16", "mi300-fp8", "mi300-xf32"])
def test_pallas_matmul_floored_join(name):
    """The AMD CDNA3 floored join (FusedAdder sum_bits) through the Pallas kernel."""
    acc = lp.hardware.preset(name)
    fa, fb = acc.input_formats
    rng = np.random.default_rng(7)
    A = lp.round(rng.standard_normal((3, 70)) * 4, fa, overflow="saturate", dtype=np.float32)
    B = lp.round(rng.standard_normal((70, 20)), fb, overflow="saturate", dtype=np.float32)
    c = lp.round(rng.standard_normal((3, 20)) * 2.0 ** rng.integers(-30, 10, (3, 20)),
                 "float32", dtype=np.float32)
    want = lp.matmul(A, B, acc, c)
    with jax.enable_x64(True):
        got = np.asarray(lpp.matmul(A, B, acc, c, interpret=INTERPRET))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


@pytest.mark.parametrize("model", ["exact", "b200-mxf8f6f4"])
def test_matmul_kernel_lowers_for_cuda(model):
    rng = np.random.default_rng(0)
    qa = jb.quantize(rng.standard_normal((20, 64)).astype(np.float32), "mxfp8_e4m3")
    qb = jb.quantize(rng.standard_normal((64, 18)).astype(np.float32), "mxfp8_e4m3", axis=-2)
    acc = lp.exact_per_block(qa.fmt.elem, qb.fmt.elem) if model == "exact" else model
    with jax.enable_x64(True):
        low = jax.jit(lambda a, b: lpp.matmul(a, b, acc, interpret=False)).trace(qa, qb).lower(
            lowering_platforms=("cuda",))
        assert "triton" in low.as_text().lower()


def test_floored_join_kernel_lowers_for_cuda():
    rng = np.random.default_rng(1)
    A = lp.round(rng.standard_normal((20, 64)), "float8_e4m3fnuz", dtype=np.float32)
    with jax.enable_x64(True):
        low = jax.jit(lambda a, b: lpp.matmul(a, b, "mi300-fp8", interpret=False)).trace(
            A, A.T).lower(lowering_platforms=("cuda",))
        assert "triton" in low.as_text().lower()
