"""lowprec_torch.quantize / dequantize / fake_quantize give the core's codes, scale codes, tensor
scale and values through the torch path and the core path (the core itself is checked against
the rational oracle); gradients and half-precision inputs."""
import re

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lowprec as lp
from helpers import block_inputs as data
import lowprec_torch as lt

PRESETS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8",
           "mxfp8_e4m3_rceil", "mxfp8_e5m2_rceil", "mxfp4_rceil", "bfp16", "nvfp4", "nvfp4_2d", "nvfp4_torchao",
           "nvfp4_4over6"]




def ubits(a):
    a = lt.to_numpy(a) if isinstance(a, torch.Tensor) else np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


@settings(max_examples=40, deadline=None)
@given(preset=st.sampled_from(PRESETS), scale=st.sampled_from([1.0, 2.0**-120, 2.0**100]),
       mode=st.sampled_from(["nearest_even", "toward_zero", "up", "odd", "stochastic"]),
       shape_axis=st.sampled_from([((4, 64), -1), ((64, 3), 0), ((2, 96, 2), 1), ((3, 40), -1)]),
       seed=st.integers(0, 2**32 - 1), specials=st.booleans(),
       backend=st.sampled_from(["torch", "core"]))
def test_codes_scales_and_values_equal_the_core(preset, scale, mode, shape_axis, seed,
                                                specials, backend):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        x = (data(rng, shape, specials) * np.float32(scale)).astype(np.float32)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    xt = torch.from_numpy(x)
    try:
        want = lp.quantize(x, preset, axis, mode, **kw)
    except ValueError as e:                       # e.g. an axis the preset cannot pad
        with pytest.raises(ValueError, match=re.escape(str(e).split(";")[0][:30])):
            lt.quantize(xt, preset, axis, mode, backend=backend, **kw)
        return
    q = lt.quantize(xt, preset, axis, mode, backend=backend, **kw)
    assert np.array_equal(q.codes.numpy(), want.codes)
    assert np.array_equal(q.scale_codes.numpy(), want.scale_codes)
    assert np.float32(q.tensor_scale).view(np.uint32) == want.tensor_scale.view(np.uint32)
    core = q.to_core()
    assert np.array_equal(core.codes, want.codes) and core.shape == want.shape
    assert np.array_equal(ubits(q.dequantize()), ubits(want.dequantize()))
    got = lt.fake_quantize(xt, preset, axis, mode, backend=backend, **kw)
    assert np.array_equal(ubits(got), ubits(lp.fake_quantize(x, preset, axis, mode, **kw)))


@pytest.mark.parametrize("dt", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4", "mxfp8_e5m2"])
def test_half_inputs_rbits_and_generator(dt, preset):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 64)) * 1e-3).astype(dt)
    x[0, :3] = [np.nan, 1e-7, -0.0]
    xt = torch.from_numpy(x.view(np.int16)).view(
        torch.float16 if dt == np.float16 else torch.bfloat16)
    rb = rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    words = torch.randint(0, 2**32, x.shape, generator=torch.Generator().manual_seed(9),
                          dtype=torch.int64).numpy().astype(np.uint32)
    cases = [(dict(), dict()),
             (dict(rounding="stochastic", rbits=rb, sr_bits=4, sr_variant="src"),) * 2,
             (dict(rounding="stochastic", generator=torch.Generator().manual_seed(9)),
              dict(rounding="stochastic", rbits=words))]
    for b in ("torch", "core"):
        for kw_t, kw_c in cases:
            if "generator" in kw_t:
                kw_t = dict(kw_t, generator=torch.Generator().manual_seed(9))
            want = lp.fake_quantize(x, preset, **kw_c)
            got = lt.fake_quantize(xt, preset, backend=b, **kw_t)
            assert got.dtype == xt.dtype
            assert np.array_equal(ubits(got), ubits(want)), (b, kw_c)


def test_nvfp4_tensor_amax_and_dequantize_dtypes():
    x = np.random.default_rng(3).standard_normal((4, 32)).astype(np.float32)
    x[3, 5:9] = [np.inf, -np.inf, 1e-40, -0.0]
    xt = torch.from_numpy(x)
    for amax in (1.0, 100.0, 0.0, np.inf, None):
        want = lp.quantize(x, "nvfp4", tensor_amax=amax)
        q = lt.quantize(xt, "nvfp4", tensor_amax=amax, backend="torch")
        assert np.array_equal(q.codes.numpy(), want.codes)
        assert np.array_equal(q.scale_codes.numpy(), want.scale_codes)
        for tdt, ndt in ((torch.float16, np.float16), (torch.bfloat16, ml_dtypes.bfloat16),
                         (torch.float64, np.float64)):
            assert np.array_equal(ubits(q.dequantize(tdt)), ubits(want.dequantize(ndt)))


def test_gradients():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((4, 64)).astype(np.float32)).requires_grad_(True)
    w = rng.standard_normal((4, 64)).astype(np.float32)
    (lt.fake_quantize(x, "mxfp4") * torch.from_numpy(w)).sum().backward()
    assert np.array_equal(ubits(x.grad), ubits(w))
    x.grad = None
    (lt.fake_quantize(x, "mxfp4", grad_fmt="mxfp8_e5m2", grad_rounding="stochastic",
                      grad_kw=dict(seed=5)) * torch.from_numpy(w)).sum().backward()
    assert np.array_equal(ubits(x.grad), ubits(lp.fake_quantize(w, "mxfp8_e5m2", -1,
                                                                  "stochastic", seed=5)))
    x.grad = None
    lt.fake_quantize(x, "nvfp4", grad="none").sum().backward()
    assert not x.grad.any()


def test_bad_input():
    x = torch.ones(2, 30)
    with pytest.raises(ValueError, match="not a multiple"):
        lt.quantize(x, lp.BlockFormat("float8_e4m3fn", 32, pad=False), backend="torch")
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        lt.quantize(x, "mxfp4", axis=2)
    with pytest.raises(ValueError, match="tensor_amax"):
        lt.quantize(x, "mxfp4", tensor_amax=1.0, backend="torch")
    with pytest.raises(ValueError, match="one of seed=, rbits=, generator="):
        lt.quantize(x, "mxfp4", -1, "stochastic", seed=1, rbits=np.zeros(1, np.uint32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lt.fake_quantize(np.ones((2, 32), np.float32), "mxfp4")


def test_dequantize_without_the_tensor_scale_equals_the_core():
    """``dequantize(tensor_scale=False)`` (NVFP4 operands as GEMMs take them) gives the core's
    bits, and a non-bool is refused as the core refuses it."""
    x = np.random.default_rng(8).standard_normal((4, 32)).astype(np.float32) * 300
    want = lp.quantize(x, "nvfp4")
    q = lt.quantize(torch.from_numpy(x), "nvfp4", backend="torch")
    assert np.array_equal(ubits(q.dequantize(torch.float32, tensor_scale=False)),
                          ubits(want.dequantize(np.float32, tensor_scale=False)))
    with pytest.raises(TypeError, match="tensor_scale"):
        q.dequantize(torch.float32, tensor_scale=1)
