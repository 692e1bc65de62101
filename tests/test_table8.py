"""The table path (lowprec/_table8.py: float32 arrays of at least 2^16 elements into float
formats of at most 8 bits and 6 fraction bits) gives the general kernel's codes and values
(the general kernel is checked against the oracle in test_exhaustive.py) for every top-16-bit
pattern of float32 with low halves 0, 1, 0x8000, 0xFFFF and random: the claim that only
'low half nonzero' matters, tested on every pattern that could break it."""
import numpy as np
import pytest

import lowprec as lp
from lowprec import _kernels as K, _table8

MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd"]


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    hi = np.repeat(np.arange(1 << 16, dtype=np.uint32), 5) << np.uint32(16)
    lo = rng.integers(0, 1 << 16, hi.size).astype(np.uint32)
    lo[0::5], lo[1::5], lo[2::5], lo[3::5] = 0, 1, 0x8000, 0xFFFF
    return (hi | lo).view(np.float32)


@pytest.mark.parametrize("name,overflow", [
    ("float8_e4m3fn", None), ("float8_e4m3fn", "saturate"), ("float8_e5m2", "inf"),
    ("float8_e5m2fnuz", None), ("float6_e2m3fn", None), ("float4_e2m1fn", "saturate"),
    ("ue4m3", None), ("float8_e3m4", "nan"), ("binary8p3se", None)])
def test_table_path_equals_the_general_kernel(x, name, overflow):
    fmt = lp.format(name)
    xs = x if fmt.has_nan or overflow is None else np.where(np.isnan(x), np.float32(1), x)
    xb = xs.view(np.uint32)
    for mode in MODES:
        P = K.params(lp.plan(fmt, mode, overflow))
        assert _table8.applies(fmt, P)
        ref_c = np.empty(xb.size, np.int64)
        ref_v = np.empty(xb.size, np.int64)
        errs = np.zeros(1, np.int64)
        none = np.zeros(1, np.uint64)
        K.round_array(xb, P, 0, none, np.uint64(0), 0, True, ref_c, errs)
        K.round_array(xb, P, 0, none, np.uint64(0), 0, False, ref_v, errs)
        assert np.array_equal(lp.encode(xs, fmt, mode, overflow).astype(np.int64), ref_c)
        got = lp.round(xs, fmt, mode, overflow, dtype=np.float32)
        assert np.array_equal(got.view(np.uint32), ref_v.astype(np.uint32))


def test_formats_outside_the_claim_are_not_tabled():
    for name in ("float8_e8m0fnu", "bfloat16", "int8", "hifloat8"):
        fmt = lp.format(name)
        if not isinstance(fmt, lp.FloatFormat):
            continue
        P = K.params(lp.plan(fmt, "nearest_even", None))
        assert not _table8.applies(fmt, P)


def test_nan_into_a_format_without_nan_still_raises():
    x = np.zeros(1 << 17, np.float32)
    x[70000] = np.nan
    with pytest.raises(ValueError, match="flat index 70000"):
        lp.encode(x, "float4_e2m1fn", overflow="saturate")
