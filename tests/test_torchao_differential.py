"""lowprec against torchao 0.18 itself (CPU, pinned in requirements-lock.txt): MX quantization
with each of torchao's scale modes (FLOOR, RCEIL, CEIL, EVEN) for FP8 and FP4 elements, and
torchao's NVFP4 (per-tensor scale amax / 2688), bit for bit, packed FP4 bytes included (which
also checks lp.pack's nibble order)."""
import warnings

import zlib

import ml_dtypes
import numpy as np
import pytest

import lowprec as lp

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_mx
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, \
        per_tensor_amax_to_scale

ELEMS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
         "float4_e2m1fn": torch.float4_e2m1fn_x2}
MODES = {"floor": ScaleCalculationMode.FLOOR, "rceil": ScaleCalculationMode.RCEIL,
         "ceil": ScaleCalculationMode.CEIL, "even": ScaleCalculationMode.EVEN}


def _data(seed, dtype):
    """Blocks at magnitudes 2^-100 .. 2^100, an all-zero block, powers of two times the
    element max and values just below powers of two. No Inf, and no block whose scale is
    2^-127: there torchao 0.18's eager path departs from its own rules (see
    test_torchao_eager_quirks)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((48, 64)) * np.exp2(rng.integers(-100, 100, (48, 1)))
    x[0, :32] = 0.0
    x[2, :] = 448.0 * 2.0 ** rng.integers(-5, 5, 64)            # powers of two times max
    x[3, :] = np.nextafter(np.float32(8.0), np.float32(0))      # just below a power of two
    x[4, 1] = 3e38
    x = x.astype(np.float32)
    return x if dtype == "float32" else x.astype(ml_dtypes.bfloat16)


def _torch(x):
    if x.dtype == np.float32:
        return torch.from_numpy(x)
    return torch.from_numpy(x.view(np.uint16).astype(np.int16)).view(torch.bfloat16)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("elem", list(ELEMS))
def test_mx_matches_torchao(elem, mode, dtype):
    x = _data(zlib.crc32(repr((elem, mode, dtype)).encode()), dtype)
    scale, data = to_mx(_torch(x), ELEMS[elem], 32, MODES[mode])
    bt = lp.quantize(x, lp.BlockFormat(elem, scale_rule=mode))
    assert np.array_equal(bt.scale_codes, scale.view(torch.uint8).numpy())
    codes = bt.codes.reshape(x.shape)
    if elem == "float4_e2m1fn":
        assert np.array_equal(lp.pack(codes, 4), data.view(torch.uint8).numpy())
    else:
        assert np.array_equal(codes, data.view(torch.uint8).numpy())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nvfp4_torchao_matches_torchao(seed, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((32, 64)) * np.exp2(rng.integers(-10, 10, (32, 1)))).astype(
        np.float32)
    x[0, :16] = 0.0
    x[1, :16] *= 2.0**-20                                       # blocks under the 2^-6 clamp
    if dtype == "bfloat16":
        x = x.astype(ml_dtypes.bfloat16)
    tx = _torch(x)
    amax = tx.abs().max()
    scales, packed = nvfp4_quantize(tx, 16, per_tensor_amax_to_scale(amax))
    bt = lp.quantize(x, "nvfp4_torchao")
    assert np.array_equal(bt.scale_codes.reshape(-1),
                          scales.view(torch.uint8).numpy().reshape(-1))
    assert np.array_equal(lp.pack(bt.codes.reshape(x.shape), 4), packed.numpy())
    p = per_tensor_amax_to_scale(amax).numpy()
    assert np.float32(bt.tensor_scale).view(np.uint32) == p.view(np.uint32)


def test_torchao_eager_quirks():
    """Where torchao 0.18's eager to_mx departs from its own golden cases
    (tests/data/torchao_mxfp8_cases.json) and from lowprec, measured:
    1. scale code 0 (2^-127): elements are divided by 2^-126 (F32_MIN_NORMAL clamp), so the
       stored bytes decode to half the input;
    2. FLOOR with an Inf in the block: the scale comes from Inf's exponent bits (code 247 for
       E4M3) instead of NaN, and Inf saturates to 448."""
    x = np.full((2, 32), 2.0**-126, np.float32)        # golden "smallest_normal": 0x40 (2.0)
    x[1] = 1.0
    x[1, 0] = np.inf
    scale, data = to_mx(torch.from_numpy(x), torch.float8_e4m3fn, 32)
    s, d = scale.view(torch.uint8).numpy(), data.view(torch.uint8).numpy()
    bt = lp.quantize(x, "mxfp8_e4m3")
    assert s[0, 0] == bt.scale_codes[0, 0] == 0
    assert d[0, 0] == 0x38 and bt.codes[0, 0, 0] == 0x40       # 1.0 vs 2.0 (x 2^-127)
    assert s[1, 0] == 247 and d[1, 0] == 0x7E                   # torchao eager
    assert bt.scale_codes[1, 0] == 0xFF and bt.codes[1, 0, 0] == 0x7F   # golden / lowprec


def test_nvfp4_torchao_with_an_inf_input():
    """An Inf makes torchao's tensor scale Inf (torch.max keeps it; only NaN poisons the amax):
    every finite block then gets the clamped scale 2^-6 and zero elements, as torchao gives;
    the Inf block's scale is NaN in both (torchao's NaN carries x86's sign, lowprec's code is
    the format's positive NaN, and its elements are 0, as for every NaN block)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 32)).astype(np.float32)
    x[1, 3] = np.inf
    tx = torch.from_numpy(x)
    scales, packed = nvfp4_quantize(tx, 16, per_tensor_amax_to_scale(tx.abs().max()))
    s = scales.view(torch.uint8).numpy().reshape(-1)
    bt = lp.quantize(x, "nvfp4_torchao")
    finite = np.array([True, True, False, True])
    assert np.array_equal(bt.scale_codes.reshape(-1)[finite], s[finite])
    assert (s[~finite] & 0x7F) == 0x7F and bt.scale_codes.reshape(-1)[2] == 0x7F
    ours = lp.pack(bt.codes.reshape(x.shape), 4).reshape(2, 2, 8)     # (row, block, bytes)
    theirs = packed.view(torch.uint8).numpy().reshape(2, 2, 8)
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1, 1], theirs[1, 1])
    assert np.isinf(bt.tensor_scale)
