"""lp.compare / lp.assert_bits_equal: mismatch counts, NaN handling and ulp distances checked
against distances counted on the sorted value list of each format (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from helpers import table


def test_report_by_hand():
    a = np.float32([1.0, 2.0, np.nan, -0.0, 3.0, np.nan])
    e = np.float32([1.0, np.nextafter(np.float32(2), np.float32(3)), 1.0, 0.0, 3.0, np.nan])
    r = lp.compare(a, e)
    assert (r.count, r.mismatches, r.nan_mismatches, r.max_ulp) == (6, 3, 1, 1)
    assert r.ulp_histogram == {0: 1, 1: 1}                 # -0 vs +0: 0 ulp, 2 vs 2+: 1 ulp
    assert [w["index"] for w in r.worst] == [(2,), (1,), (3,)]  # worst first: NaN, 1 ulp, -0
    w = r.worst[1]
    assert (w["actual_code"], w["expected_code"], w["diff"]) == ("0x40000000", "0x40000001",
                                                                 "-1/4194304")
    assert not r.ok and "3 bit mismatches" in str(r)
    with pytest.raises(AssertionError, match="at \\(1,\\): actual 2.0"):
        lp.assert_bits_equal(a, e)
    lp.assert_bits_equal(a[[0, 4, 5]], e[[0, 4, 5]])      # same NaN code: equal


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                 "float4_e2m1fn", "float8_e8m0fnu", "hifloat8",
                                 "mxint8_element"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_ulp_distance_is_the_count_of_values_between(fmt, data):
    if fmt == "hifloat8":                               # en-dtypes' values, not lowprec's
        import en_dtypes
        v = np.arange(256, dtype=np.uint8).view(en_dtypes.hifloat8).astype(np.float64)
        finite = sorted(set(float(x) for x in v[np.isfinite(v)]))
    else:
        finite = table(fmt).finite                      # sorted distinct finite values
    i = data.draw(st.lists(st.integers(0, len(finite) - 1), min_size=1, max_size=20))
    j = data.draw(st.lists(st.integers(0, len(finite) - 1), min_size=len(i),
                           max_size=len(i)))
    a = np.array([float(finite[k]) for k in i])
    e = np.array([float(finite[k]) for k in j])
    r = lp.compare(a, e, fmt)
    want = [abs(x - y) for x, y in zip(i, j) if x != y]
    assert r.mismatches == len(want)
    assert r.max_ulp == (max(want) if want else None)
    assert sum(r.ulp_histogram.values()) == len(want)


def test_compare_bad_input():
    with pytest.raises(ValueError, match="shape"):
        lp.compare(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="pass fmt="):
        lp.compare(np.zeros(3, np.float32), np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="expected holds 0.1 .* not a value of float8_e4m3fn"):
        lp.compare(np.array([0.125]), np.array([0.1]), "float8_e4m3fn")
