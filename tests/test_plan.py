"""``lp.plan``: the fields of named formats against their definitions (docs/formats.md, values
written here from the OCP / IEEE specifications, not read from lowprec), the plan is frozen and
hashable, and every argument ``lp.round`` refuses is refused here with the same message;
``FloatFormat.is_representable`` against the oracle tables and NumPy's own float32."""
import dataclasses

import numpy as np
import pytest

import lowprec as lp
from helpers import SMALL, table


def f32_bits(v):
    return int(np.array(v, np.float32).view(np.uint32))


def test_e4m3fn_plan_fields_are_the_ocp_definition():
    p = lp.plan("float8_e4m3fn")
    assert (p.work_bits, p.man_bits, p.emin, p.sub_man_bits) == (32, 3, -6, 3)
    assert p.subnormal_step_exp == -9                      # 2^-9, OCP OFP8 table
    assert p.max_pos_code == 0x7E and p.max_pos_bits == f32_bits(448.0)
    assert p.max_neg_code == 0xFE and p.max_neg_bits == f32_bits(-448.0)
    assert p.nan_pos_code == 0x7F and p.nan_neg_code == 0xFF     # S.1111.111
    assert p.overflow == "nan" and p.natural                # no Inf: NaN is the natural overflow
    assert p.overflow_pos_code == 0x7F
    assert lp.plan("e4m3", overflow="saturate").overflow_pos_code == 0x7E


def test_e8m0_and_e5m2_plan_fields():
    p = lp.plan("float8_e8m0fnu")
    assert p.work_bits == 64                                # 2^-127 is below float32's normals
    assert p.code_base == -1 and p.kind == "unsigned"       # no zero: code 0 is 2^-127
    assert p.min_code == 0 and p.min_bits == int(np.array(2.0**-127).view(np.uint64))
    q = lp.plan("float8_e5m2", "up", "inf")
    assert q.overflow_pos_code == 0x7C and q.overflow_pos_bits == f32_bits(np.inf)
    assert q.max_pos_code == 0x7B and q.max_pos_bits == f32_bits(57344.0)


def test_stochastic_plan_and_the_word_width():
    assert lp.plan("bf16", "stochastic").sr_bits == 32
    assert lp.plan("bf16", "stochastic", dtype=np.float64).sr_bits == 64   # exact SR of float64
    p = lp.plan("e4m3", "sr", sr_bits=3, sr_variant="src")
    assert (p.mode, p.sr_bits, p.sr_variant) == ("stochastic", 3, "src")
    assert lp.plan("e4m3", "sr", sr_variant="src").sr_variant == "srff"     # exact SR: no variant


def test_plan_is_frozen_and_hashable():
    p = lp.plan("float4_e2m1fn")
    assert p == lp.plan("fp4") and hash(p) == hash(lp.plan("fp4"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.man_bits = 2


@pytest.mark.parametrize("kw,err,match", [
    (dict(fmt="e9m9"), ValueError, "e9m9"),
    (dict(rounding="nearest_odd"), ValueError, "rounding='nearest_odd'"),
    (dict(rounding=3), TypeError, "rounding must be a string"),
    (dict(overflow="clip"), ValueError, "overflow='clip'"),
    (dict(overflow="inf"), ValueError, "has no Inf"),
    (dict(sr_bits=4), ValueError, "apply to rounding='stochastic' only"),
    (dict(rounding="stochastic", sr_bits=0), ValueError, "sr_bits=0 is out of range"),
    (dict(rounding="stochastic", sr_bits=2.5), TypeError, "sr_bits must be an int"),
    (dict(sr_variant="te"), ValueError, "sr_variant='te'"),
    (dict(dtype=np.int32), TypeError, "dtype must be float16"),
])
def test_plan_refuses_what_round_refuses(kw, err, match):
    kw = {"fmt": "float8_e4m3fn", **kw}
    with pytest.raises(err, match=match):
        lp.plan(**kw)
    x = np.ones(2, kw.pop("dtype", np.float32))
    if x.dtype.kind == "f":
        with pytest.raises(err, match=match):
            lp.round(x, **kw, **({"seed": 1} if kw.get("rounding") == "stochastic" else {}))


@pytest.mark.parametrize("name", SMALL)
def test_is_representable_equals_the_oracle_table(name):
    t = table(name)
    vals = np.array([float(v) for v in t.finite])
    mids = (vals[1:] + vals[:-1]) / 2
    x = np.concatenate([vals, mids, [np.inf, -np.inf, np.nan, -0.0, 2 * vals[-1]]])
    want = np.concatenate([np.ones(vals.size, bool), np.zeros(mids.size, bool),
                           [t.inf_pos is not None, t.inf_neg is not None and t.signed,
                            t.nan_pos is not None, t.neg_zero is not None, False]])
    assert np.array_equal(lp.format(name).is_representable(x), want)


@pytest.mark.parametrize("name,dt", [("float32", np.float32), ("float64", np.float64)])
def test_is_representable_of_wide_formats_equals_numpy(name, dt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000) * np.exp2(rng.integers(-160, 160, 4000))
    x[:4] = [np.finfo(dt).smallest_subnormal, -np.finfo(dt).max, 0.0, -0.0]
    with np.errstate(over="ignore"):
        x[::3] = x[::3].astype(dt)                         # a third exactly representable
        want = (x.astype(dt).astype(np.float64) == x) | np.isinf(x)   # IEEE formats hold Inf
    assert np.array_equal(lp.format(name).is_representable(x), want)
