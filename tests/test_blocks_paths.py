"""The fused block kernels (lowprec/_blockfast.py) against the NumPy path of lp.quantize, which
tests/test_blocks.py checks against the rational oracle: codes, scales and fake-quantized
values, bit for bit, in every rounding mode and on every special case."""
import zlib

import ml_dtypes
import numpy as np
import pytest

import lowprec as lp
from conftest import bits


@pytest.mark.parametrize("preset,rounding", [
    (p, "nearest_even") for p in ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3",
                                  "mxint8", "mxfp8_e4m3_rceil", "bfp16"]] + [
    (p, m) for p in ["mxfp4", "nvfp4", "mxint8"]
    for m in ["nearest_even", "toward_zero", "up", "odd", "stochastic"]])
def test_fused_and_numpy_paths_agree(preset, rounding, monkeypatch):
    """The fused kernels against the NumPy path on data with every special case, in every
    mode: codes, scales and fake-quantized values."""
    monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 0)
    rng = np.random.default_rng(zlib.crc32(repr((preset, rounding)).encode()))
    x = (rng.standard_normal((64, 96)) * np.exp2(rng.integers(-130, 120, (64, 1)))).astype(
        np.float32)
    x[0, :32] = 0.0
    x[1, 5], x[2, 7], x[3, 9] = np.nan, np.inf, -np.inf
    x[4, :] = rng.standard_normal(96) * 1e-40                 # float32 subnormals
    x[5, 3] = -0.0
    x[6, :] = np.float32(3e38)
    x[7, :32] = [2.0**100, 1e-30, -1e-30, 2.0**-149] + [1.0] * 28   # scaled below 2^-126
    kw = dict(seed=77) if rounding == "stochastic" else {}
    variants = [kw] if rounding != "stochastic" else [
        kw, dict(rbits=rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)),
        dict(seed=5, sr_bits=3, sr_variant="src")]
    for kw in variants:
        got = lp.quantize(x, preset, rounding=rounding, **kw)
        got_v = lp.fake_quantize(x, preset, rounding=rounding, **kw)
        monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 1 << 62)
        want = lp.quantize(x, preset, rounding=rounding, **kw)
        want_v = lp.fake_quantize(x, preset, rounding=rounding, **kw)
        monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 0)
        assert np.array_equal(got.scale_codes, want.scale_codes)
        assert np.array_equal(got.codes, want.codes)
        assert bits(np.float32(got.tensor_scale)) == bits(np.float32(want.tensor_scale))
        assert np.array_equal(bits(got_v), bits(want_v))
        assert np.array_equal(bits(got_v), bits(want.dequantize()))
    xb = x.astype(ml_dtypes.bfloat16)
    assert np.array_equal(lp.quantize(xb, preset, rounding=rounding, **kw).codes,
                          lp.quantize(xb.astype(np.float32), preset, rounding=rounding,
                                      **kw).codes)


@pytest.mark.parametrize("preset,values", [("mxfp4", False), ("nvfp4", True)])
def test_specialised_kernels_on_a_large_input(preset, values, monkeypatch):
    """Inputs of at least 2^20 elements take kernels compiled with the parameters as
    constants; they give the NumPy path's bits. Each compile costs tens of seconds on a cold
    cache, so one kernel of each kind: MX codes, NVFP4 values (the codes and values variants
    differ only in where the same rounded result is stored)."""
    monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 0)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1024, 1024)) * np.exp2(rng.integers(-20, 20, (1024, 1)))).astype(
        np.float32)
    x[0, 3], x[1, 4] = np.nan, np.inf
    got = lp.fake_quantize(x, preset) if values else lp.quantize(x, preset)
    monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 1 << 62)
    want = lp.quantize(x, preset)
    if values:
        assert np.array_equal(bits(got), bits(want.dequantize()))
    else:
        assert np.array_equal(got.codes, want.codes)
        assert np.array_equal(got.scale_codes, want.scale_codes)


@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4", "mxint8"])
@pytest.mark.parametrize("shape,axis", [((48, 40), 0), ((3, 50, 7), 1), ((5, 70), -1)])
def test_other_axes_and_padding_take_the_fused_path_too(preset, shape, axis, monkeypatch):
    """Blocks along other axes and axes that need padding go through one contiguous copy into
    the fused kernels (deterministic rounding, and stochastic with rbits shaped like x); the
    results equal the NumPy path's."""
    rng = np.random.default_rng(zlib.crc32(repr((preset, shape, axis)).encode()))
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    x.reshape(-1)[::37] = 0.0
    rb = rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)
    for kw in (dict(), dict(rounding="up"), dict(rounding="stochastic", rbits=rb)):
        monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 0)
        got, got_v = lp.quantize(x, preset, axis, **kw), lp.fake_quantize(x, preset, axis, **kw)
        monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 1 << 62)
        want = lp.quantize(x, preset, axis, **kw)
        assert np.array_equal(got.codes, want.codes) and np.array_equal(got.scale_codes,
                                                                       want.scale_codes)
        assert got_v.shape == x.shape
        assert np.array_equal(bits(got_v), bits(want.dequantize()))


@pytest.mark.parametrize("preset,rounding,kw", [
    ("nvfp4", "stochastic", dict(sr_variant="te")), ("nvfp4_4over6", "nearest_even", {}),
    ("nvfp4_torchao", "stochastic", {}), ("mxfp4", "stochastic", dict(sr_bits=5)),
    ("mxfp8_e4m3", "nearest_even", {})])
@pytest.mark.parametrize("axis", [-1, 0])
def test_numpy_path_in_chunks_equals_one_pass(preset, rounding, kw, axis, monkeypatch):
    """The NumPy path encodes its blocks in chunks (bounded memory): chunks of 3 blocks, with
    the seeded words each chunk draws itself, give the bits of one pass and of rbits= the
    stream's words for the whole tensor (the documented meaning of seed=)."""
    monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 1 << 40)          # the NumPy path
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((48, 64)) * np.exp2(rng.integers(-20, 20, (48, 1)))).astype(
        np.float32)
    x[1, 5], x[7, 2] = np.nan, np.inf
    sr = dict(seed=11) if rounding == "stochastic" else {}
    runs = []
    for chunk in (3, 1 << 30):
        monkeypatch.setattr(lp.blocks, "CHUNK_BLOCKS", chunk)
        runs.append(lp.quantize(x, preset, axis, rounding, **kw, **sr))
    if sr:
        wide = kw.get("sr_bits", 32) > 32
        runs.append(lp.quantize(x, preset, axis, rounding, **kw,
                                rbits=lp.random_bits(11, x.shape, wide)))
    for bt in runs[1:]:
        assert np.array_equal(bt.codes, runs[0].codes)
        assert np.array_equal(bt.scale_codes, runs[0].scale_codes)
        assert bits(np.float32(bt.tensor_scale)) == bits(np.float32(runs[0].tensor_scale))
