"""Hypothesis properties on arbitrary formats, plus the rational oracle on small random formats."""
from fractions import Fraction

import numpy as np
from hypothesis import assume, given, strategies as st

import lowprec as lp
import oracle
from conftest import bits

CONVENTIONS = [dict(inf=True, nan="ieee"), dict(inf=False, nan="max_code"),
               dict(inf=False, nan="neg_zero"), dict(inf=False, nan=None),
               dict(inf="max_code", nan="neg_zero")]


@st.composite
def formats(draw, max_exp=11, max_man=23):
    e = draw(st.integers(1, max_exp))
    m = draw(st.integers(0, max_man))
    conv = draw(st.sampled_from(CONVENTIONS))
    if conv["nan"] == "ieee" and m == 0:
        conv = dict(inf=False, nan="max_code")
    base = 2 ** (e - 1) - 1
    bias = draw(st.integers(base - min(base + 5, 8), base + 8))
    sub = draw(st.booleans())
    try:
        return lp.FloatFormat(e, m, bias, subnormals=sub, **conv)
    except ValueError:
        assume(False)


finite64 = st.floats(allow_nan=False, allow_infinity=False, width=64)
MODES = oracle.MODES


@given(formats(), st.lists(finite64, min_size=1, max_size=40), st.sampled_from(MODES))
def test_results_are_representable_neighbours(fmt, xs, mode):
    x = np.array(xs)
    with np.errstate(all="ignore"):
        r = lp.round(x, fmt, mode, "saturate")
        dn = lp.round(x, fmt, "down", "saturate")
        up = lp.round(x, fmt, "up", "saturate")
    assert fmt.is_representable(r).all()
    inside = (x <= fmt.max) & (x >= -fmt.max)
    assert ((r == dn) | (r == up))[inside].all()
    assert (dn[inside] <= x[inside]).all() and (up[inside] >= x[inside]).all()


@given(formats(), st.lists(finite64, min_size=2, max_size=40), st.sampled_from(MODES))
def test_idempotent_monotone_symmetric(fmt, xs, mode):
    x = np.sort(np.array(xs))
    r = lp.round(x, fmt, mode)
    assert (bits(lp.round(r, fmt, mode)) == bits(r)).all()
    if mode in ("nearest_even", "nearest_away", "toward_zero", "down", "up", "odd"):
        ok = r[~np.isnan(r)]
        assert (ok[1:] >= ok[:-1]).all()
    if fmt.signed and mode in ("nearest_even", "nearest_away", "toward_zero", "odd") and \
            fmt.nan != "neg_zero":
        assert (bits(lp.round(-x, fmt, mode)) == bits(-r)).all()
    if fmt.signed and fmt.nan != "neg_zero":
        assert (bits(lp.round(-x, fmt, "up")) == bits(-lp.round(x, fmt, "down"))).all()


@given(formats(), st.lists(st.floats(width=32), min_size=1, max_size=40),
       st.sampled_from(MODES))
def test_decode_of_encode_is_round(fmt, xs, mode):
    x = np.array(xs, dtype=np.float32)
    codes = lp.encode(x, fmt, mode) if fmt.has_nan or not np.isnan(x).any() else None
    if codes is None:
        return
    assert codes.dtype == fmt.code_dtype
    r = lp.round(x, fmt, mode)
    d = lp.decode(codes, fmt, dtype=r.dtype)
    assert (bits(d) == bits(r)).all()


_tables = {}


def _oracle_table(fmt):
    key = repr(fmt)
    if key not in _tables:
        _tables[key] = oracle.float_table(
            fmt.exp_bits, fmt.man_bits, fmt.bias, subnormals=fmt.subnormals,
            inf="ieee" if fmt.inf is True else (fmt.inf or None), nan=fmt.nan)
    return _tables[key]


@given(formats(max_exp=5, max_man=5), st.lists(finite64, min_size=1, max_size=25),
       st.sampled_from(MODES), st.sampled_from([None, "saturate"]))
def test_random_small_formats_against_the_rational_oracle(fmt, xs, mode, policy):
    t = _oracle_table(fmt)
    x = np.array(xs)
    got = lp.encode(x, fmt, mode, policy)
    want = [oracle.round_exact(Fraction(v) if v != 0 or not np.signbit(v) else "-0", t, mode,
                               policy) for v in xs]
    assert got.tolist() == want


@given(st.lists(finite64, min_size=1, max_size=30), st.sampled_from(MODES))
def test_result_dtype_rule(xs, mode):
    import ml_dtypes
    x = np.array(xs)
    assert lp.round(x.astype(np.float32), "e4m3", mode).dtype == np.float32
    assert lp.round(x.astype(np.float16), "e4m3", mode).dtype == np.float16
    assert lp.round(x.astype(ml_dtypes.bfloat16), "e4m3", mode).dtype == ml_dtypes.bfloat16
    assert lp.round(x.astype(np.float16), "bf16", mode).dtype == np.float32
    assert lp.round(x.astype(np.float32), "float64", mode).dtype == np.float64
    assert lp.round(x, "e4m3", mode).dtype == np.float64
    assert isinstance(lp.round(1.3, "e4m3"), np.float64)
    y = lp.round(x, "float8_e4m3fn", mode, dtype=ml_dtypes.float8_e4m3fn)
    assert y.dtype == ml_dtypes.float8_e4m3fn
    assert (y.view(np.uint8) == lp.encode(x, "float8_e4m3fn", mode)).all()
