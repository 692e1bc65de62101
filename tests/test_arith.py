"""lp.add/sub/mul/div/fma/sqrt against MPFR (gmpy2) at the target precision and exponent range.

Two oracles, neither sharing code with lowprec:
* IEEE formats, modes RNE/RZ/up/down: MPFR computes the result directly in a context with the
  format's precision, exponent range and subnormals (specials included: NaN, Inf, signed zeros).
* Every format and mode (nearest_away, odd, stochastic too): MPFR gives the two neighbours of
  the exact result (directed roundings with an unbounded exponent above), and the mode's
  definition (docs/rounding.md) picks one using the exact result as a Fraction (for sqrt, a rational
  inside the same 300-bit MPFR interval, which no rounding boundary can split).
The format constants below are written from docs/formats.md, not read from lowprec.
"""
import zlib
from fractions import Fraction as Fr

import gmpy2
import numpy as np
import pytest

import lowprec as lp

# name -> (precision p, emin, max, overflow result when rounding away: 'inf' | 'nan' | 'max',
#          has -0)
F = Fr
FORMATS = {
    "float64": (53, -1022, (2 - F(1, 2**52)) * F(2) ** 1023, "inf", True),
    "float32": (24, -126, (2 - F(1, 2**23)) * F(2) ** 127, "inf", True),
    "tfloat32": (11, -126, (2 - F(1, 2**10)) * F(2) ** 127, "inf", True),
    "bfloat16": (8, -126, (2 - F(1, 2**7)) * F(2) ** 127, "inf", True),
    "float16": (11, -14, F(65504), "inf", True),
    "float8_e5m2": (3, -14, F(57344), "inf", True),
    "e8m13": (14, -126, (2 - F(1, 2**13)) * F(2) ** 127, "inf", True),
    "float8_e4m3fn": (4, -6, F(448), "nan", True),
    "float8_e4m3fnuz": (4, -7, F(240), "nan", False),
    "float6_e3m2fn": (3, -2, F(28), "max", True),
    "float4_e2m1fn": (2, 0, F(6), "max", True),
}
IEEE = ["float64", "float32", "tfloat32", "bfloat16", "float16", "float8_e5m2", "e8m13"]
OPS = ["add", "sub", "mul", "div", "fma", "sqrt"]
ARITY = {"add": 2, "sub": 2, "mul": 2, "div": 2, "fma": 3, "sqrt": 1}
E8M13 = lp.FloatFormat(exp_bits=8, man_bits=13, name="e8m13")


def fmt_of(name):
    return E8M13 if name == "e8m13" else name


def call(op, args, name, mode, **kw):
    return getattr(lp, op)(*args, fmt_of(name), mode, dtype=np.float64, **kw)


# ---- operands -------------------------------------------------------------------------------

def operands(op, name, n, seed, specials):
    """n random operand tuples for ``op`` spread over ``name``'s range: wide and narrow
    significands, subnormal and overflowing results, cancellation, zeros (and Inf/NaN)."""
    p, emin, vmax, _, _ = FORMATS[name]
    emax = int(vmax).bit_length() - 1
    rng = np.random.default_rng(seed)

    def draw(k, lo, hi):
        pin = rng.integers(1, 54, k)
        m = np.floor(rng.random(k) * 2.0 ** pin) + 1
        e = rng.integers(lo, hi + 1, k) - pin
        v = np.ldexp(m, np.clip(e, -1074, 1023 - 53))
        v = np.where(np.isfinite(v), v, 1.0)
        return np.where(rng.random(k) < 0.5, -v, v)

    lo, hi = max(emin - p - 4, -1074 + 53), min(emax + 2, 1023)
    k = ARITY[op]
    if op in ("mul", "fma"):
        lo, hi = (lo - 1) // 2, (hi + 1) // 2         # products span the range
    if op == "div":
        args = [draw(n, lo, hi), draw(n, (lo - 1) // 2, (hi + 1) // 2)]
    elif op == "sqrt":
        args = [np.abs(draw(n, 2 * lo, min(2 * hi, 1023)))]
    else:
        args = [draw(n, lo, hi) for _ in range(k)]
    if op in ("add", "sub"):                           # near-cancellation and tiny addends
        c = rng.random(n) < 0.3
        sgn = -1.0 if op == "add" else 1.0
        args[1] = np.where(c, sgn * args[0] * (1 + np.ldexp(rng.integers(-8, 9, n), -52)),
                           args[1])
        t = rng.random(n) < 0.15
        args[1] = np.where(t, np.ldexp(args[1], -rng.integers(20, 200, n)), args[1])
    if op == "fma":
        c = rng.random(n) < 0.3
        with np.errstate(all="ignore"):
            prod = args[0] * args[1]
        pert = prod * (1 + np.ldexp(rng.integers(-8, 9, n), -rng.integers(30, 60, n)))
        args[2] = np.where(c & np.isfinite(pert), -pert, args[2])
    pool = [0.0, -0.0]
    if specials:
        pool += [np.inf, -np.inf, np.nan, 5e-324, -5e-324]
    for a in args:
        z = rng.random(n) < 0.06
        a[z] = rng.choice(pool, int(z.sum()))
    return args


# ---- MPFR ---------------------------------------------------------------------------------

RND = {"nearest_even": gmpy2.RoundToNearest, "toward_zero": gmpy2.RoundToZero,
       "up": gmpy2.RoundUp, "down": gmpy2.RoundDown}
_MP = {"add": gmpy2.add, "sub": gmpy2.sub, "mul": gmpy2.mul, "div": gmpy2.div,
       "fma": gmpy2.fma, "sqrt": gmpy2.sqrt}


def mpfr_op(op, args, p, emin, emax_mpfr, mode):
    """The op in MPFR with precision p, subnormals below 2^emin, largest exponent emax_mpfr
    (MPFR's convention: x = m 2^e with m in [1/2, 1))."""
    xs = [gmpy2.mpfr(float(a), 53) for a in args]
    ctx = gmpy2.context(precision=p, emin=emin - p + 2, emax=emax_mpfr, subnormalize=True,
                        round=RND[mode])
    with ctx:
        return _MP[op](*xs)


def exact_value(op, args):
    """The exact result as a Fraction (sqrt: a rational in the same 300-bit MPFR interval)."""
    a = [Fr(float(v)) for v in args]
    if op == "add":
        return a[0] + a[1]
    if op == "sub":
        return a[0] - a[1]
    if op == "mul":
        return a[0] * a[1]
    if op == "div":
        return a[0] / a[1]
    if op == "fma":
        return a[0] * a[1] + a[2]
    ctx = gmpy2.context(precision=300, emin=-100000, emax=100000, round=gmpy2.RoundDown)
    with ctx:
        r = gmpy2.sqrt(gmpy2.mpfr(float(args[0]), 53))
        inexact = ctx.inexact
    lo = Fr(*r.as_integer_ratio())
    if not inexact:
        return lo
    return lo + Fr(1, 2) * Fr(2) ** (r.as_mantissa_exp()[1])   # half a 300-bit ulp above


def sr_up(d, R, r, variant):
    """docs/rounding.md: round away from zero? d = discarded fraction in (0, 1)."""
    R &= (1 << r) - 1
    t = d * 2**r
    if variant == "srff":
        return int(t) + R >= 2**r
    if variant == "srf":
        return int(d * 2 ** (r + 1)) + 2 * R + 1 >= 2 ** (r + 1)
    fl = int(t)
    rest = t - fl
    if variant == "src":
        rt = fl + (rest > F(1, 2) or (rest == F(1, 2) and fl % 2 == 1))
    else:
        rt = fl | (1 if rest else 0)
    return rt + R >= 2**r


def expected(op, args, name, mode, R=0, r=0, variant="srff"):
    """Expected float64 result by the neighbour method (finite operands, no invalid op)."""
    p, emin, vmax, ovf, negz = FORMATS[name]
    v = exact_value(op, args)
    if v == 0:                                         # exact zero: IEEE 754 §6.3 sign rule
        z = mpfr_op(op, args, p, emin, 100000, "down" if mode == "down" else "nearest_even")
        neg = gmpy2.is_signed(z)
        return -0.0 if neg and negz else 0.0
    lo_m = mpfr_op(op, args, p, emin, 100000, "down")
    hi_m = mpfr_op(op, args, p, emin, 100000, "up")
    lo, hi = Fr(*lo_m.as_integer_ratio()), Fr(*hi_m.as_integer_ratio())
    neg = v < 0
    if lo == hi:
        res = lo
    else:
        tz, aw = (hi, lo) if neg else (lo, hi)
        if mode == "nearest_away":
            dl, dh = abs(v - tz), abs(aw - v)
            res = tz if dl < dh else aw
        elif mode == "odd":
            ulp = hi - lo
            res = lo if (lo / ulp).numerator % 2 == 1 else hi
        elif mode == "stochastic":
            res = aw if sr_up(abs(v - tz) / abs(aw - tz), R, r, variant) else tz
        else:
            res = {"nearest_even": None, "toward_zero": tz, "up": hi, "down": lo}[mode]
            if res is None:
                dl, dh = v - lo, hi - v
                res = lo if dl < dh else hi if dh < dl else (
                    lo if (lo / (hi - lo)).numerator % 2 == 0 else hi)
    if abs(res) > vmax:
        away = mode in ("nearest_even", "nearest_away", "stochastic") or (
            mode == "up" and not neg) or (mode == "down" and neg)
        if not away or ovf == "max":
            return float(-vmax if neg else vmax)
        return np.nan if ovf == "nan" else (-np.inf if neg else np.inf)
    if res == 0:
        return -0.0 if neg and negz else 0.0
    return float(res)


def same_bits(got, want):
    got, want = np.float64(got), np.float64(want)
    if np.isnan(want):
        return bool(np.isnan(got))
    return got.view(np.uint64) == want.view(np.uint64)


def report(op, name, mode, args, got, want):
    return f"{op} {name} {mode}: args={[float(a).hex() for a in args]} got " \
           f"{float(got).hex()} want {float(want).hex()}"


# ---- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IEEE)
@pytest.mark.parametrize("op", OPS)
def test_ieee_formats_equal_mpfr_directly(op, name):
    """RNE, RZ, up, down into IEEE formats: every result bit-equal to MPFR at the format's
    precision and exponent range, specials and signed zeros included."""
    p, emin, vmax, _, _ = FORMATS[name]
    emax = int(vmax).bit_length() - 1
    args = operands(op, name, 300, seed=zlib.crc32(repr((op, name)).encode()), specials=True)
    for mode in RND:
        got = call(op, args, name, mode)
        for i in range(got.size):
            a = [x[i] for x in args]
            want = float(mpfr_op(op, a, p, emin, emax + 1, mode))
            assert same_bits(got[i], want), report(op, name, mode, a, got[i], want)


MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd"]


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("op", OPS)
def test_every_mode_against_mpfr_neighbours(op, name):
    args = operands(op, name, 150, seed=zlib.crc32(repr((op, name, 1)).encode()), specials=False)
    ok = np.ones(args[0].shape, bool)
    if op == "div":
        ok = args[1] != 0
    for mode in MODES:
        got = call(op, [a[ok] for a in args], name, mode)
        for i, j in enumerate(np.flatnonzero(ok)):
            a = [x[j] for x in args]
            want = expected(op, a, name, mode)
            assert same_bits(got[i], want), report(op, name, mode, a, got[i], want)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float8_e4m3fn", "e8m13", "float64"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("r,variant", [(1, "srff"), (3, "srf"), (8, "src"), (5, "sr_odd"),
                                       (32, "srff"), (None, "srff")])
def test_stochastic_uses_the_exact_discarded_fraction(op, name, r, variant):
    args = operands(op, name, 120, seed=zlib.crc32(repr((op, name, r, variant)).encode()), specials=False)
    if op == "div":
        args[1] = np.where(args[1] == 0, 1.0, args[1])
    rng = np.random.default_rng(7)
    rbits = rng.integers(0, 2**63, args[0].shape, dtype=np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, args[0].shape, dtype=np.uint64)
    got = call(op, args, name, "stochastic", sr_bits=r, sr_variant=variant, rbits=rbits)
    for i in range(got.size):
        a = [x[i] for x in args]
        want = expected(op, a, name, "stochastic", int(rbits[i]), 64 if r is None else r,
                        variant)
        assert same_bits(got[i], want), report(op, name, f"sr{r}{variant}", a, got[i], want)


def test_stochastic_seed_numbers_broadcast_elements_in_c_order():
    x = np.linspace(1, 2, 12).reshape(3, 4)
    y = np.float64(1 / 3)
    got = lp.mul(x, y, "bfloat16", "stochastic", seed=11, dtype=np.float64)
    words = lp.random_bits(11, (3, 4), wide=True)
    want = lp.mul(x, np.full((3, 4), y), "bfloat16", "stochastic", rbits=words,
                  dtype=np.float64)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


def test_ieee_special_cases():
    """IEEE 754-2019 §6-7 cases, written out."""
    inf, nan = np.inf, np.nan
    f = "float32"
    assert np.isnan(lp.mul(0.0, inf, f)) and np.isnan(lp.add(inf, -inf, f))
    assert np.isnan(lp.fma(0.0, inf, 1.0, f)) and np.isnan(lp.fma(inf, 1.0, -inf, f))
    assert np.isnan(lp.div(0.0, 0.0, f)) and np.isnan(lp.div(inf, -inf, f))
    assert np.isnan(lp.sqrt(-1.0, f)) and np.isnan(lp.add(nan, 1.0, f))
    assert lp.div(-1.0, 0.0, f) == -inf and lp.div(1.0, -0.0, f) == -inf
    assert np.signbit(lp.sqrt(-0.0, f)) and lp.sqrt(inf, f) == inf
    assert not np.signbit(lp.add(1.0, -1.0, f)) and np.signbit(lp.add(1.0, -1.0, f, "down"))
    assert np.signbit(lp.add(-0.0, -0.0, f)) and not np.signbit(lp.add(-0.0, 0.0, f))
    assert np.signbit(lp.fma(-0.0, 1.0, -0.0, f)) and np.signbit(lp.mul(-2.0, 0.0, f))
    assert lp.fma(1.0, inf, 5.0, f) == inf and lp.fma(2.0, 3.0, -inf, f) == -inf
    # overflow follows the policy; formats without NaN refuse a NaN result
    assert np.isnan(lp.mul(300.0, 2.0, "float8_e4m3fn"))
    assert lp.mul(300.0, 2.0, "float8_e4m3fn", overflow="saturate") == 448
    assert lp.mul(300.0, 2.0, "float8_e4m3fn", "toward_zero") == 448
    with pytest.raises(ValueError, match="no NaN"):
        lp.sqrt(-1.0, "float4_e2m1fn", overflow="saturate")


def test_no_double_rounding():
    """Cases where rounding in float64 first then to the format would be wrong."""
    # 1 + 2^-24 + 2^-60 -> float32: the float64 sum is 1 + 2^-24 (a tie) -> 1.0, but the
    # exact sum is above the midpoint -> 1 + 2^-23
    assert lp.add(1.0 + 2.0**-24, 2.0**-60, "float32") == np.float32(1 + 2.0**-23)
    # fma: x*y + z with x*y inexact in float64
    x = 1 + 2.0**-30
    assert lp.fma(x, x, -1.0, "float64") == 2.0**-29 + 2.0**-60
    assert lp.mul(x, x, "float64", "up") == np.nextafter(1 + 2.0**-29, 2)
    # 1/3 = 0x1.555555...p-2: float32 keeps 0x1.555554p-2 (down) or 0x1.555556p-2 (up)
    def bits(v):
        return int(np.array(v, np.float32).view(np.uint32))
    assert bits(lp.div(1.0, 3.0, "float32", "down")) == 0x3EAAAAAA
    assert bits(lp.div(1.0, 3.0, "float32", "up")) == 0x3EAAAAAB
    assert bits(lp.div(1.0, 3.0, "float32", "odd")) == 0x3EAAAAAB


def test_dtypes_broadcasting_and_inputs_untouched():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.float32([1, 2, 4])
    a0 = a.copy()
    r = lp.add(a, b, "bfloat16")
    assert r.dtype == np.float32 and r.shape == (2, 3)
    assert np.array_equal(a, a0)
    assert lp.mul(np.float16(3), np.float16(2), "float16").dtype == np.float16
    assert isinstance(lp.add(1.0, 2.0, "float32"), np.floating)
    assert lp.add(1.0, 2.0, "float8_e4m3fn", dtype=np.float16).dtype == np.float16


def test_bad_input():
    with pytest.raises(ValueError, match="broadcast"):
        lp.add(np.ones(3), np.ones(4), "float32")
    with pytest.raises(TypeError, match="x must be"):
        lp.add(np.ones(3, dtype=np.int32), 1.0, "float32")
    with pytest.raises(TypeError, match="y must be"):
        lp.mul(1.0, "2", "float32")
    with pytest.raises(ValueError, match="fmt=hifloat8"):
        lp.add(1.0, 2.0, "hifloat8")
    with pytest.raises(ValueError, match="needs exactly one source"):
        lp.add(1.0, 2.0, "float32", "stochastic")
    with pytest.raises(ValueError, match="dtype="):
        lp.add(1.0, 2.0, "float32", dtype=np.float16)
