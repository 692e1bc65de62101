"""lp.matmul / dot / sum with accumulator models against the exact-rational oracle
(tests/oracle_mma.py) and the core oracle's stochastic rounding; hypothesis properties."""
from fractions import Fraction as Fr

import dataclasses
import math
import re
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import helpers
import oracle
import oracle_mma as om
import lowprec as lp

# format name -> (ml_dtypes / numpy type, precision p, emin, emax), from docs/formats.md
IN = {"float16": (np.float16, 11, -14, 15), "bfloat16": (ml_dtypes.bfloat16, 8, -126, 127),
      "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, 4, -6, 8),
      "float8_e5m2": (ml_dtypes.float8_e5m2, 3, -14, 15)}
ACC = {"float32": (24, -126, 127), "float16": (11, -14, 15), "bfloat16": (8, -126, 127),
       "e8m13": (14, -126, 127)}
E8M13 = lp.FloatFormat(exp_bits=8, man_bits=13, name="e8m13")


def fmt(name):
    return E8M13 if name == "e8m13" else name


def values(rng, shape, name, spread=6, zeros=0.1):
    """Random values of an input format (through ml_dtypes), over a range of exponents, with
    zeros and subnormals."""
    x = rng.standard_normal(shape) * 2.0 ** rng.integers(-spread, spread + 1, shape)
    x[rng.random(shape) < zeros] = 0.0
    dt = IN[name][0]
    with np.errstate(over="ignore", invalid="ignore"):
        v = x.astype(dt).astype(np.float32)
    return np.where(np.isfinite(v), v, 0).astype(np.float32)


def bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def same(got, want):
    """Bit-equal, except that any NaN matches any NaN (IEEE leaves the sign of Inf - Inf's
    NaN open)."""
    w = to_f32(want)
    return bool(np.isnan(got)) if np.isnan(w) else bits(got) == bits(w)


def to_f32(r):
    return np.float32(float(r)) if r not in (om.INF, -om.INF) else np.float32(r)


# ---- fused adders ----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       n=st.sampled_from([1, 2, 4, 8, 16, 32]),
       F=st.sampled_from([2, 8, 13, 23, 25, 34]),
       align=st.booleans(), terms=st.sampled_from(["truncate", "floor", "nearest"]),
       ins=st.sampled_from([("float16", "float16"), ("bfloat16", "bfloat16"),
                            ("float8_e4m3fn", "float8_e5m2"), ("float8_e4m3fn", "float8_e4m3fn")]),
       out=st.sampled_from([("float32", "toward_zero"), ("float32", "nearest_even"),
                            ("float16", "nearest_even"), ("e8m13", "toward_zero"),
                            ("bfloat16", "up"), ("float32", "odd"), ("float32", "down"),
                            ("bfloat16", "nearest_even")]),
       K=st.integers(1, 70), ze=st.sampled_from([None, None, -30, -8, 0, 6]))
def test_fused_adder_matches_the_rational_model(seed, n, F, align, terms, ins, out, K, ze):
    rng = np.random.default_rng(seed)
    a = values(rng, (3, K), ins[0])
    b = values(rng, (K, 2), ins[1])
    acc_name, mode = out
    c = values(rng, (3, 2), "float16", spread=3)        # float16 values: in every acc format
    acc = lp.Accumulator(fmt(acc_name), mode, fused=lp.FusedAdder(n, F, align, terms,
                                                                 zero_exponent=ze),
                         input_formats=ins, addend_format="float16")
    got = helpers.matmul_both_paths(a, b, acc, c=c)
    p, emin, emax = ACC[acc_name]
    for i in range(3):
        for j in range(2):
            want = om.fused_dot([Fr(float(v)) for v in a[i]], [Fr(float(v)) for v in b[:, j]],
                                Fr(float(c[i, j])), n, F, align, terms, IN[ins[0]][2],
                                IN[ins[1]][2], -14, (p, emin, emax, mode), zero_exp=ze)
            assert bits(got[i, j]) == bits(to_f32(want)), (i, j, float(want), got[i, j])


IN.update({"tfloat32": (None, 11, -126, 127), "float8_e4m3fnuz": (ml_dtypes.float8_e4m3fnuz,
                                                                  4, -7, 7),
           "float8_e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, 3, -15, 15)})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 70),
       preset=st.sampled_from(["mi300-fp16", "mi300-bf16", "mi300-xf32", "mi300-fp8", "bf8"]),
       spread=st.sampled_from([2, 12, 40]))
def test_cdna3_floored_join_matches_the_rational_model(seed, K, preset, spread):
    """The AMD CDNA3 presets (FusedAdder sum_bits / split / drop_small_addend) against
    tests/oracle_mma.py's floored join, written from MMA-Sim's description of the rule."""
    acc = lp.hardware.preset("mi300-fp8", inputs=("float8_e5m2fnuz", "float8_e5m2fnuz")) \
        if preset == "bf8" else lp.hardware.preset(preset)
    fa, fb = (f.name for f in acc.input_formats)
    rng = np.random.default_rng(seed)
    sp = min(spread, 6) if "float8" in fa else spread
    a = lp.round(rng.standard_normal((2, K)) * 2.0 ** rng.integers(-sp, sp + 1, (2, K)), fa,
                 overflow="saturate", dtype=np.float64)
    b = lp.round(rng.standard_normal((K, 2)) * 2.0 ** rng.integers(-sp, sp + 1, (K, 2)), fb,
                 overflow="saturate", dtype=np.float64)
    a[rng.random(a.shape) < 0.1] = 0.0
    c = lp.round(rng.standard_normal((2, 2)) * 2.0 ** rng.integers(-30, 10, (2, 2)), "float32",
                 dtype=np.float64)
    got = lp.matmul(a, b, acc, c)
    fz = acc.fused
    for i in range(2):
        for j in range(2):
            want = om.floored_dot([Fr(float(v)) for v in a[i]], [Fr(float(v)) for v in b[:, j]],
                                  Fr(float(c[i, j])), fz.n, fz.frac_bits, fz.sum_bits, fz.split,
                                  fz.drop_small_addend, IN[fa][2], IN[fb][2], -126,
                                  (24, -126, 127, "nearest_even"))
            assert bits(got[i, j]) == bits(to_f32(want)), (i, j, float(want), got[i, j])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 300))
def test_deepseek_promotion_matches_the_rational_model(seed, K):
    rng = np.random.default_rng(seed)
    a = values(rng, (2, K), "float8_e4m3fn")
    b = values(rng, (K, 2), "float8_e4m3fn")
    c = values(rng, (2, 2), "float16", spread=2)
    got = lp.matmul(a, b, "deepseek-v3-fp8", c)
    for i in range(2):
        for j in range(2):
            want = om.fused_dot([Fr(float(v)) for v in a[i]], [Fr(float(v)) for v in b[:, j]],
                                Fr(float(c[i, j])), 32, 13, True, "truncate", -6, -6, -126,
                                (14, -126, 127, "toward_zero"), promote=128,
                                outer=(24, -126, 127, "nearest_even"))
            assert bits(got[i, j]) == bits(to_f32(want))


# ---- ordered floating-point accumulators ---------------------------------------------------

def random_tree(rng, idx):
    if len(idx) == 1:
        return int(idx[0])
    k = int(rng.integers(2, min(4, len(idx)) + 1))
    cuts = np.sort(rng.choice(np.arange(1, len(idx)), k - 1, replace=False))
    return tuple(random_tree(rng, part) for part in np.split(idx, cuts))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       acc_name=st.sampled_from(list(ACC)),
       mode=st.sampled_from(["nearest_even", "nearest_away", "toward_zero", "up", "down",
                             "odd"]),
       order=st.sampled_from(["sequential", "pairwise", "blocked", "blocked_pairwise", "tree"]),
       round_products=st.booleans(), K=st.integers(1, 40))
def test_ordered_sums_match_the_rational_model(seed, acc_name, mode, order, round_products, K):
    rng = np.random.default_rng(seed)
    a = values(rng, (2, K), "float16", spread=8)
    b = values(rng, (K, 2), "float16", spread=8)
    c = values(rng, (2, 2), "bfloat16", spread=3)
    tree = random_tree(rng, np.arange(K)) if order == "tree" else None
    kw = dict(order=tree if order == "tree" else order,
              block=3 if order.startswith("blocked") else None)
    if round_products:
        kw["products"] = "bfloat16"
    if acc_name in ("float16", "bfloat16", "e8m13"):       # c must be a value of the acc
        c = np.asarray(lp.round(c, fmt(acc_name)), np.float32)
    acc = lp.Accumulator(fmt(acc_name), mode, **kw)
    got = lp.matmul(a, b, acc, c)
    p, emin, emax = ACC[acc_name]
    for i in range(2):
        for j in range(2):
            prods = [Fr(float(x)) * Fr(float(y)) for x, y in zip(a[i], b[:, j])]
            if round_products:
                prods = [om.round_ieee(q, 8, -126, 127, "nearest_even") for q in prods]
            want = om.ordered_sum(prods, Fr(float(c[i, j])), order, (p, emin, emax, mode),
                                  block=3, tree=tree)
            if want == 0:                      # Fractions carry no sign: IEEE zero signs
                zeros = [np.signbit(x) != np.signbit(y) if x * y == 0 else None
                         for x, y in zip(a[i], b[:, j])] + [bool(np.signbit(c[i, j]))]
                want = -0.0 if zero_sum_is_negative(prods + [Fr(float(c[i, j]))], zeros,
                                                    mode) else 0.0
            assert same(got[i, j], want), (i, j, float(want), got[i, j])


def zero_sum_is_negative(terms, zero_signs, mode):
    """IEEE 754 §6.3 for a sum whose rounded result is zero: -0 when every term is a -0, or,
    rounding toward -Inf, when any term is nonzero or the zeros differ in sign (an exact zero
    from cancellation; a nonzero sum that rounds to zero keeps its sign)."""
    if sum(terms) != 0:
        return sum(terms) < 0
    if all(t == 0 for t in terms):
        signs = set(zero_signs)
        return signs == {True} or (len(signs) > 1 and mode == "down")
    return mode == "down"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(0, 200), spread=st.integers(0, 120))
def test_exact_is_one_rounding_of_the_rational_sum(seed, K, spread):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((2, K)) * 2.0 ** rng.integers(-spread, spread + 1, (2, K))
         ).astype(np.float32)
    b = (rng.standard_normal((K, 3)) * 2.0 ** rng.integers(-spread, spread + 1, (K, 3))
         ).astype(np.float32)
    if K > 2:
        with np.errstate(all="ignore"):                    # cancellation in row 0
            b[1, :] = -a[0, 0] * b[0, :] / a[0, 1] if a[0, 1] else b[1, :]
    c = rng.standard_normal((2, 3)).astype(np.float32)
    a, b = np.where(np.isfinite(a), a, 1), np.where(np.isfinite(b), b, 1)
    got = lp.matmul(a, b, "exact", c)
    for i in range(2):
        for j in range(3):
            s = sum((Fr(float(x)) * Fr(float(y)) for x, y in zip(a[i], b[:, j])), Fr(0))
            want = om.round_ieee(s + Fr(float(c[i, j])), 24, -126, 127, "nearest_even")
            assert bits(got[i, j]) == bits(to_f32(want))


def test_stochastic_accumulator_uses_the_documented_random_words():
    """Rounding j of output o takes Philox4x32-10(key=seed, counter=(o, 0, j, 1)) words 0|1,
    low r bits; each addition rounds the exact sum (core oracle, float16 table)."""
    rng = np.random.default_rng(3)
    a = values(rng, (2, 9), "float16", spread=4)
    b = values(rng, (9, 2), "float16", spread=4)
    acc = lp.Accumulator("float16", "stochastic", sr_bits=5, sr_variant="srff")
    got = lp.matmul(a, b, acc, seed=99)
    again = lp.matmul(a, b, acc, seed=99)
    assert np.array_equal(bits(got), bits(again))
    t = helpers.table("float16")
    for o in range(4):
        i, j = divmod(o, 2)
        s = Fr(0)
        for k in range(9):
            w0, w1, _, _ = lp.rounding.philox4x32((o, 0, k, 1), (99, 0))
            exact = s + Fr(float(a[i, k])) * Fr(float(b[k, j]))
            code = oracle.round_exact(exact, t, "stochastic", sr=(w0 | (w1 << 32), 5, "srff"))
            s = t.values[code] if code != t.neg_zero else Fr(0)
        assert got[i, j] == np.float32(float(s))


# ---- integers --------------------------------------------------------------------------------

@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("order", ["sequential", "pairwise"])
def test_integer_accumulators_wrap_or_saturate_per_addition(overflow, order):
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (4, 50)).astype(np.float32)
    b = rng.integers(-128, 128, (50, 3)).astype(np.float32)
    acc = lp.Accumulator(lp.IntFormat(bits=16), order=order, overflow=overflow)
    got = lp.matmul(a, b, acc)
    assert got.dtype == np.int64

    def fix(v):
        if overflow == "wrap":
            return (v + 2**15) % 2**16 - 2**15
        return min(max(v, -2**15), 2**15 - 1)

    for i in range(4):
        for j in range(3):
            prods = [int(x) * int(y) for x, y in zip(a[i], b[:, j])]
            if order == "sequential":
                s = 0
                for p in prods:
                    s = fix(s + p)
            else:
                def pw(xs):
                    if len(xs) == 1:
                        return xs[0]
                    h = len(xs) // 2
                    return fix(pw(xs[:h]) + pw(xs[h:]))
                s = fix(pw(prods) + 0)
            assert got[i, j] == s


def test_a2q_bound_is_never_exceeded():
    """A2Q (Colbert et al. 2023): P = ceil(alpha + log2(1 + 2^-alpha) + 1); the worst case
    |sum| over K products fits in a signed P-bit integer."""
    assert lp.a2q_bits(1, 8, 8) == 16
    for K in (1, 7, 64, 1000):
        for n, m in ((8, 8), (4, 4), (8, 4)):
            for signed in (True, False):
                P = lp.a2q_bits(K, n, m, signed)
                xmax = 2 ** (n - 1) if signed else 2**n - 1
                worst = K * xmax * 2 ** (m - 1)
                assert worst <= 2 ** (P - 1) - 1
                acc = lp.Accumulator(lp.IntFormat(bits=P), overflow="saturate")
                x = np.full((1, K), -xmax if signed else xmax, np.float32)
                w = np.full((K, 1), -(2 ** (m - 1)), np.float32)
                assert lp.matmul(x, w, acc)[0, 0] == K * (-xmax if signed else xmax) * -(
                    2 ** (m - 1))


# ---- properties --------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 64))
def test_order_does_not_matter_when_every_sum_is_exact(seed, K):
    rng = np.random.default_rng(seed)
    a = rng.integers(-31, 32, (3, K)).astype(np.float32)
    b = rng.integers(-31, 32, (K, 2)).astype(np.float32)
    exact = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)
    for acc in ("exact", "fp32-sequential", lp.Accumulator(order="pairwise"),
                lp.Accumulator(order="blocked", block=5),
                lp.Accumulator(order=random_tree(rng, np.arange(K)))):
        assert np.array_equal(bits(lp.matmul(a, b, acc)), bits(exact))


def test_error_grows_as_the_accumulator_narrows():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 256)).astype(np.float16).astype(np.float32)
    b = rng.standard_normal((256, 1)).astype(np.float16).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    errs = []
    for m in (23, 13, 7, 3):
        f = lp.FloatFormat(exp_bits=8, man_bits=m)
        got = lp.matmul(a, b, lp.Accumulator(f))
        errs.append(float(np.mean(np.abs(got - ref))))
    assert errs == sorted(errs) and errs[0] < errs[-1] / 100


def test_batching_broadcasts_like_numpy_and_sum_dot_agree():
    rng = np.random.default_rng(2)
    A = values(rng, (2, 1, 3, 5), "float16")
    B = values(rng, (4, 5, 2), "float16")
    c = values(rng, (2,), "float16")
    got = lp.matmul(A, B, "h100-fp16", c)
    assert got.shape == (2, 4, 3, 2)
    for i in range(2):
        for j in range(4):
            one = lp.matmul(A[i, 0], B[j], "h100-fp16", np.broadcast_to(c, (3, 2)))
            assert np.array_equal(bits(got[i, j]), bits(one))
    x, y = A[0, 0], B[0].T[:1]                               # (3, 5) . (1, 5) -> (3,)
    d = lp.dot(x, y, "h100-fp16")
    assert d.shape == (3,)
    assert np.array_equal(bits(d), bits(lp.matmul(x, y.T, "h100-fp16")[:, 0]))
    x = values(rng, (4, 7), "float16")
    s = lp.sum(x, "fp32-sequential", axis=1)
    assert np.array_equal(bits(s), bits(lp.matmul(x, np.ones((7, 1), np.float32))[:, 0]))


def test_presets_are_all_there_with_sources():
    names = set(lp.hardware.presets())
    required = {"v100-fp16", "a100-fp16", "a100-bf16", "a100-tf32", "ada-fp16", "ada-bf16",
                "ada-tf32", "ada-fp8", "h100-fp16", "h100-bf16", "h100-tf32", "h100-fp8",
                "b200-fp16", "b200-bf16", "b200-tf32", "b200-fp8", "mi300-fp16", "mi300-bf16",
                "mi300-fp8", "deepseek-v3-fp8", "exact", "fp32-sequential", "h100-fp16-out-fp16"}
    assert required <= names
    for doc in lp.hardware.presets().values():
        assert len(doc) > 30
    e5 = lp.hardware.preset("h100-fp8", inputs=("float8_e5m2", "float8_e4m3fn"))
    a = np.float32([[57344.0]])
    assert lp.matmul(a, np.float32([[1.0]]), e5)[0, 0] == 57344.0
    with pytest.raises(ValueError, match="float8_e4m3fn values"):
        lp.matmul(a, np.float32([[1.0]]), "h100-fp8")


def test_bad_input():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown preset"):
        lp.matmul(a, a.T, "h100-fp17")
    with pytest.raises(ValueError, match="last dimension"):
        lp.matmul(a, a, "exact")
    with pytest.raises(ValueError, match="not one of the float16 values"):
        lp.matmul(a * np.float32(1.0001), a.T, "h100-fp16")
    with pytest.raises(ValueError, match="c\\[0, 0\\]"):
        lp.matmul(a, a.T, "h100-fp16-out-fp16", np.float32(1.0001))
    with pytest.raises(ValueError, match="seed"):
        lp.matmul(a, a.T, lp.Accumulator("float16", "stochastic"))
    with pytest.raises(ValueError, match="input_formats"):
        lp.Accumulator(fused=lp.FusedAdder(4, 10))
    with pytest.raises(ValueError, match="sets its own order"):
        lp.Accumulator(fused=lp.FusedAdder(4, 10), order="pairwise",
                       input_formats=("float16", "float16"))
    with pytest.raises(ValueError, match="block="):
        lp.Accumulator(order="blocked")
    with pytest.raises(ValueError, match="every product index"):
        lp.matmul(a, a.T, lp.Accumulator(order=((0, 1),)))
    with pytest.raises(TypeError, match="float array"):
        lp.matmul(np.ones((2, 3), np.int32), a.T)
    with pytest.raises(ValueError, match="FusedAdder n"):
        lp.FusedAdder(0, 10)


# ---- block-scaled operands ------------------------------------------------------------------

def _log2(s):
    e = om.floor_log2(s)
    assert Fr(2) ** e == s
    return e


@pytest.mark.parametrize("bf,emin", [("mxfp8_e4m3", -6), ("mxfp6_e2m3", 0), ("mxfp4", 0)])
def test_mx_blocktensors_on_b200_mxf8f6f4(bf, emin):
    """Scale exponents join each product's exponent; 32 products per step, F = 25, RZ."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((3, 96)) * 2.0 ** rng.integers(-3, 4, (3, 96))).astype(np.float32)
    b = rng.standard_normal((96, 2)).astype(np.float32)
    c = rng.standard_normal((3, 2)).astype(np.float32)
    A, B = lp.quantize(a, bf), lp.quantize(b, bf, axis=-2)
    got = lp.matmul(A, B, "b200-mxf8f6f4", c)
    ea, sa = A.element_and_scale_values()
    eb, sb = B.element_and_scale_values()
    for i in range(3):
        for j in range(2):
            acc = Fr(float(c[i, j]))
            for k0 in range(0, 96, 32):
                terms = []
                for k in range(k0, k0 + 32):
                    x, y = Fr(float(ea[i, k])), Fr(float(eb[k, j]))
                    if x and y:
                        s1, s2 = Fr(float(sa[i, k])), Fr(float(sb[k, j]))
                        terms.append((x * s1 * y * s2, om.exponent(x, emin) + _log2(s1)
                                      + om.exponent(y, emin) + _log2(s2)))
                acc = om.fused_terms(terms, acc, 25, True, "truncate", -126,
                                     (24, -126, 127, "toward_zero"))
            assert bits(got[i, j]) == bits(to_f32(acc))


def test_nvfp4_blocktensors_on_b200_mxf4nvf4():
    """Groups of 16 products summed exactly times both UE4M3 scales; 4 group terms per step,
    F = 35, RZ; the tensor scales in the epilogue: round(alpha * acc + c), alpha = fl32(tA tB)."""
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((2, 128)) * 30).astype(np.float32)
    b = rng.standard_normal((128, 3)).astype(np.float32)
    c = rng.standard_normal((2, 3)).astype(np.float32)
    A, B = lp.quantize(a, "nvfp4"), lp.quantize(b, "nvfp4", axis=-2)
    assert A.tensor_scale != 1
    got = lp.matmul(A, B, "b200-mxf4nvf4", c)
    ea, sa = A.element_and_scale_values()
    eb, sb = B.element_and_scale_values()
    alpha = Fr(float(np.float32(A.tensor_scale) * np.float32(B.tensor_scale)))
    for i in range(2):
        for j in range(3):
            acc = Fr(0)
            for k0 in range(0, 128, 64):
                terms = []
                for g0 in range(k0, k0 + 64, 16):
                    v = sum((Fr(float(ea[i, k])) * Fr(float(eb[k, j])) for k in
                             range(g0, g0 + 16)), Fr(0)) * Fr(float(sa[i, g0])) * \
                        Fr(float(sb[g0, j]))
                    if v:
                        terms.append((v, om.floor_log2(v)))
                acc = om.fused_terms(terms, acc, 35, True, "truncate", -126,
                                     (24, -126, 127, "toward_zero"))
            want = om.round_ieee(alpha * acc + Fr(float(c[i, j])), 24, -126, 127,
                                 "toward_zero")
            assert bits(got[i, j]) == bits(to_f32(want))


FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def _scale_value(code, stype):
    """UE4M3 (bias 7, subnormals below 2^-6) or E8M0 (2^(code - 127)), from OCP / NVIDIA's
    definitions."""
    if stype == "ue8m0":
        return Fr(2) ** (int(code) - 127)
    e, m = int(code) >> 3, int(code) & 7
    return Fr(m, 8) * Fr(2) ** -6 if e == 0 else (1 + Fr(m, 8)) * Fr(2) ** (e - 7)


@pytest.mark.parametrize("blk, stype", [(16, "ue4m3"), (16, "ue8m0"), (32, "ue8m0")])
def test_group_rule_matches_the_rational_model(blk, stype, monkeypatch):
    """block_scales='group' (b200-mxf4nvf4) against tests/oracle_mma.group_step: group terms
    aligned on their scales' exponent sums, zero groups / zero scales / a zero addend at
    e_zero = -139, chains of four 64-long steps. Rows of A taken one at a time
    (GROUP_CHUNK) give the same bits, with stochastic rounding too."""
    rng = np.random.default_rng(blk + len(stype))
    M, K, N = 6, 256, 5
    bf = lp.BlockFormat("float4_e2m1fn", blk, "ue4m3" if stype == "ue4m3" else
                        "float8_e8m0fnu", "nvfp4" if stype == "ue4m3" else "floor")
    ca = rng.integers(0, 16, (M, K)).astype(np.uint8)
    cb = rng.integers(0, 16, (K, N)).astype(np.uint8)
    ca.reshape(M, K // 16, 16)[rng.random((M, K // 16)) < 0.25] = 0       # zero groups
    cb[:16, 0] = 8                                                        # -0 elements
    ca[0, 16:32] = [2, 10] * 8                                            # products cancel
    cb[16:32, 0] = 2
    lo, hi = (0, 0x7F) if stype == "ue4m3" else (0x60, 0x90)
    sa = rng.integers(lo, hi, (M, K // blk)).astype(np.uint8)
    sb = rng.integers(lo, hi, (K // blk, N)).astype(np.uint8)
    if stype == "ue4m3":
        sa[1, :4] = [0, 1, 3, 7]                                          # zero, subnormal
    else:                            # labels below e_zero: a zero group then sets E
        sa[3] = 0x0A
        sb[:, 1] = rng.integers(0x40, 0x60, K // blk)
    ca[3].reshape(4, 64)[:, :16] = 0                                      # one per step
    if (blk, stype) == (16, "ue8m0"):
        # row 3, column 4, first step: 2^-140 and -2^-172 beside a zero group. E = e_zero =
        # -139 keeps the second (2^-174 units), so RZ gives 2^-140 - 2^-149; a larger e_zero
        # would drop it and give 2^-140.
        ca[3, 16:48] = 0
        ca[3, 64:] = 0                                                    # later steps keep it
        ca[3, 16], ca[3, 32], cb[16, 4], cb[32, 4] = 2, 1, 2, 9           # 1 * 1, 0.5 * -0.5
        sa[3, 1:3], sb[1, 4], sb[2, 4] = 10, 104, 74                      # 2^-140, 2^-170
    A = lp.BlockTensor(ca.reshape(M, K // blk, blk), sa, np.float32(1), (M, K), 1, bf)
    B = lp.BlockTensor(np.ascontiguousarray(cb.T).reshape(N, K // blk, blk),
                       np.ascontiguousarray(sb.T), np.float32(1), (K, N), 0, bf)
    c = (rng.standard_normal((M, N)) * 2.0 ** rng.integers(-30, 30, (M, N))).astype(np.float32)
    c[0, :2] = 0
    c[3, 4] = 0
    got = lp.matmul(A, B, "b200-mxf4nvf4", c)

    def elem(code):
        return (-1 if code & 8 else 1) * Fr(FP4[code & 7])

    s_emin = -6 if stype == "ue4m3" else -127
    for i in range(M):
        for j in range(N):
            acc = Fr(float(c[i, j]))
            for k0 in range(0, K, 64):
                groups = []
                for g0 in range(k0, k0 + 64, 16):
                    prods = [elem(ca[i, k]) * elem(cb[k, j]) for k in range(g0, g0 + 16)]
                    x, y = _scale_value(sa[i, g0 // blk], stype), \
                        _scale_value(sb[g0 // blk, j], stype)
                    zero = x == 0 or y == 0 or not any(prods)
                    groups.append((sum(prods, Fr(0)) * x * y, None if zero else
                                   om.exponent(x, s_emin) + om.exponent(y, s_emin)))
                acc = om.group_step(groups, acc, 35, -126, -139,
                                    (24, -126, 127, "toward_zero"))
            assert Fr(float(got[i, j])) == acc, (i, j, float(acc), got[i, j])
    sr = dataclasses.replace(lp.hardware.preset("b200-mxf4nvf4"), rounding="stochastic")
    whole = lp.matmul(A, B, sr, c, seed=5)
    monkeypatch.setattr(lp.accumulate, "GROUP_CHUNK", 1)
    assert np.array_equal(lp.matmul(A, B, "b200-mxf4nvf4", c).view(np.uint32),
                          got.view(np.uint32))
    assert np.array_equal(lp.matmul(A, B, sr, c, seed=5).view(np.uint32),
                          whole.view(np.uint32))


def test_blocktensor_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32)).astype(np.float32)
    A = lp.quantize(x, "mxfp8_e4m3")
    with pytest.raises(ValueError, match="axis=-2"):
        lp.matmul(A, lp.quantize(x.T.copy(), "mxfp8_e4m3"), "b200-mxf8f6f4")
    with pytest.raises(ValueError, match="fused-adder"):
        lp.matmul(A, lp.quantize(x.T.copy(), "mxfp8_e4m3", axis=-2), "exact")
    with pytest.raises(ValueError, match="powers of two"):
        lp.matmul(lp.quantize(x, "nvfp4"), lp.quantize(x.T.copy(), "nvfp4", axis=-2),
                  "b200-mxf8f6f4")
    with pytest.raises(TypeError, match="not a mix"):
        lp.matmul(A, x.T, "b200-mxf8f6f4")


def test_deepseek_style_scales_applied_at_promotion():
    """DeepSeek-V3 §3.3.2: 128-long partial sums (h100-fp8 steps) of the unscaled FP8
    elements, promoted into float32 as outer = RN(s * partial + outer), s = RN(sA * sB)."""
    bf = lp.BlockFormat("float8_e4m3fn", k=128, scale_fmt="float8_e8m0fnu", scale_rule="floor")
    rng = np.random.default_rng(4)
    a = (rng.standard_normal((2, 256)) * 2.0 ** rng.integers(-4, 5, (2, 1))).astype(np.float32)
    b = rng.standard_normal((256, 2)).astype(np.float32)
    A, B = lp.quantize(a, bf), lp.quantize(b, bf, axis=-2)
    h = lp.hardware.preset("h100-fp8")
    acc = lp.Accumulator(h.fmt, h.rounding, fused=h.fused, input_formats=h.input_formats,
                         addend_format="float32", promote_every=128, block_scales="promotion")
    c = rng.standard_normal((2, 2)).astype(np.float32)
    got = lp.matmul(A, B, acc, c)
    ea, sa = A.element_and_scale_values()
    eb, sb = B.element_and_scale_values()
    for i in range(2):
        for j in range(2):
            outer = Fr(float(c[i, j]))
            for k0 in (0, 128):
                part = om.fused_dot([Fr(float(v)) for v in ea[i, k0:k0 + 128]],
                                    [Fr(float(v)) for v in eb[k0:k0 + 128, j]], Fr(0), 32, 13,
                                    True, "truncate", -6, -6, -126,
                                    (14, -126, 127, "toward_zero"))
                s = om.round_ieee(Fr(float(sa[i, k0])) * Fr(float(sb[k0, j])), 24, -126, 127,
                                  "nearest_even")
                outer = om.round_ieee(s * part + outer, 24, -126, 127, "nearest_even")
            assert bits(got[i, j]) == bits(to_f32(outer))


def test_fused_units_follow_ieee_for_inf_and_nan():
    """IEEE 754 §6: Inf * finite = Inf, 0 * Inf = NaN, Inf - Inf = NaN, NaN propagates; the
    step after a non-finite one keeps it."""
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    a = np.float32([[inf] + [1] * 31, [0] + [1] * 31, [inf, -inf] + [1] * 30,
                    [nan] + [1] * 31, [1, -inf] + [1] * 30])
    b = np.ones((32, 2), np.float32)
    b[0, 1] = inf                                     # column 1: a[:, 0] * Inf
    got = lp.matmul(a, b, "h100-fp16")
    assert got[0, 0] == np.inf and got[1, 0] == 32 - 1 and np.isnan(got[2, 0])
    assert np.isnan(got[3, 0]) and got[4, 0] == -np.inf
    assert np.isnan(got[1, 1]) and np.isnan(got[4, 1]) and got[0, 1] == np.inf


@pytest.mark.parametrize("acc", ["fp32-sequential", "exact", "h100-fp16", "deepseek-v3-fp8",
                                 lp.Accumulator("bfloat16"),
                                 lp.Accumulator("float32", order="pairwise")])
def test_nan_results_are_one_nan(acc):
    """Inf - Inf, 0 * Inf and a negative NaN operand all give +NaN (0x7FC00000 in float32),
    whatever the model and the machine's default NaN; the matrix-unit instructions give the
    all-ones NaN 0x7FFFFFFF (MMA-Sim; tests/test_mmasim.py checks them against it)."""
    nan = 0x7FFFFFFF if lp.hardware.resolve(acc).nan == "all_ones" else 0x7FC00000
    A = np.array([[np.inf, 1.0], [-np.nan, 1.0], [np.inf, -np.inf]], np.float32)
    B = np.array([[1.0], [1.0]], np.float32)
    c = np.array([[-np.inf], [0.0], [0.0]], np.float32)
    B2 = np.array([[0.0], [1.0]], np.float32)
    for b, cc in ((B, c), (B2, None)):
        got = lp.matmul(A, b, acc, cc)
        assert np.array_equal(got.view(np.uint32), np.full(got.shape, nan, np.uint32))
        assert np.array_equal(lp.matmul(A, b, acc, cc, dtype=np.float64).view(np.uint64),
                              np.full(got.shape, 0x7FFFFFFFFFFFFFFF if nan == 0x7FFFFFFF else
                                      0x7FF8000000000000, np.uint64))


def test_nan_and_inf_products_arguments():
    with pytest.raises(ValueError, match="nan='x' is not allowed; choose one of"):
        lp.Accumulator("float32", nan="x")
    with pytest.raises(ValueError, match="belong to the floored join"):
        lp.FusedAdder(8, 24, inf_products=True)
    with pytest.raises(TypeError, match="positive_zero must be True or False, got 1"):
        lp.Accumulator("float32", positive_zero=1)
    with pytest.raises(ValueError, match="zero_exponent=1.5 is not allowed"):
        lp.FusedAdder(8, 24, zero_exponent=1.5)
    z = np.array([[-0.0, -0.0]])
    assert np.signbit(lp.matmul(z, np.ones((2, 1)), "fp32-sequential", z[:, :1]))[0, 0]
    assert not np.signbit(lp.matmul(z, np.ones((2, 1)), lp.Accumulator(
        "float32", positive_zero=True), z[:, :1]))[0, 0]
    assert lp.hardware.preset("mi300-bf16").fused.inf_products
    assert not lp.hardware.preset("mi300-fp8").fused.inf_products


def test_instructions_name_what_exists_and_refuse_the_rest():
    """``lp.hardware.instruction`` per architecture and instruction (parameters from MMA-Sim,
    checked bit for bit in tests/test_mmasim.py); every short preset is one instruction."""
    acc = lp.hardware.instruction("sm_90", "wgmma", "e4m3", "e5m2", "f32")
    assert (acc.fused.n, acc.fused.frac_bits, acc.fmt.name) == (32, 13, "e8m13")
    assert [f.name for f in acc.input_formats] == ["float8_e4m3fn", "float8_e5m2"]
    h = lp.hardware.preset("h100-fp8")
    assert (h.fmt, h.rounding, h.fused, h.addend_format) == (
        acc.fmt, acc.rounding, acc.fused, acc.addend_format)
    assert lp.hardware.instruction("sm_120", "mma.sync", "e2m1").fused.n == 32
    assert lp.hardware.instruction("sm_70", "mma.sync", "f16", d="f16").fmt.name == "float16"
    for args, msg in [(("sm_91", "mma.sync", "f16"), "arch='sm_91' is not allowed"),
                      (("sm_90", "tcgen05.mma", "f16"), "op='tcgen05.mma' is not allowed on sm_90"),
                      (("sm_90", "wgmma", "e2m1"), "a='e2m1' is not allowed for sm_90 wgmma"),
                      (("sm_90", "wgmma", "f16", "bf16"), "b='bf16' is not allowed with a='f16'"),
                      (("sm_80", "mma.sync", "bf16", "bf16", "f16"), "d='f16' is not allowed"),
                      (("gfx942", "v_mfma", "e4m3"), "a='e4m3' is not allowed for gfx942"),
                      (("gfx942", "v_mfma", "fp8", "f16"), "b='f16' is not allowed")]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            lp.hardware.instruction(*args)
    assert len(lp.hardware.instructions()) == len(set(lp.hardware.instructions())) == 175
    cdna2 = lp.hardware.instruction("gfx90a", "v_mfma", "bf16_1k")
    assert (cdna2.order, cdna2.block, cdna2.ftz, cdna2.products.name) == (
        "blocked_pairwise", 4, True, "float32")
    with pytest.raises(ValueError, match="ftz=True .flush subnormals to zero. is modelled for"):
        lp.Accumulator("float32", order="exact", ftz=True)
    with pytest.raises(ValueError, match="order='blocked_pairwise' needs block="):
        lp.Accumulator("float32", order="blocked_pairwise")
    with pytest.raises(ValueError, match=re.escape("d='f32' is not allowed for sm_80 mma.sync")):
        lp.hardware.instruction("sm_80", "mma.sync", "f64", "f64", "f32")
    f64 = lp.hardware.instruction("sm_90", "mma.sync", "f64", d="f64")
    assert (f64.fmt.name, f64.order, f64.fused) == ("float64", "sequential", None)
    cdna1 = lp.hardware.instruction("gfx908", "v_mfma", "bf16")
    assert (cdna1.order, cdna1.block) == ("exact", 2)


def test_float64_inputs_are_one_fma_chain_or_refused():
    """Products of float64 values need 106 bits: the FMA chain of the f64 instructions (checked
    against exact rationals: each step is the exact a*b + d rounded once), and a clear error
    for every other model of such inputs."""
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((3, 7)), rng.standard_normal((7, 2)) * 1e-3
    C = rng.standard_normal((3, 2))
    got = lp.matmul(A, B, lp.hardware.instruction("sm_80", "mma.sync", "f64", d="f64"), c=C)
    for i in range(3):
        for j in range(2):
            d = C[i, j]
            for k in range(7):
                d = float(Fr(A[i, k]) * Fr(B[k, j]) + Fr(d))     # correctly rounded
            assert got[i, j] == d
    for acc in (lp.Accumulator("float64", order="pairwise", input_formats=("float64",) * 2),
                lp.Accumulator("float32", input_formats=("float64", "float64")),
                lp.Accumulator("float64", "toward_zero", input_formats=("float64",) * 2)):
        with pytest.raises(ValueError, match=r"products need 106 bits .* float64 fused "
                                             r"multiply-adds"):
            lp.matmul(A, B, acc)


def test_exact_order_with_a_block_rounds_once_per_block():
    """order="exact", block=L (AMD CDNA1 MFMA): d = round(d + the exact sum of the next L
    products), against exact rationals."""
    rng = np.random.default_rng(6)
    A = lp.round(rng.standard_normal((4, 10)) * 100, "float16", dtype=np.float64)
    B = lp.round(rng.standard_normal((10, 3)) / 7, "float16", dtype=np.float64)
    acc = lp.Accumulator("float32", order="exact", block=4, input_formats=("float16",) * 2)
    got = lp.matmul(A, B, acc)
    assert got.dtype == np.float32
    for i in range(4):
        for j in range(3):
            d = Fr(0)
            for k0 in range(0, 10, 4):
                d = om.round_ieee(d + sum(Fr(A[i, k]) * Fr(B[k, j])
                                          for k in range(k0, min(k0 + 4, 10))),
                                  24, -126, 127, "nearest_even")
            assert Fr(float(got[i, j])) == d
    with pytest.raises(ValueError, match="order='exact' takes block=None"):
        lp.Accumulator("float32", order="exact", block=0)
    # the MI300 fp8 unit takes the fnuz formats, and says so
    a = np.float32([[448.0]])
    with pytest.raises(ValueError, match="float8_e4m3fnuz values"):
        lp.matmul(a, np.float32([[1.0]]), "mi300-fp8")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), block=st.integers(1, 8), K=st.integers(1, 40),
       ins=st.sampled_from(["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]),
       out=st.sampled_from([("float32", "nearest_even"), ("float32", "toward_zero"),
                            ("float16", "nearest_even"), ("bfloat16", "up"),
                            ("e8m13", "down")]))
def test_exact_blocks_with_cancellation_match_the_rationals(seed, block, K, ins, out):
    """order="exact" with a block: each block's exact sum is rounded to odd by TwoSums
    (``_odd_block``) before its one rounding. Products that cancel to a few bits, addends
    from far above to far below them, and overflow, against exact rationals."""
    rng = np.random.default_rng(seed)
    a = values(rng, (4, K), ins, spread=10)
    b = values(rng, (K, 3), ins, spread=10)
    b[:, 1] = -b[:, 0]                       # column 1 cancels column 0's products ...
    a[1::2, 1::2] = a[::2, ::2][:a[1::2].shape[0], :a[:, 1::2].shape[1]]   # ... and rows pair
    b[1::2, 2] = -b[::2, 2][:b[1::2].shape[0]] * (1 + 2.0 ** -3)
    b = values_of(b, ins)
    acc_name, mode = out
    p, emin, emax = ACC[acc_name]
    c = values(rng, (4, 3), "bfloat16", spread=60) if acc_name in ("float32", "bfloat16",
                                                                  "e8m13") else \
        values(rng, (4, 3), "float16", spread=12)
    acc = lp.Accumulator(fmt(acc_name), mode, order="exact", block=block,
                         input_formats=(ins, ins))
    got = lp.matmul(a, b, acc, c)
    for i in range(4):
        for j in range(3):
            d = Fr(float(c[i, j]))
            for k0 in range(0, K, block):
                d = om.round_ieee(d + sum(Fr(float(a[i, k])) * Fr(float(b[k, j]))
                                          for k in range(k0, min(k0 + block, K))),
                                  p, emin, emax, mode)
            assert same(got[i, j], d), (i, j, float(d), got[i, j])


def values_of(x, name):
    """x rounded into an input format (ml_dtypes), non-finite values as 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = x.astype(IN[name][0]).astype(np.float32)
    return np.where(np.isfinite(v), v, 0).astype(np.float32)


def test_floored_join_arguments():
    with pytest.raises(ValueError, match="sum_bits=.*align_addend=False"):
        lp.FusedAdder(8, 24, sum_bits=31)
    with pytest.raises(ValueError, match="sum_bits=20 is not allowed"):
        lp.FusedAdder(8, 24, False, sum_bits=20)
    with pytest.raises(ValueError, match="give sum_bits= too"):
        lp.FusedAdder(8, 24, False, split=2)
    with pytest.raises(ValueError, match="split=0 is not allowed"):
        lp.FusedAdder(8, 24, False, sum_bits=31, split=0)
    with pytest.raises(ValueError, match="promote_every with a floored join"):
        lp.Accumulator("float32", fused=lp.FusedAdder(8, 24, False, sum_bits=31),
                       input_formats=("float16", "float16"), promote_every=16)


@pytest.mark.parametrize("kind,mode,overflow", [(1, "nearest_even", "inf"),
                                                (2, "toward_zero", "inf"),
                                                (3, "toward_zero", "inf_always")])
def test_f32_output_by_one_conversion_is_mpfrs_rounding(kind, mode, overflow):
    """The fused kernel's float32 output step (``_accumulate._f32_out``: the IEEE conversion,
    stepped toward zero for RZ) against MPFR at float32's precision and range: subnormals,
    ties, the top binade, past the largest value and past 2^128."""
    import gmpy2
    from lowprec import _accumulate as A
    rng = np.random.default_rng(kind)
    top = float(np.finfo(np.float32).max)
    v = np.concatenate([
        rng.standard_normal(300) * np.exp2(rng.integers(-160, 129, 300)),
        np.float64([0.0, -0.0, 2.0**-149, 2.0**-150, 3 * 2.0**-151, 2.0**-126 * (1 - 2**-30),
                    top, top * (1 + 2**-25), top * (1 + 2**-24), 2.0**128 * (1 - 2**-50),
                    2.0**128, 2.0**129, 1 + 2**-24, 1 + 3 * 2**-25])])
    v = np.concatenate([v, -v])
    rnd = {"nearest_even": gmpy2.RoundToNearest, "toward_zero": gmpy2.RoundToZero}[mode]
    ctx = gmpy2.context(precision=24, emin=-148, emax=128, subnormalize=True, round=rnd)
    for x in v:
        got = A._f32_out(float(x), kind)
        with ctx:
            want = float(gmpy2.mpfr(float(x), 53) * 1)          # MPFR rounds the exact x once
        if abs(x) >= 2.0**128:                                   # the overflow policy decides
            want = math.copysign(np.inf if (overflow == "inf_always" or mode ==
                                            "nearest_even") else top, x)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), x
