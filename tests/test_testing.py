"""lowprec.testing: the strategies produce what they promise (checked against the oracle's
tables, which share no code with lowprec)."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from lowprec import testing as lpt
from helpers import table

NAMED = ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float8_e8m0fnu", "mxint8_element"]


@pytest.mark.parametrize("name", NAMED)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_values_are_values_of_the_format(name, data):
    t = table(name)
    v = data.draw(lpt.values(name))
    assert Fraction(v) in set(t.finite)
    s = data.draw(lpt.special_values(name))
    assert np.isnan(s) or np.isinf(s) or Fraction(s) in set(t.finite)


@settings(max_examples=40, deadline=None)
@given(lpt.float_formats(), st.data())
def test_float_formats_and_their_values(fmt, data):
    assert isinstance(fmt, lp.FloatFormat) and fmt.exp_bits <= 5 and fmt.man_bits <= 4
    v = data.draw(lpt.values(fmt))
    assert v in fmt.values()                                # exact membership, float64 values


@settings(max_examples=20, deadline=None)
@given(lpt.blocks("nvfp4", nonfinite=True))
def test_blocks_shape_and_dtype(x):
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 16
    lpt.assert_bits_equal(lp.fake_quantize(x, "nvfp4"), lp.quantize(x, "nvfp4").dequantize())


def test_exports():
    assert lpt.compare is lp.compare and lpt.assert_bits_equal is lp.assert_bits_equal
