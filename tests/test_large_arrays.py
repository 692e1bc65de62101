"""Arrays of at least cast.SPECIALISE_MIN_SIZE elements run a kernel compiled for their exact
parameters. It must give the bits of the generic kernel (itself checked against the oracle)
and report unrepresentable inputs the same way. Its agreement with ml_dtypes on 10^6 random
float32 values is in test_differential.py."""
import numpy as np
import pytest

import lowprec as lp
from lowprec import cast

N = cast.SPECIALISE_MIN_SIZE + 7


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(5)
    v = (rng.standard_normal(N) * np.exp2(rng.integers(-20, 20, N))).astype(np.float32)
    v[:6] = [np.nan, -np.inf, np.inf, -0.0, 0.0, 1e-45]
    return v


CASES = [("float8_e4m3fn", "nearest_even", None, {}), ("float4_e2m1fn", "up", None, {}),
         ("float8_e5m2", "toward_zero", "saturate", {}), ("bfloat16", "odd", None, {}),
         ("float8_e8m0fnu", "nearest_away", None, {}), ("int8", "down", None, {}),
         ("float8_e4m3fn", "stochastic", None, dict(seed=3)),
         ("float8_e3m4", "stochastic", "saturate", dict(sr_bits=5, sr_variant="src", seed=9)),
         ("float6_e2m3fn", "stochastic", None,
          dict(rbits=np.arange(N, dtype=np.uint64).astype(np.uint32)))]


@pytest.mark.parametrize("name,mode,policy,kw", CASES)
def test_specialised_kernel_equals_generic(x, monkeypatch, name, mode, policy, kw):
    xs = x if name != "int8" else np.nan_to_num(x)
    big_codes = lp.encode(xs, name, mode, policy, **kw)
    big_vals = lp.round(xs, name, mode, policy, **kw)
    monkeypatch.setattr(cast, "SPECIALISE_MIN_SIZE", 1 << 62)
    assert (lp.encode(xs, name, mode, policy, **kw) == big_codes).all()
    small = lp.round(xs, name, mode, policy, **kw)
    assert (small.view(np.uint32 if small.itemsize == 4 else np.uint16)
            == big_vals.view(np.uint32 if small.itemsize == 4 else np.uint16)).all()


def test_specialised_kernel_reports_nan_it_cannot_encode(x):
    with pytest.raises(ValueError, match=r"flat index 0\).*float4_e2m1fn has no NaN"):
        lp.encode(x, "float4_e2m1fn", overflow="saturate")
