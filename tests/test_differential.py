"""Differential checks: ml_dtypes casts and en-dtypes (HiFloat8)."""
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import lowprec as lp
import oracle
from conftest import bits
from helpers import ML_DTYPES, all_bf16, all_f16, table


def _f32_inputs(n=1_000_000):
    rng = np.random.default_rng(1234)
    rand = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1.17e-38,
                         3.4e38, -3.4e38], dtype=np.float32)
    return np.concatenate([rand, specials])


def _ml(x, name):
    with np.errstate(all="ignore"):
        y = x.astype(getattr(ml_dtypes, name))
    return y.view(np.uint8)


@pytest.mark.parametrize("name", ML_DTYPES)
def test_encode_equals_ml_dtypes_astype(name):
    for x in (all_f16(), all_bf16(), _f32_inputs()):
        want = _ml(x, name)
        got = lp.encode(x, name)
        bad = got != want
        if name == "float8_e8m0fnu":
            # ml_dtypes rounds float32 subnormals in (2^-127, 2^-126) up to 2^-126; the nearest
            # value is 2^-127 below 1.5 * 2^-127. Only there do we differ, and the oracle agrees
            # with us.
            x64 = x.astype(np.float64)
            zone = (x64 > 2.0**-127) & (x64 < 2.0**-126)
            assert not (bad & ~zone).any()
            want_o = oracle.round_table_f64(x64[zone], table(name), "nearest_even")
            assert (got[zone] == want_o).all()
        else:
            assert not bad.any(), f"{int(bad.sum())} codes differ, first x={x[bad][0]!r}"


@pytest.mark.parametrize("name", ML_DTYPES)
def test_round_equals_ml_dtypes_round_trip(name):
    x = _f32_inputs(200_000)
    with np.errstate(all="ignore"):
        want = x.astype(getattr(ml_dtypes, name)).astype(np.float32)
    got = lp.round(x, name)
    ok = ~((x > 2.0**-127) & (x < 2.0**-126)) if name == "float8_e8m0fnu" else slice(None)
    assert (bits(got)[ok] == bits(want)[ok]).all()


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_float16_and_bfloat16_targets_match_numpy_and_ml_dtypes(name):
    """NaN payloads aside (lowprec writes one quiet NaN; NumPy/ml_dtypes keep payload bits),
    float32 -> float16/bfloat16 equals NumPy's and ml_dtypes' casts."""
    x = _f32_inputs()
    dt = np.float16 if name == "float16" else ml_dtypes.bfloat16
    with np.errstate(all="ignore"):
        want = x.astype(dt).view(np.uint16)
    got = lp.encode(x, name)
    nan = np.isnan(x)
    assert (got[~nan] == want[~nan]).all()
    assert (lp.decode(got[nan], name, dtype=np.float32) != lp.decode(got[nan], name,
                                                                      dtype=np.float32)).all()


def test_float64_inputs_round_once_where_ml_dtypes_rounds_twice():
    """ml_dtypes converts float64 -> float8/bfloat16 through float32 (double rounding).
    lowprec rounds once; the exact oracle decides. On float32-exact inputs the two agree."""
    x = np.array([1 + 2**-4 + 2**-40, 1 + 2**-8 + 2**-40])
    got_e4 = lp.encode(x[:1], "float8_e4m3fn")
    got_bf = lp.encode(x[1:], "bfloat16")
    assert int(got_e4[0]) == oracle.round_exact(Fraction(x[0]), table("float8_e4m3fn"),
                                                "nearest_even") == 0x39           # 1.125
    assert int(_ml(x[:1], "float8_e4m3fn")[0]) == 0x38                            # ml_dtypes: 1.0
    assert int(got_bf[0]) == oracle.round_exact(Fraction(x[1]), table("bfloat16"),
                                                "nearest_even") == 0x3F81
    assert int(x[1:].astype(ml_dtypes.bfloat16).view(np.uint16)[0]) == 0x3F80
    f32 = _f32_inputs(100_000).astype(np.float64)
    for name in ML_DTYPES:
        ok = ~((f32 > 2.0**-127) & (f32 < 2.0**-126))
        assert (lp.encode(f32, name)[ok] == _ml(f32.astype(np.float32), name)[ok]).all()


def test_hifloat8_values_match_en_dtypes():
    import en_dtypes
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(en_dtypes.hifloat8).astype(np.float64)
    got = lp.decode(codes, "hifloat8", dtype=np.float64)
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all()
    assert (bits(got[~nan]) == bits(want[~nan])).all()


@pytest.mark.parametrize("small", [True, False])
def test_hifloat8_rounds_ties_away_by_default_as_en_dtypes(small, monkeypatch):
    """rounding=None is HiFloat8's own rounding, ties away from zero (arXiv:2409.16626; Huawei's
    en_dtypes casts so): every midpoint of neighbouring values and a sweep of float32 inputs,
    within the finite range, on the small-array path and the compiled one."""
    import en_dtypes
    from lowprec import cast
    if not small:
        monkeypatch.setattr(cast, "SMALL", 0)
    v = lp.format("hifloat8").values()
    mids = ((v[1:] + v[:-1]) / 2).astype(np.float32)          # exact: <= 5 significant bits
    sweep = np.arange(0, 1 << 16, dtype=np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
    x = np.concatenate([mids, sweep])
    x = x[np.isfinite(x) & (np.abs(x) <= lp.format("hifloat8").max)]
    want = x.astype(en_dtypes.hifloat8).astype(np.float64)
    got = lp.round(x, "hifloat8", dtype=np.float64)
    assert (bits(got) == bits(want)).all()
    assert (lp.round(mids, "hifloat8", "nearest_even") != lp.round(mids, "hifloat8")).sum() \
        == len(mids) // 2                                     # half the ties differ from RNE
    assert lp.plan("hifloat8").mode == "nearest_away" and lp.plan("e4m3").mode == "nearest_even"


def test_hifloat8_properties_match_en_dtypes_finfo():
    import en_dtypes
    fi = en_dtypes.finfo(en_dtypes.hifloat8)
    f = lp.format("hifloat8")
    assert (f.max, f.min_normal, f.min_subnormal, f.eps) == (
        float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal), float(fi.eps))


def test_finfo_properties_match_ml_dtypes():
    for name in ["float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz",
                 "float8_e4m3b11fnuz", "float8_e4m3", "float8_e3m4", "float6_e3m2fn",
                 "float6_e2m3fn", "float4_e2m1fn", "float8_e8m0fnu", "bfloat16"]:
        fi, f = ml_dtypes.finfo(getattr(ml_dtypes, name)), lp.format(name)
        got = (f.bits, f.max, f.min_normal, f.min_subnormal, f.eps)
        want = (fi.bits, float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal),
                float(fi.eps))
        assert got == want, name


def test_hifloat8_rounding_matches_en_dtypes():
    """en-dtypes rounds ties away from zero; so does lowprec with rounding='nearest_away'."""
    import en_dtypes
    for x in (all_f16(), all_bf16(), _f32_inputs(300_000)):
        with np.errstate(all="ignore"):
            want = x.astype(np.float32).astype(en_dtypes.hifloat8).view(np.uint8)
        got = lp.encode(x, "hifloat8", "nearest_away")
        assert (got == want).all(), x[got != want][:5]


@pytest.mark.parametrize("mode", oracle.MODES)
def test_hifloat8_all_modes_against_the_oracle(mode):
    import en_dtypes
    codes = np.arange(256, dtype=np.uint8)
    vals = codes.view(en_dtypes.hifloat8).astype(np.float64)
    t = oracle.table_from_values(
        {int(c): ("nan" if np.isnan(v) else "inf" if v == np.inf else "-inf" if v == -np.inf
                  else Fraction(float(v))) for c, v in zip(codes, vals)}, 8,
        virtual_hi=Fraction(3 * 2**14))
    x = all_f16().astype(np.float32)
    with np.errstate(invalid="ignore"):
        want = oracle.round_table_f64(x.astype(np.float64), t, mode)
    got = lp.encode(x, "hifloat8", mode)
    assert (got.astype(np.int64) == want).all()
