"""``out=`` for ``lp.round`` and ``lp.encode``: the result lands in the caller's array, bit for
bit the oracle's, including in place (``out=x``); wrong arrays are refused with a clear error."""
import ml_dtypes
import numpy as np
import pytest

import lowprec as lp
import oracle
from conftest import bits
from helpers import all_bf16, oracle_floats, table

NAME = "float8_e4m3fn"


def _inputs():
    with np.errstate(invalid="ignore"):
        x = all_bf16().astype(np.float32)
    x = x[~np.isnan(x)]                                     # every finite and infinite value
    return x[: x.size // 6 * 6].reshape(-1, 6).copy()


def _want(x):
    codes = oracle.round_table_f64(x.astype(np.float64).ravel(), table(NAME), "nearest_even")
    return oracle_floats(codes, table(NAME), np.float32).reshape(x.shape)


def test_round_into_out_matches_the_oracle():
    x = _inputs()
    out = np.full_like(x, 7.0)
    res = lp.round(x, NAME, out=out)
    assert res is out
    assert (bits(out) == bits(_want(x))).all()


def test_round_in_place():
    x = _inputs()
    want = _want(x)
    res = lp.round(x, NAME, out=x)
    assert res is x
    assert (bits(x) == bits(want)).all()


def test_round_into_a_wider_out_and_into_ml_dtypes():
    x = _inputs()
    out64 = np.empty(x.shape, np.float64)
    lp.round(x, NAME, out=out64)
    assert (bits(out64) == bits(_want(x).astype(np.float64))).all()
    out8 = np.empty(x.shape, ml_dtypes.float8_e4m3fn)
    res = lp.round(x, NAME, dtype=ml_dtypes.float8_e4m3fn, out=out8)
    assert res.base is out8 or res is out8
    assert (out8.view(np.uint8) == _want(x).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)).all()


def test_encode_into_out():
    x = _inputs()
    out = np.zeros(x.shape, np.uint8)
    assert lp.encode(x, NAME, out=out) is out
    want = oracle.round_table_f64(x.astype(np.float64).ravel(), table(NAME), "nearest_even")
    assert (out.ravel().astype(np.int64) == want).all()


def test_bad_out_is_refused():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(TypeError, match="out must be a NumPy array"):
        lp.round(x, NAME, out=[0.0] * 12)
    with pytest.raises(ValueError, match="dtype float32 and shape \\(3, 4\\)"):
        lp.round(x, NAME, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="dtype must be"):
        lp.round(x, NAME, out=np.empty((3, 4), np.int32))
    with pytest.raises(ValueError, match="cannot hold every value of bfloat16"):
        lp.round(x, "bfloat16", out=np.empty((3, 4), np.float16))
    with pytest.raises(ValueError, match="C-contiguous"):
        lp.round(x, NAME, out=np.empty((4, 3), np.float32).T)
    big = np.zeros(13, np.float32)
    with pytest.raises(ValueError, match="overlaps x only partly"):
        lp.round(big[:12], NAME, out=big[1:])
    with pytest.raises(ValueError, match="must not share memory"):
        lp.encode(x, NAME, out=x.view(np.uint8).reshape(-1)[:12].reshape(3, 4))
