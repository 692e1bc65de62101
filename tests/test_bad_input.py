"""Every rule of DESIGN.md 'Bad input': a clear error naming the argument; inputs untouched."""
import numpy as np
import pytest

import lowprec as lp


def test_unknown_format_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown format 'float8_e4m3f'.*float8_e4m3fn"):
        lp.format("float8_e4m3f")
    with pytest.raises(TypeError, match="format must be"):
        lp.format(3.5)


@pytest.mark.parametrize("kw,match", [
    (dict(exp_bits=0, man_bits=3), "exp_bits=0"),
    (dict(exp_bits=12, man_bits=3), "exp_bits=12"),
    (dict(exp_bits=4, man_bits=60), "man_bits=60"),
    (dict(exp_bits=4, man_bits=3, bias=5000), "bias=5000"),
    (dict(exp_bits=11, man_bits=52, bias=2000), "outside float64"),
    (dict(exp_bits=4, man_bits=3, inf=True, nan="max_code"), "go together"),
    (dict(exp_bits=4, man_bits=3, inf="yes", nan=None), "inf='yes'"),
    (dict(exp_bits=4, man_bits=3, nan="quiet", inf=False), "nan='quiet'"),
    (dict(exp_bits=8, man_bits=0, zero=False, inf=False, nan="max_code"), "zero=False"),
    (dict(exp_bits=1, man_bits=2), "no normal binade"),
])
def test_impossible_formats(kw, match):
    with pytest.raises(ValueError, match=match):
        lp.FloatFormat(**kw)


def test_bad_types_for_format_fields():
    with pytest.raises(TypeError, match="exp_bits must be an int"):
        lp.FloatFormat(exp_bits=4.0, man_bits=3)
    with pytest.raises(ValueError, match="bits=70"):
        lp.IntFormat(70)


def test_non_float_inputs():
    with pytest.raises(TypeError, match=r"dtype int64.*astype"):
        lp.round(np.arange(3), "e4m3")
    with pytest.raises(TypeError, match="bool"):
        lp.round(True, "e4m3")
    with pytest.raises(TypeError, match="dtype <U"):
        lp.round(np.array(["a"]), "e4m3")


def test_bad_rounding_and_overflow_arguments():
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"rounding='nearest'.*allowed|rounding='banker'"):
        lp.round(x, "e4m3", "banker")
    with pytest.raises(ValueError, match="overflow='clip'"):
        lp.round(x, "e4m3", overflow="clip")
    with pytest.raises(ValueError, match="overflow='inf' but float8_e4m3fn has no Inf"):
        lp.round(x, "e4m3", overflow="inf")
    with pytest.raises(ValueError, match="overflow='nan' but float4_e2m1fn has no NaN"):
        lp.round(x, "e2m1", overflow="nan")
    with pytest.raises(ValueError, match="int8 has no NaN"):
        lp.round(x, "int8", overflow="nan")


def test_stochastic_needs_exactly_one_source_of_bits():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="seed=<int>"):
        lp.round(x, "e4m3", "stochastic")
    with pytest.raises(ValueError, match="exactly one"):
        lp.round(x, "e4m3", "stochastic", seed=1, rbits=np.zeros(4, np.uint32))
    with pytest.raises(ValueError, match="apply to rounding='stochastic' only"):
        lp.round(x, "e4m3", seed=1)
    with pytest.raises(ValueError, match="sr_bits=40"):
        lp.round(x, "e4m3", "stochastic", sr_bits=40, seed=1)
    with pytest.raises(ValueError, match="sr_variant='fast'"):
        lp.round(x, "e4m3", "stochastic", sr_variant="fast", seed=1)
    with pytest.raises(TypeError, match="rbits must be an unsigned"):
        lp.round(x, "e4m3", "stochastic", rbits=np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="uint8.*8 bits.*32 random bits"):
        lp.round(x, "e4m3", "stochastic", rbits=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="does not broadcast"):
        lp.round(x, "e4m3", "stochastic", rbits=np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="seed=-1"):
        lp.round(x, "e4m3", "stochastic", seed=-1)


def test_codes_out_of_range_and_bad_decode_dtype():
    with pytest.raises(ValueError, match="code 256 is out of range for float8_e4m3fn"):
        lp.decode(np.array([1, 256]), "e4m3")
    with pytest.raises(ValueError, match="code -1"):
        lp.decode(np.array([-1]), "e4m3")
    with pytest.raises(TypeError, match="codes must be an integer array"):
        lp.decode(np.array([1.0]), "e4m3")
    with pytest.raises(TypeError, match="dtype must be float16"):
        lp.decode(np.array([1]), "e4m3", dtype=np.int32)
    with pytest.raises(ValueError, match="symmetric"):
        lp.decode(np.array([0x80]), "mxint8_element")


def test_nan_into_a_format_without_nan_under_an_explicit_policy():
    with pytest.raises(ValueError, match="flat index 1.*float4_e2m1fn has no NaN"):
        lp.encode(np.array([1.0, np.nan]), "e2m1", overflow="saturate")
    with pytest.raises(ValueError, match="int8 has no NaN"):
        lp.encode(np.array([np.nan]), "int8")


def test_result_dtype_too_narrow():
    with pytest.raises(ValueError, match="cannot hold every value of bfloat16"):
        lp.round(np.ones(2), "bf16", dtype=np.float16)


def test_inputs_are_never_modified():
    x = np.array([1.1, np.nan, -3.7, 1e9], dtype=np.float32)
    keep = x.copy()
    r = np.arange(4, dtype=np.uint32)
    lp.round(x, "e4m3")
    lp.encode(x, "e4m3", "stochastic", rbits=r)
    lp.round(x[::2], "e2m1")
    assert (x.view(np.uint32) == keep.view(np.uint32)).all()
    assert (r == np.arange(4)).all()


def test_stochastic_promotion_needs_a_stochastic_accumulator():
    """The promotion step's random words come from the accumulator's seed or rbits; a
    deterministic accumulator has none to give, so the pair is refused where it is built."""
    with pytest.raises(ValueError, match="promote_to=.*rounds stochastically"):
        lp.Accumulator("float32", "toward_zero", fused=lp.FusedAdder(16, 13),
                       input_formats=("float8_e4m3fn", "float8_e4m3fn"), promote_every=128,
                       promote_to=lp.Accumulator("float32", "stochastic"))


def test_accumulator_arguments_are_checked_where_given():
    """Issue 21's probes of the accumulator model: each refused at construction, naming the
    argument and what is allowed (before, they were accepted and failed deep inside)."""
    with pytest.raises(ValueError, match=r"group=0 is not allowed: an int in 1..4096"):
        lp.Accumulator("float32", group=0)
    with pytest.raises(TypeError, match="FusedAdder align_addend must be True or False, got "
                                        "'maybe'"):
        lp.FusedAdder(4, 10, "maybe")
    with pytest.raises(ValueError, match=r"inputs='e4m3' is not allowed: a pair \(format of A"):
        lp.hardware.preset("h100-fp8", inputs="e4m3")
    with pytest.raises(ValueError, match=r"dtype=<class 'numpy.int32'> cannot hold every value "
                                         r"of float32: pass a float dtype"):
        lp.matmul(np.ones((2, 2)), np.ones((2, 2)), dtype=np.int32)
    with pytest.raises(ValueError, match=r"x=1000.* is an int beyond float64's range"):
        lp.round(10**400, "float32")
