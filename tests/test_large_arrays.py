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


# Each case compiles one specialised kernel (tens of seconds on a cold cache), so the cases
# cover each kernel kind once: the vectorised kernel (deterministic, seeded SR, rbits SR, codes
# and values, a saturating policy) and the general one (a format without zero). Deterministic
# rounding into small float formats takes the table path (test_table8.py).
CASES = [("bfloat16", "nearest_even", None, {}, False),
         ("float8_e8m0fnu", "nearest_away", None, {}, True),
         ("float8_e3m4", "stochastic", "saturate", dict(sr_bits=5, sr_variant="src", seed=9),
          False),
         ("float6_e2m3fn", "stochastic", None,
          dict(rbits=np.arange(N, dtype=np.uint64).astype(np.uint32)), True),
         # stochastic rounding below 2^EMIN takes floor(d * 2^32) from a float32 product:
         # every variant, exact and few bits (the inputs reach far below each format's EMIN)
         ("float8_e4m3fn", "stochastic", None, dict(seed=3), False),
         ("bfloat16", "stochastic", None, dict(sr_variant="srf", seed=5), False),
         ("float8_e5m2", "stochastic", None, dict(sr_bits=7, sr_variant="sr_odd", seed=6), True),
         ("float4_e2m1fn", "stochastic", None, dict(sr_bits=31, sr_variant="src",
                                                    seed=7), False)]


@pytest.mark.parametrize("name,mode,policy,kw,codes", CASES)
def test_specialised_kernel_equals_generic(x, monkeypatch, name, mode, policy, kw, codes):
    xs = x if name != "int8" else np.nan_to_num(x)
    fn = lp.encode if codes else lp.round
    big = fn(xs, name, mode, policy, **kw)
    monkeypatch.setattr(cast, "SPECIALISE_MIN_SIZE", 1 << 62)
    small = fn(xs, name, mode, policy, **kw)
    u = {1: np.uint8, 2: np.uint16, 4: np.uint32}[small.itemsize]
    assert np.array_equal(small.view(u), big.view(u))


def test_specialised_kernel_reports_nan_it_cannot_encode(x):
    with pytest.raises(ValueError, match=r"flat index 0\).*float4_e2m1fn has no NaN"):
        lp.encode(x, "float4_e2m1fn", overflow="saturate")
