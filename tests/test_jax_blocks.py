"""lowprec_jax.blocks: quantize / dequantize / fake_quantize for the power-of-two rules and
NVFP4 give the core's codes, scale codes, tensor scale and values (the core itself is checked
against the rational oracle); lowprec_jax._f32's IEEE float32 arithmetic against NumPy's."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
from helpers import block_inputs as data
from lowprec_jax import blocks as jb

PRESETS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8",
           "mxfp8_e4m3_rceil", "mxfp8_e5m2_rceil", "mxfp4_rceil", "bfp16", "nvfp4", "nvfp4_2d", "nvfp4_torchao"]




@settings(max_examples=14, deadline=None)
@given(preset=st.sampled_from(PRESETS), scale=st.sampled_from([1.0, 2.0**-120, 2.0**100]),
       mode=st.sampled_from(["nearest_even", "toward_zero", "up", "odd", "stochastic"]),
       shape_axis=st.sampled_from([((4, 64), -1), ((64, 3), 0), ((2, 96, 2), 1), ((3, 40), -1)]),
       seed=st.integers(0, 2**32 - 1), specials=st.booleans())
def test_codes_scales_and_values_equal_the_core(preset, scale, mode, shape_axis, seed,
                                                specials):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    x = (data(rng, shape, specials) * np.float32(scale)).astype(np.float32)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    try:
        want = lp.quantize(x, preset, axis, mode, **kw)
    except ValueError as e:                       # e.g. an axis the preset cannot pad
        with pytest.raises(ValueError, match=re.escape(str(e).split(";")[0][:30])):
            jb.quantize(x, preset, axis, mode, **kw)
        return
    q = jb.quantize(x, preset, axis, mode, **kw)     # jitted inside (cached per format)
    assert np.array_equal(np.asarray(q.codes), want.codes)
    assert np.array_equal(np.asarray(q.scale_codes), want.scale_codes)
    assert np.float32(q.tensor_scale).view(np.uint32) == want.tensor_scale.view(np.uint32)
    assert np.array_equal(np.asarray(jb.dequantize(q)).view(np.uint32),
                          want.dequantize().view(np.uint32))
    got = np.asarray(jb.fake_quantize(x, preset, axis, mode, **kw))
    assert np.array_equal(got.view(np.uint32),
                          lp.fake_quantize(x, preset, axis, mode, **kw).view(np.uint32))


@pytest.mark.parametrize("dt", [np.float16, jnp.bfloat16])
def test_half_inputs_and_rbits(dt):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64)).astype(dt)
    rb = rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    for kw in (dict(), dict(rounding="stochastic", rbits=rb, sr_bits=4, sr_variant="src")):
        want = lp.fake_quantize(np.asarray(x), "mxfp4", **kw)
        got = np.asarray(jb.fake_quantize(x, "mxfp4", **kw))
        assert got.dtype == want.dtype
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_rules_left_to_the_core_are_said():
    x = np.ones((2, 32), np.float32)
    with pytest.raises(NotImplementedError, match="needs lp.quantize"):
        jb.quantize(x, "nvfp4_4over6")


@pytest.mark.parametrize("rule", ["nvfp4", "nvfp4_torchao"])
def test_nvfp4_tensor_amax_and_to_core(rule):
    x = np.random.default_rng(3).standard_normal((4, 32)).astype(np.float32)
    x[3, 5:9] = [np.inf, -np.inf, 1e-40, -0.0]
    for amax in (1.0, 100.0, 0.0, np.inf, None, 1e-40, 2.0**-126, 2.0**-118, 3e-35,
                 2688 / 3.4028234663852886e38, 3.4028234663852886e38):
        want = lp.quantize(x, rule, tensor_amax=amax)
        got = jax.jit(lambda v, a=amax: jb.quantize(v, rule, tensor_amax=a))(x).to_core()
        assert np.array_equal(got.codes, want.codes)
        assert np.array_equal(got.scale_codes, want.scale_codes)
        assert got.tensor_scale.view(np.uint32) == want.tensor_scale.view(np.uint32)
    with pytest.raises(ValueError, match="tensor_amax"):
        jb.quantize(x, "mxfp4", tensor_amax=1.0)


def _edge_blocks(rng, rows=12, k=16):
    """Rows of 16-element blocks spread over float32's whole range: normal blocks scaled by
    2^e for e in [-149, 127], all-subnormal blocks, subnormals mixed with normals, zeros
    and signed zeros, so that the blocks' multipliers range from 2^-126 to FLT_MAX and
    subnormal x meet huge multipliers (what XLA's CPU would read as zero)."""
    x = rng.standard_normal((rows, 4 * k)).astype(np.float64)
    e = rng.integers(-149, 128, (rows, 4, 1))
    x = (x.reshape(rows, 4, k) * np.exp2(e.astype(np.float64))).reshape(rows, 4 * k)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    sub = rng.integers(0, 2**23, (rows, 4 * k), dtype=np.uint64).astype(np.uint32)
    sub |= rng.integers(0, 2, (rows, 4 * k), dtype=np.uint64).astype(np.uint32) << 31
    pick = rng.integers(0, 4, (rows, 4, 1)).repeat(k, axis=2).reshape(rows, 4 * k)
    x = np.where(pick == 0, sub.view(np.float32), x)                 # all-subnormal blocks
    mixed = (pick == 1) & (rng.random((rows, 4 * k)) < 0.5)
    x = np.where(mixed, sub.view(np.float32), x)                     # subnormals among normals
    x[0, :3] = [0.0, -0.0, 1e-45]
    return np.where(np.isfinite(x), x, np.float32(3e38)).astype(np.float32)


@pytest.mark.parametrize("rule, mode", [("nvfp4", "nearest_even"), ("nvfp4", "up"),
                                        ("nvfp4", "odd"), ("nvfp4", "stochastic"),
                                        ("nvfp4_torchao", "up")])
def test_two_level_values_at_the_float32_edges(rule, mode):
    """Codes, scale codes and values are the core's bits for blocks spread over all of
    float32: subnormal x against multipliers up to FLT_MAX (what XLA's CPU would read as
    zero), products that round to zero in float32 or to a subnormal, every rounding mode
    (``up`` and ``odd`` tell a tiny product from zero), with and without a calibrated tensor
    amax (torchao's rule: the amaxes it accepts)."""
    rng = np.random.default_rng(19)
    amaxes = (None, 1e-40, 2.0**-126, 1.0, 3.4e38) if rule == "nvfp4" else (None, 1.0, 3.4e38)
    kw = dict(seed=5) if mode == "stochastic" else {}

    def run(v, a):
        q = jb.quantize(v, rule, -1, mode, tensor_amax=a, **kw)
        return q.codes, q.scale_codes, jb.fake_quantize(v, rule, -1, mode, tensor_amax=a, **kw)
    calibrated = jax.jit(run)                        # one compile for every calibrated amax
    for amax in amaxes:
        x = _edge_blocks(rng)
        want = lp.quantize(x, rule, -1, mode, tensor_amax=amax, **kw)
        codes, scales, values = (jax.jit(lambda v: run(v, None))(x) if amax is None else
                                 calibrated(x, np.float32(amax)))
        assert np.array_equal(np.asarray(codes), want.codes), amax
        assert np.array_equal(np.asarray(scales), want.scale_codes), amax
        assert np.array_equal(np.asarray(values).view(np.uint32), lp.fake_quantize(
            x, rule, -1, mode, tensor_amax=amax, **kw).view(np.uint32)), amax


def _normal_blocks(rng, g, rows=8, k=16):
    """Rows of 16-element blocks with no subnormal element under a largest magnitude g: block
    amaxes g * 2^-e for e from 0 to where they meet 2^-126, elements down to 2^-126 (the
    smallest normal, exactly, in some blocks) and zeros of both signs."""
    top = np.log2(np.float64(g))
    e = rng.uniform(0, max(top + 126, 0), (rows, 4, 1))
    x = rng.uniform(-1, 1, (rows, 4, k)) * np.exp2(top - e)
    x[..., 0] = np.exp2(top - e[..., 0])                  # each block's amax
    x = x.reshape(rows, 4 * k)
    x[0, 0] = g
    x[1, :4] = [2.0**-126, -2.0**-126, 0.0, -0.0]
    x = np.where(np.abs(x) < 2.0**-126, np.copysign(2.0**-126, x) * (rng.random(x.shape) < .5),
                 x)
    return x.astype(np.float32)


def _native(x, preset, mode, kw, amax=None):
    bf = lp.blocks.block_format(preset)
    P = lp.plan(bf.elem, mode, "saturate", sr_bits=kw.get("sr_bits"),
                sr_variant=kw.get("sr_variant", "srff"))
    xb = jb._blocked(jnp.asarray(x).view(jnp.uint32), -1, bf)
    g = None if amax is None else jnp.float32(amax).view(jnp.uint32)
    return jb.native_path(bf, P) and bool(jb.native_ok(xb, g, bf, P))


def _assert_core_bits(x, preset, mode, kw, amax=None, note=None):
    t = {} if amax is None else dict(tensor_amax=amax)
    q, values = jax.jit(lambda v: (jb.quantize(v, preset, -1, mode, **t, **kw),
                                   jb.fake_quantize(v, preset, -1, mode, **t, **kw)))(x)
    want = lp.quantize(x, preset, -1, mode, **t, **kw)
    assert np.array_equal(np.asarray(q.codes), want.codes), note
    assert np.array_equal(np.asarray(q.scale_codes), want.scale_codes), note
    assert np.float32(q.tensor_scale).view(np.uint32) == want.tensor_scale.view(np.uint32), note
    assert np.array_equal(np.asarray(values).view(np.uint32), lp.fake_quantize(
        x, preset, -1, mode, **t, **kw).view(np.uint32)), note


MODES = [("nearest_even", {}), ("nearest_away", {}), ("stochastic", dict(seed=7)),
         ("stochastic", dict(seed=8, sr_bits=4, sr_variant="src")),
         ("stochastic", dict(seed=9, sr_bits=8, sr_variant="srf"))]


@pytest.mark.parametrize("mode, kw", MODES)
def test_nvfp4_native_float32_at_its_edges(mode, kw):
    """Where ``native_ok`` lets NVFP4's scale arithmetic run on XLA's own float32 (which
    flushes subnormals), the codes, scale codes, tensor scale and values are still the core's
    bits: global amaxes at the edge of the proof (2^-100, one ulp above, FLT_MAX), block amaxes
    down to the smallest normal, calibrated amaxes below and above the data's (saturating
    blocks, blocks whose scale rounds to zero); and one ulp below 2^-100, where the core
    answers through the callback."""
    rng = np.random.default_rng(23)
    F_MAX = float(np.finfo(np.float32).max)
    up = float(np.nextafter(np.float32(2.0**-100), np.float32(1)))
    down = float(np.nextafter(np.float32(2.0**-100), np.float32(0)))
    for g in (2.0**-100, up, 2.0**-60, 1.0, 2.0**100, F_MAX, down):
        x = _normal_blocks(rng, g)
        for amax in (g, g * 0.25, min(g * 2.0**20, F_MAX), g * 2.0**-30):
            assert _native(x, "nvfp4", mode, kw, amax) == (amax >= 2.0**-100), (g, amax)
            _assert_core_bits(x, "nvfp4", mode, kw, np.float32(amax), (g, amax))


@pytest.mark.parametrize("where", ["nan_block", "other_block"])
def test_nvfp4_global_amax_counts_the_finite_values_of_a_nan_block(where):
    """The global amax is the largest |x| that is not NaN (TE), whichever block holds it: here
    the tensor's largest value sits in a block that also holds a NaN (the native path takes g
    from the block amaxes, so such a tensor goes to the core), or in another block."""
    rng = np.random.default_rng(29)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[1, 3] = np.nan
    x[1, 5 if where == "nan_block" else 40] = 1000.0
    for mode, kw in (("nearest_even", {}), ("stochastic", dict(seed=3))):
        _assert_core_bits(x, "nvfp4", mode, kw, None, (where, mode))


def test_nvfp4_native_float32_with_a_jit_time_constant_amax():
    """A tensor amax known when jitting lets XLA fold the tensor scales at compile time (and
    it rewrites x / c as x * (1 / c), which is not IEEE division: the native path divides only
    constants by data). Twelve calibrated amaxes in the native range, as constants."""
    rng = np.random.default_rng(37)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    amaxes = np.exp2(rng.uniform(-100, 127, 12)).astype(np.float32)
    for amax in amaxes:
        got = jax.jit(lambda v: jb.fake_quantize(v, "nvfp4", tensor_amax=float(amax)))(x)
        want = lp.fake_quantize(x, "nvfp4", tensor_amax=amax)
        assert _native(x, "nvfp4", "nearest_even", {}, amax)
        assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32)), amax


@pytest.mark.parametrize("preset", ["mxfp8_e4m3", "mxfp8_e5m2_rceil", "mxfp4", "mxfp4_rceil",
                                    "mxfp6_e2m3", "mxint8"])
@pytest.mark.parametrize("mode, kw", MODES[::2])
def test_pow2_native_float32_at_its_edges(preset, mode, kw):
    """The power-of-two rules on XLA's own float32 (``quantize``): a block whose amax is
    exactly the proof's bound, the smallest normal, elements down to it (scaled values that
    flush to zero), the largest float32 (scales clipped); one ulp below the bound sends the
    tensor to the core. Bits equal to the core either way."""
    rng = np.random.default_rng(31)
    bf = lp.blocks.block_format(preset)
    T = 2.0 ** -126
    x = rng.uniform(-1, 1, (6, 4 * bf.k)) * np.exp2(rng.uniform(-40, 0, (6, 4 * bf.k)))
    x = x * np.exp2(rng.uniform(np.log2(T), 127, (6, 1)))
    x = np.where(np.abs(x) < 2.0**-126, 2.0**-126, x).astype(np.float32)
    x[0, :bf.k] = np.float32(2.0**-126)
    x[0, 0] = T                                          # a block at the bound
    x[1, :2] = [np.finfo(np.float32).max, -np.finfo(np.float32).max]
    assert _native(x, preset, mode, kw)
    _assert_core_bits(x, preset, mode, kw, note="at the bound")
    x[0, 0] = np.nextafter(np.float32(T), np.float32(0))         # subnormal
    assert not _native(x, preset, mode, kw)
    _assert_core_bits(x, preset, mode, kw, note="below the bound")


def test_nvfp4_native_and_core_paths_under_vmap():
    """Under ``vmap`` each tensor of the batch takes its own path (a tensor whose amax is
    below 2^-100 goes to the core, the others stay native, subnormal elements included:
    ``NativeF32.scale_by``) and all give the core's values, nearest and stochastic."""
    rng = np.random.default_rng(29)
    x = rng.standard_normal((3, 4, 32)).astype(np.float32)
    x[1, 2, 3] = 1e-40
    x[1, 3, :16] = rng.integers(1, 1 << 23, 16).astype(np.uint32).view(np.float32)
    x[2] *= np.float32(2.0**-110)
    for kw in (dict(), dict(rounding="stochastic", seed=3)):
        got = np.asarray(jax.jit(jax.vmap(lambda v: jb.fake_quantize(v, "nvfp4", **kw)))(x))
        for i in range(3):
            assert np.array_equal(got[i].view(np.uint32),
                                  lp.fake_quantize(x[i], "nvfp4", **kw).view(np.uint32)), i


SPECIAL_BITS = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 1, 0x7F7FFFFF,
                         0x00800000, 0x007FFFFF, 0x3F800000, 0xBF800000], np.uint32)


def _random_bits(rng, n):
    b = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    kind = rng.integers(0, 4, n)
    b[kind == 0] &= np.uint32(0x807FFFFF)                          # subnormals
    b[kind == 1] = (b[kind == 1] & np.uint32(0x80FFFFFF)) | np.uint32(0x3F000000)
    return b


@pytest.mark.parametrize("op", ["mul", "div"])
def test_f32_arithmetic_is_ieee_with_subnormals(op):
    """XLA's CPU backend flushes subnormals; _f32 must not: NumPy (IEEE hardware) decides, on
    every pair of special values and 300000 random pairs, a quarter of them subnormal."""
    from lowprec_jax import _f32
    rng = np.random.default_rng(11)
    n = len(SPECIAL_BITS)
    a = np.concatenate([np.repeat(SPECIAL_BITS, n), _random_bits(rng, 300_000)])
    b = np.concatenate([np.tile(SPECIAL_BITS, n), _random_bits(rng, 300_000)])
    with np.errstate(all="ignore"):
        want = getattr(np, {"mul": "multiply", "div": "divide"}[op])(
            a.view(np.float32), b.view(np.float32))
    got = np.asarray(jax.jit(getattr(_f32, op))(a, b)).view(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "float6_e3m2fn"])
def test_native_nearest_even_rounding_of_scales_equals_the_core(fmt):
    """``NativeF32.round_nearest_even`` (NVFP4's block scales on the native path: a cut on
    the integers in the normal range, the backend's float32 addition below it) against the
    core's rounding (``lp.round``, nearest even, saturating) on non-negative float32 inputs:
    every tie of every binade up to past the largest value, its neighbours one ulp away,
    200000 random patterns and Inf. Subnormal inputs read as 0 on XLA's CPU, and round to 0
    either way (tested by the block tests)."""
    from lowprec_jax import _f32
    P = lp.plan(fmt, "nearest_even", "saturate")
    d = 23 - P.man_bits
    top = int(np.asarray(P.max_pos_bits)) + (4 << 23)
    grid = np.arange(0x00800000 >> d, top >> d, dtype=np.uint32) << np.uint32(d)
    tie = grid | np.uint32(1 << (d - 1))
    rng = np.random.default_rng(5)
    b = np.concatenate([grid, tie, tie - np.uint32(1), tie + np.uint32(1),
                        rng.integers(0x00800000, top, 200_000, dtype=np.uint32),
                        np.array([0, 0x7F800000], np.uint32)])
    got = np.asarray(jax.jit(lambda v: _f32.NativeF32.round_nearest_even(v, P))(b))
    want = lp.round(b.view(np.float32), fmt, "nearest_even", "saturate", dtype=np.float32)
    assert np.array_equal(got, want.view(np.uint32))


def test_fake_quantize_gradient_is_straight_through_or_none():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32))
    w = jnp.asarray(np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32))
    g = jax.jit(jax.grad(lambda v: jnp.sum(jb.fake_quantize(v, "mxfp4") * w)))(x)
    assert np.array_equal(np.asarray(g).view(np.uint32), np.asarray(w).view(np.uint32))
    g0 = jax.grad(lambda v: jnp.sum(jb.fake_quantize(v, "mxfp4", grad="none") * w))(x)
    assert not np.asarray(g0).any()


def test_fake_quantize_can_quantize_the_gradient():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32))
    w = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    g = jax.grad(lambda v: jnp.sum(jb.fake_quantize(v, "mxfp8_e4m3", grad_fmt="mxfp8_e5m2",
                                                    grad_rounding="stochastic",
                                                    grad_kw=dict(seed=9)) * w))(x)
    want = lp.fake_quantize(w, "mxfp8_e5m2", -1, "stochastic", seed=9)
    assert np.array_equal(np.asarray(g).view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("preset", ["mxfp8_e4m3_rceil", "mxfp8_e5m2_rceil"])
def test_rceil_scale_of_a_block_whose_amax_over_the_max_is_subnormal(preset):
    """rceil computes amax x fl32(1/448) in IEEE float32; for amax near 4e-36 the product is a
    float32 subnormal, which XLA's CPU backend would flush (found by CI: scale code 0 instead
    of 1). Oracle: the scale exponent from the exact product, by hand."""
    x = np.zeros((1, 32), np.float32)
    x[0, 0] = np.float32(3.77798496e-36)
    recip = np.float32(1) / np.float32(lp.block_format(preset).elem.max)
    prod = np.float64(x[0, 0]) * np.float64(recip)          # exact in float64
    p32 = np.float32(prod)                                    # IEEE float32 rounding
    m, e = np.frexp(np.float64(p32))
    want_exp = e - 1 + (0 if m == 0.5 else 1)                 # round up to a power of two
    want_code = max(want_exp, -127) + 127
    q = jb.quantize(x, preset)
    assert int(np.asarray(q.scale_codes).ravel()[0]) == want_code == int(
        lp.quantize(x, preset).scale_codes.ravel()[0])


POW2_IN_PLACE = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4",
                 "mxfp8_e4m3_rceil", "mxfp8_e5m2_rceil", "mxfp4_rceil",
                 lp.blocks.BlockFormat("float8_e4m3fnuz", 16, scale_rule="ceil",
                                       nonfinite="saturate", name="fnuz16_ceil"),
                 lp.blocks.BlockFormat("float6_e3m2fn", 32, scale_rule="even", name="e3m2_even")]
IN_PLACE_MODES = [("nearest_even", {}), ("nearest_away", {}), ("up", {}), ("down", {}),
                  ("toward_zero", {}), ("odd", {}), ("stochastic", dict(seed=5)),
                  ("stochastic", dict(seed=6, sr_bits=3))]


def _edge_inputs(rng, shape):
    """Blocks at float32's edges: subnormal elements and blocks, the smallest normal, tiny
    amaxes, the largest float32, ties of every small grid, Inf, NaN, signed zeros."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-30, 30, shape))).astype(np.float32)
    flat = x.reshape(-1)
    n = flat.size
    pick = rng.permutation(n)
    flat[pick[: n // 8]] = rng.integers(1, 1 << 23, n // 8).astype(np.uint32).view(np.float32)
    flat[pick[n // 8: n // 4]] *= np.float32(2.0**-100)
    ties = (rng.integers(1, 64, n // 8) * 2 + 1).astype(np.float32) * np.float32(2.0**-7)
    flat[pick[n // 4: n // 4 + n // 8]] = ties
    spec = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FFFFF,
                     0xFF7FFFFF, 0x00800000, 0x80000001, 0x00000001], np.uint32)
    flat[pick[-len(spec):]] = spec.view(np.float32)
    return x


@pytest.mark.parametrize("preset", POW2_IN_PLACE)
@pytest.mark.parametrize("mode, kw", IN_PLACE_MODES)
def test_pow2_fake_quantize_in_place_equals_the_core(preset, mode, kw):
    """``fake_quantize``'s in-place path (``pow2_values``: blocks along any axis without a
    transpose, rounding and scaling back on the integers, no host fallback) gives the core's
    bits under ``jit`` on XLA's CPU, which flushes subnormals: along the last axis, the
    first, a middle one and a padded one, with subnormal and tiny blocks, the largest float32,
    Inf and NaN (oracle: ``lp.fake_quantize``, itself checked against exact rationals)."""
    bf = lp.blocks.block_format(preset)
    P = lp.plan(bf.elem, mode, "saturate", sr_bits=kw.get("sr_bits"))
    assert jb.in_place_path(bf, P)
    rng = np.random.default_rng(41)
    for shape, axis in (((6, 2 * bf.k), -1), ((2 * bf.k, 5), 0), ((3, bf.k, 4), 1),
                        ((4, bf.k + 5), 1)):
        x = _edge_inputs(rng, shape)
        try:
            want = lp.fake_quantize(x, preset, axis, mode, **kw)
        except ValueError as e:                     # a preset that does not pad
            with pytest.raises(ValueError, match="not a multiple"):
                jb.fake_quantize(x, preset, axis, mode, **kw)
            assert "multiple" in str(e)
            continue
        got = jax.jit(lambda v: jb.fake_quantize(v, preset, axis, mode, **kw))(x)
        assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32)), (
            shape, axis)


def _every_scale_and_binade(elem_emax, k, sign_seed):
    """Blocks whose floor-rule scale is each 2^e of E8M0's range in turn (the first element
    2^(e + emax) is the block's amax), the other k - 1 elements 2^(e + emax - j) (j = 0..45:
    the element's normal and subnormal ranges, values below one grid step, float32
    subnormals) times significands at the rounding edges (ties, one ulp either side, the
    largest), with random signs."""
    mants = np.array([0, 1, 2, 0x7FFFFF, 0x400000, 0x3FFFFF, 0x400001, 0x200000, 0x1FFFFF,
                      0x200001, 0x600000, 0x100000, 0x0FFFFF, 0x500000, 0x700000], np.uint32)
    vals = []
    for e in range(-127, 128 - elem_emax):
        top = e + elem_emax
        ex = np.arange(top, top - 46, -1)
        bits = np.where(ex[:, None] >= -126, ((ex[:, None] + 127) << 23) | mants[None, :],
                        (((1 << 23) | mants[None, :]).astype(np.int64)
                         >> np.clip(-126 - ex[:, None], 0, 31)))
        body = bits.astype(np.uint32).reshape(-1)
        body = np.concatenate([body, np.zeros(-body.size % (k - 1), np.uint32)])
        blocks = body.reshape(-1, k - 1)
        head = np.full((blocks.shape[0], 1), (top + 127) << 23, np.uint32)
        vals.append(np.concatenate([head, blocks], axis=1))
    x = np.concatenate(vals).view(np.float32)
    signs = np.random.default_rng(sign_seed).integers(0, 2, x.shape).astype(bool)
    return np.where(signs, -x, x).astype(np.float32)


@pytest.mark.parametrize("preset", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3",
                                    "mxfp4"])
@pytest.mark.parametrize("mode, kw", IN_PLACE_MODES[::2] + [("odd", {})])
def test_pow2_in_place_rounding_at_every_scale_equals_the_core(preset, mode, kw):
    """The in-place path's rounding step (``_round.round_scaled_values``: x's bits cut at the
    grid's step, a value below one step rounded to 0 or the step, the largest value capping)
    at every scale 2^-127 .. 2^(127 - emax) and across 46 binades below each block's amax,
    along the last axis and the first, under ``jit`` (XLA's CPU flushes subnormals; the
    step uses integers alone): the core's bits (``lp.fake_quantize``)."""
    bf = lp.blocks.block_format(preset)
    emax = int(np.floor(np.log2(float(lp.format(bf.elem).max))))
    x = _every_scale_and_binade(emax, bf.k, 43)
    assert x.shape[0] > 2000
    for v, axis in ((x, -1), (np.ascontiguousarray(x.T), 0)):
        want = lp.fake_quantize(v, preset, axis, mode, **kw)
        got = jax.jit(lambda v: jb.fake_quantize(v, preset, axis, mode, **kw))(v)
        assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32)), axis


@pytest.mark.parametrize("elem", ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn",
                                  "float6_e2m3fn", "float6_e3m2fn", "float8_e4m3fnuz"])
def test_rceil_exponent_in_integers_equals_the_float32_product(elem):
    """``xscale.rceil_exp32`` (rceil's ceil(log2(fl32(amax * fl32(1/max)))) by a table and
    integer comparisons) against NumPy's IEEE float32 product, subnormal products included:
    every amax of the smallest 2^24 bit patterns, every mantissa around the tabulated
    threshold and 4M patterns around it, and 2M random finite amaxes."""
    from lowprec import xscale
    bf = lp.blocks.BlockFormat(elem, scale_rule="rceil")
    c = np.float32(1) / np.float32(bf.elem.max)
    f0, m_star, lows = xscale._rceil_table32(float(bf.elem.max), int(bf.scale_fmt.emin))
    rng = np.random.default_rng(43)
    t = lows[0][1]
    a = np.concatenate([np.arange(1, 1 << 24), np.arange(t - (1 << 21), t + (1 << 21)),
                        rng.integers(1, 0x7F800000, 2_000_000),
                        ((np.arange(1, 255) << 23)[:, None] + np.array(
                            [0, 1, m_star - 1, m_star, m_star + 1, (1 << 23) - 1])).ravel()])
    a = a.astype(np.int64)
    p = (a.astype(np.uint32).view(np.float32) * c).view(np.uint32).astype(np.int64)
    m, e = np.frexp(p.astype(np.uint32).view(np.float32).astype(np.float64))
    want = np.where(p == 0, -(1 << 20), e - 1 + (m != 0.5))
    got = xscale.rceil_exp32(np, a, bf)
    lo = bf.scale_fmt.emin
    assert np.array_equal(np.maximum(got, lo), np.maximum(want, lo))


def test_nvfp4_subnormal_elements_are_multiplied_exactly_on_the_native_path():
    """A subnormal element of a block with a small normal amax is multiplied by a large
    multiplier (2^-115 amax: about 2^118): the product is far from zero, and SR with random
    words all ones rounds any non-zero remainder up. XLA's CPU reads a subnormal operand as
    zero, which would give 0; ``NativeF32.scale_by`` gives the core's values, with no
    fallback (the tensor stays on the native path)."""
    x = np.zeros((2, 32), np.float32)
    x[0, 0] = np.float32(2.0**-100)                      # g: the smallest native tensor amax
    x[1, 0] = np.float32(2.0**-115)
    x[1, 1:16] = (np.arange(1, 16, dtype=np.uint32) << np.uint32(18)).view(np.float32)
    x[1, 16:] = -x[1, :16]
    rb = np.full(x.shape, 0xFFFFFFFF, np.uint32)
    assert _native(x, "nvfp4", "stochastic", {}, 2.0**-100)
    for kw in (dict(rounding="stochastic", rbits=rb), dict()):
        want = lp.fake_quantize(x, "nvfp4", **kw)
        got = jax.jit(lambda v: jb.fake_quantize(v, "nvfp4", **kw))(x)
        assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32)), kw
    assert np.count_nonzero(lp.fake_quantize(x, "nvfp4", rounding="stochastic", rbits=rb)[1, 1:16])


def _tile_cases(rng, shape):
    """x with 16 x 16 tiles 2^60 apart, an Inf, -0 and a subnormal; x with a NaN; x without
    its Inf; and x scaled so that every value is below 2^-100."""
    tiles = shape[:-2] + (shape[-2] // 16, 1, shape[-1] // 16, 1)
    x = data(rng, shape, False) * np.exp2(rng.integers(-30, 30, tiles)).astype(
        np.float32).repeat(16, -3).repeat(16, -1).reshape(shape)
    x = x.astype(np.float32)
    x.reshape(-1)[[3, 40, 77]] = [np.inf, -0.0, 1e-41]
    nan = x.copy()
    nan.reshape(-1)[5] = np.nan
    finite = np.where(np.isinf(x), 0, x).astype(np.float64)
    tiny = (finite * (2.0**-110 / np.abs(finite).max())).astype(np.float32)
    return x, nan, finite.astype(np.float32), tiny


@pytest.mark.parametrize("mode, kw", [("nearest_even", {}), ("stochastic", dict(seed=3)),
                                      ("stochastic", dict(seed=4, sr_bits=8, sr_variant="srf"))])
def test_nvfp4_tiles_rounded_in_place_equal_the_core(mode, kw):
    """``fake_quantize`` rounds 16 x 16 tiles whose axes divide evenly in x's own layout
    (``block_step``'s ``in_place``: no transposed copy): the core's values for tiles whose
    magnitudes differ by up to 2^60, rows at their own scales, with Inf, -0 and subnormal
    elements (native path), with a NaN, or with every value below 2^-100 (the core's answer
    through the host branch), with leading axes and under vmap."""
    rng = np.random.default_rng(4)
    for shape in ((32, 48), (2, 16, 32)):
        x, nan, _, tiny = _tile_cases(rng, shape)
        bf = lp.blocks.block_format("nvfp4_2d")
        P = lp.plan(bf.elem, mode, "saturate")
        for v, native in ((x, True), (tiny, False)):
            g = np.float32(np.max(np.abs(v))).view(np.uint32)
            assert bool(jb.native_ok(None, jnp.uint32(g), bf, P)) == native
        for v in (x, nan, tiny):
            assert jb.tile_in_place(bf, P, v.shape)
            got = jax.jit(lambda a: jb.fake_quantize(a, "nvfp4_2d", -1, mode, **kw))(v)
            want = lp.fake_quantize(v, "nvfp4_2d", -1, mode, **kw)
            assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32)), shape
    batch = np.stack([x, tiny])                   # one native, one host member under vmap
    got = jax.jit(jax.vmap(lambda a: jb.fake_quantize(a, "nvfp4_2d", -1, mode, **kw)))(batch)
    for i in range(2):
        assert np.array_equal(np.asarray(got[i]).view(np.uint32), lp.fake_quantize(
            batch[i], "nvfp4_2d", -1, mode, **kw).view(np.uint32)), i


@pytest.mark.parametrize("fmt,axis", [("nvfp4", -1), ("nvfp4", 0), ("nvfp4_2d", -1),
                                      ("nvfp4_torchao", 1)])
@pytest.mark.parametrize("mode", ["nearest_even", "stochastic"])
def test_two_level_parts_equal_the_cores_codes(fmt, axis, mode):
    """``two_level_parts`` (what quantized_dot_general multiplies for NVFP4 operands): the
    core's element x block scale (``lp.quantize``'s codes decoded, exact) and its tensor
    scale, bit for bit: 1 x 16 blocks along either axis, tiles in x's own layout, torchao's
    rule; on the native path (blocks 2^60 apart, -0, a subnormal, with and without an Inf,
    which makes TE's tensor scale 1) and through the host branch (a NaN; every value below
    2^-100); stochastic with given words; under vmap mixing both branches. In bfloat16 too
    (``dtype``), which holds NVFP4's values exactly: the same values."""
    rng = np.random.default_rng(6)
    shape = (32, 48)
    x, nan, scaled, tiny = _tile_cases(rng, shape)
    kw = {}
    if mode == "stochastic":
        kw = dict(rbits=rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32))

    def want(v):
        bt = lp.quantize(v, fmt, axis, mode, **kw)
        e, s = bt.element_and_scale_values()
        return (e * s).astype(np.float32), np.float32(bt.tensor_scale)
    f = jax.jit(lambda a: jb.two_level_parts(a, fmt, axis, mode, **kw))
    assert want(scaled)[1] != 1
    f16 = jax.jit(lambda a: jb.two_level_parts(a, fmt, axis, mode, dtype=jnp.bfloat16, **kw))
    for v in (x, scaled, nan, tiny):
        (wu, wt) = want(v)
        for g in (f, f16):
            u, t = g(v)
            u = np.asarray(u.astype(jnp.float32))
            assert np.array_equal(u.view(np.uint32), wu.view(np.uint32))
            assert np.asarray(t).view(np.uint32) == wt.view(np.uint32)
    got = jax.jit(jax.vmap(lambda a: jb.two_level_parts(a, fmt, axis, mode, **kw)))(
        np.stack([scaled, tiny]))
    for i, v in enumerate((scaled, tiny)):
        wu, wt = want(v)
        assert np.array_equal(np.asarray(got[0][i]).view(np.uint32), wu.view(np.uint32)), i
        assert np.asarray(got[1][i]).view(np.uint32) == wt.view(np.uint32), i
    with pytest.raises(ValueError, match="two-level"):
        jb.two_level_parts(x, "mxfp4", axis, mode, **kw)


def test_words_drawn_where_they_are_read_are_the_documented_words():
    """A key's words left undrawn (``stream.Words``: drawn inside each branch of the
    quantizer, transposed where the quantizer reads x transposed) are the documented
    ``key_words``, rebuilt in NumPy (helpers.key_words): drawn in any axis order, 32- and
    64-bit; and through ``quantize(key=)`` (codes), ``fake_quantize(key=)`` (NVFP4 1 x 16
    along either axis, tiles in place, an MX rule in place) and ``two_level_parts`` given
    them transposed, on the native path and through the host branch (every value below
    2^-100, a NaN), under vmap, the core's bits with those words."""
    from helpers import key_words
    from lowprec_jax.stream import Words
    key = jax.random.key(5)
    for shape in ((6,), (3, 5, 7), (2, 1, 4, 3)):
        w = Words.of(key, shape)
        assert np.array_equal(np.asarray(w.draw()[1]), key_words(key, shape))
        hi, lo = Words.of(key, shape, wide=True).swap(0, -1).draw()
        want = np.swapaxes(key_words(key, shape, wide=True), 0, -1)
        got = (np.asarray(hi).astype(np.uint64) << np.uint64(32)) | np.asarray(lo)
        assert np.array_equal(got, want), shape
        if len(shape) > 2:
            got = np.asarray(w.swap(1, 2).swap(0, 2).draw()[1])
            want = np.swapaxes(np.swapaxes(key_words(key, shape), 1, 2), 0, 2)
            assert np.array_equal(got, want), shape
    rng = np.random.default_rng(7)
    x, nan, _, tiny = _tile_cases(rng, (32, 48))

    def same(got, want):
        assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32))
    for v in (x, nan, tiny):
        words = key_words(key, v.shape)
        for fmt, axis in (("nvfp4", -1), ("nvfp4", 0), ("nvfp4_2d", -1), ("mxfp4_rceil", 0)):
            got = jax.jit(lambda a: jb.fake_quantize(a, fmt, axis, "stochastic", key=key))(v)
            same(got, lp.fake_quantize(v, fmt, axis, "stochastic", rbits=words))
        q = jax.jit(lambda a: jb.quantize(a, "nvfp4", 0, "stochastic", key=key))(v)
        bt = lp.quantize(v, "nvfp4", 0, "stochastic", rbits=words)
        assert np.array_equal(np.asarray(q.codes), bt.codes)
        assert np.array_equal(np.asarray(q.scale_codes), bt.scale_codes)
        vt = np.ascontiguousarray(v.T)                # the words of v, read transposed
        u, t = jax.jit(lambda a: jb.two_level_parts(
            a, "nvfp4", -1, "stochastic", rbits=Words.of(key, v.shape).swap(0, 1)))(vt)
        bt = lp.quantize(vt, "nvfp4", -1, "stochastic", rbits=np.ascontiguousarray(words.T))
        e, sc = bt.element_and_scale_values()
        same(u, (e * sc).astype(np.float32))
        assert np.asarray(t).view(np.uint32) == np.float32(bt.tensor_scale).view(np.uint32)
    keys = jax.random.split(key, 2)
    got = jax.jit(jax.vmap(lambda k, a: jb.fake_quantize(a, "nvfp4", 0, "stochastic", key=k)))(
        keys, np.stack([x, tiny]))
    for i, v in enumerate((x, tiny)):
        same(got[i], lp.fake_quantize(v, "nvfp4", 0, "stochastic",
                                      rbits=key_words(keys[i], v.shape)))


def test_dequantize_without_the_tensor_scale_equals_the_core():
    """``dequantize(tensor_scale=False)`` gives the core's bits; a non-bool is refused as the
    core refuses it."""
    x = np.random.default_rng(8).standard_normal((4, 32)).astype(np.float32) * 300
    want = lp.quantize(x, "nvfp4").dequantize(np.float32, tensor_scale=False)
    got = jb.dequantize(jb.quantize(x, "nvfp4"), jnp.float32, tensor_scale=False)
    assert np.array_equal(np.asarray(got).view(np.uint32), want.view(np.uint32))
    with pytest.raises(TypeError, match="tensor_scale"):
        jb.dequantize(jb.quantize(x, "nvfp4"), tensor_scale=None)
    with pytest.raises(ValueError, match="dtype"):
        jb.two_level_parts(x, "nvfp4", dtype=jnp.float16)
