"""Block formats against the block oracle (tests/oracle_blocks.py): scale codes and element codes,
bit for bit, for every MX scale rule, NVFP4, padding, tiles and axes."""
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp
import oracle_blocks as ob
from conftest import bits
from helpers import oracle_floats, table

@pytest.fixture(autouse=True, params=["numpy", "fused"])
def path(request, monkeypatch):
    """Every test here runs on both paths: the NumPy one and the fused kernels (which serve
    float32/16 data blocked along the last axis without padding)."""
    monkeypatch.setattr(lp.blocks, "FAST_MIN_SIZE", 0 if request.param == "fused" else 1 << 62)
    return request.param


MX = {"mxfp8_e4m3": ("float8_e4m3fn", 3), "mxfp8_e5m2": ("float8_e5m2", 2),
      "mxfp6_e3m2": ("float6_e3m2fn", 2), "mxfp6_e2m3": ("float6_e2m3fn", 3),
      "mxfp4": ("float4_e2m1fn", 1)}
RULES = ["floor", "ceil", "even", "rceil"]


def _special_blocks(rng, k, n):
    """n blocks of k float32 values: Gaussian at random magnitudes, with zeros, float32
    subnormals, powers of two and values just below them, huge and tiny amax."""
    out = []
    for i in range(n):
        b = rng.standard_normal(k) * np.exp2(rng.integers(-140, 120))
        kind = i % 6
        if kind == 1:
            b[rng.integers(0, k, k // 4)] = 0.0
        elif kind == 2:
            b[0] = np.exp2(rng.integers(-10, 10))                      # amax a power of two
        elif kind == 3:
            b[0] = np.nextafter(np.float32(np.exp2(rng.integers(-10, 10))), np.float32(0))
        elif kind == 4:
            b = rng.standard_normal(k) * 2.0**-140                     # float32 subnormals
        elif kind == 5:
            b = b * 0.0
        out.append(b.astype(np.float32))
    return np.stack(out)


def _elem_bits_of(name):
    return {"float8_e4m3fn": 3, "float8_e5m2": 2, "float6_e3m2fn": 2, "float6_e2m3fn": 3,
            "float4_e2m1fn": 1}[name]


@pytest.mark.parametrize("preset", list(MX))
@pytest.mark.parametrize("rule", RULES)
def test_mx_rules_against_the_oracle(preset, rule):
    elem, m = MX[preset]
    bf = lp.BlockFormat(elem, k=32, scale_rule=rule, scale_overflow="saturate")
    rng = np.random.default_rng(zlib.crc32(repr((preset, rule)).encode()))
    x = _special_blocks(rng, 32, 36)
    bt = lp.quantize(x, bf)
    te = table(elem)
    for i, blk in enumerate(x):
        sc, codes = ob.mx_block(blk, rule, te, m, scale_overflow="saturate")
        assert int(bt.scale_codes[i, 0]) == sc, (i, blk)
        assert bt.codes[i, 0].tolist() == codes, (i, blk)


@pytest.mark.parametrize("mode", ["nearest_even", "toward_zero", "up", "nearest_away"])
def test_mx_element_modes_and_dequantized_values(mode):
    te = table("float4_e2m1fn")
    rng = np.random.default_rng(3)
    x = _special_blocks(rng, 32, 24)
    bt = lp.quantize(x, "mxfp4", rounding=mode)
    y = bt.dequantize(np.float64)
    for i, blk in enumerate(x):
        sc, codes = ob.mx_block(blk, "floor", te, 1, mode)
        assert int(bt.scale_codes[i, 0]) == sc
        assert bt.codes[i, 0].tolist() == codes
        want = oracle_floats(np.array(codes), te, np.float64) * 2.0 ** (sc - 127)
        assert (bits(y[i]) == bits(want)).all()


def test_every_pair_of_e2m1_values_in_a_two_element_block():
    """Exhaustive over small blocks: every pair of E2M1 grid values times 2^e, e in -3..3."""
    te = table("float4_e2m1fn")
    grid = [float(v) for v in te.finite]
    bf = lp.BlockFormat("float4_e2m1fn", k=2)
    pairs = np.array([(a, b) for a in grid for b in grid], dtype=np.float32)
    for e in range(-3, 4):
        x = pairs * np.float32(2.0**e)
        bt = lp.quantize(x, bf)
        for i, blk in enumerate(x):
            sc, codes = ob.mx_block(blk, "floor", te, 1)
            assert (int(bt.scale_codes[i, 0]), bt.codes[i, 0].tolist()) == (sc, codes)


def test_nonfinite_and_scale_policies():
    te = table("float8_e4m3fn")
    x = np.ones((4, 32), np.float32)
    x[0, 3] = np.inf
    x[1, 5] = np.nan
    x[2, 7] = -np.inf
    x[3] = np.float32(3e38)
    for nonfinite in ("nan", "saturate"):
        for ovf in ("nan", "saturate"):
            for rule in RULES:
                bf = lp.BlockFormat("float8_e4m3fn", scale_rule=rule, nonfinite=nonfinite,
                                    scale_overflow=ovf)
                bt = lp.quantize(x, bf)
                for i, blk in enumerate(x):
                    sc, codes = ob.mx_block(blk, rule, te, 3, scale_overflow=ovf,
                                            nonfinite=nonfinite)
                    assert int(bt.scale_codes[i, 0]) == sc, (nonfinite, ovf, rule, i)
                    if codes is not None:
                        assert bt.codes[i, 0].tolist() == codes, (nonfinite, ovf, rule, i)
                    else:
                        assert np.isnan(bt.dequantize()[i]).all()


@pytest.mark.parametrize("preset", ["nvfp4", "nvfp4_2d"])
def test_nvfp4_against_the_oracle(preset):
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((32, 48)) * np.exp2(rng.integers(-8, 8, (32, 1)))).astype(
        np.float32)
    x[0, :16] = 0.0
    x[1, 3] = 1e-42
    bt = lp.quantize(x, preset)
    if preset == "nvfp4":
        blocks = list(x.reshape(-1, 16))
    else:
        blocks = list(x.reshape(2, 16, 3, 16).transpose(0, 2, 1, 3).reshape(-1, 256))
    s_dec, want = ob.nvfp4(blocks, table("float4_e2m1fn"), table("ue4m3"))
    assert bits(np.float32(bt.tensor_scale)) == bits(s_dec)
    got_sc = bt.scale_codes.reshape(-1).tolist()
    got_codes = bt.codes.reshape(len(blocks), -1).tolist()
    for i, (sc, codes) in enumerate(want):
        assert (got_sc[i], got_codes[i]) == (sc, codes), i


def test_nvfp4_inf_saturates_and_nan_marks_the_block():
    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(2, 32)
    x[0, 0] = np.inf
    x[1, 20] = np.nan
    bt = lp.quantize(x, "nvfp4")
    assert float(bt.tensor_scale) == 1.0                   # amax Inf -> S_enc = 1 (TE)
    assert int(bt.scale_codes[0, 0]) == 0x7E                # 448
    assert int(bt.codes[0, 0, 0]) == 0x7                    # +6
    assert int(bt.scale_codes[1, 1]) == lp.format("ue4m3").nan_code
    assert np.isnan(bt.dequantize()[1, 16:]).all()


def test_nvfp_2d_tiles_commute_with_transposition():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((48, 32)).astype(np.float32)
    a = lp.fake_quantize(w, "nvfp4_2d")
    b = lp.fake_quantize(w.T.copy(), "nvfp4_2d")
    assert (bits(a.T) == bits(b)).all()


@pytest.mark.parametrize("shape,axis", [((40,), 0), ((3, 70), -1), ((70, 3), 0),
                                        ((2, 3, 33, 2), 2), ((2, 2, 2, 65), 3)])
def test_axes_and_padding(shape, axis):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    y = lp.fake_quantize(x, "mxfp8_e4m3", axis=axis)
    assert y.shape == x.shape and y.dtype == np.float32
    xm = np.moveaxis(x, axis, -1)
    n = xm.shape[-1]
    padded = np.concatenate([xm, np.zeros(xm.shape[:-1] + (-n % 32,), np.float32)], -1)
    blocks = padded.reshape(-1, 32)
    te = table("float8_e4m3fn")
    want = []
    for blk in blocks:
        sc, codes = ob.mx_block(blk, "floor", te, 3)
        want.append(oracle_floats(np.array(codes), te, np.float64) * 2.0 ** (sc - 127))
    want = np.array(want, np.float64).reshape(padded.shape)[..., :n].astype(np.float32)
    assert (bits(np.moveaxis(y, axis, -1)) == bits(want)).all()


def test_mxint8_and_bfp16_elements():
    rng = np.random.default_rng(9)
    x = _special_blocks(rng, 32, 12)
    t = table("mxint8_element")
    bt = lp.quantize(x, "mxint8")
    for i, blk in enumerate(x):
        sc, codes = ob.mx_block(blk, "floor", t, 6)
        assert (int(bt.scale_codes[i, 0]), bt.codes[i, 0].tolist()) == (sc, codes)


def test_stochastic_elements_use_the_flat_index_of_x():
    x = np.random.default_rng(4).standard_normal((3, 64)).astype(np.float32)
    a = lp.quantize(x, "mxfp4", rounding="stochastic", seed=5)
    R = lp.random_bits(5, x.shape)
    b = lp.quantize(x, "mxfp4", rounding="stochastic", rbits=R)
    assert (a.codes == b.codes).all()
    te = table("float4_e2m1fn")
    for i in range(3):
        for j in range(2):
            blk = x[i, 32 * j:32 * (j + 1)]
            e = ob.mx_scale_exp(blk, "floor", te, 1)
            for k in range(32):
                from fractions import Fraction
                import oracle
                want = oracle.round_exact(Fraction(float(blk[k])) / Fraction(2) ** e, te,
                                          "stochastic", "saturate",
                                          sr=(int(R[i, 32 * j + k]), 32, "srff"))
                assert int(a.codes[i, j, k]) == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1,
                max_size=70),
       st.sampled_from(list(MX)), st.sampled_from(RULES))
def test_random_blocks_property(vals, preset, rule):
    elem, m = MX[preset]
    x = np.array(vals, np.float32)
    bf = lp.BlockFormat(elem, scale_rule=rule, scale_overflow="saturate")
    bt = lp.quantize(x, bf)
    xp = np.concatenate([x, np.zeros(-x.size % 32, np.float32)]).reshape(-1, 32)
    te = table(elem)
    for i, blk in enumerate(xp):
        sc, codes = ob.mx_block(blk, rule, te, m, scale_overflow="saturate")
        assert (int(bt.scale_codes[i]), bt.codes[i].tolist()) == (sc, codes)


def test_bad_input():
    x = np.zeros((4, 30), np.float32)
    with pytest.raises(ValueError, match="not a multiple of k=32"):
        lp.quantize(x, lp.BlockFormat("float4_e2m1fn", pad=False))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        lp.quantize(x, "mxfp4", axis=2)
    with pytest.raises(TypeError, match="must be a float16"):
        lp.quantize(np.zeros((2, 32), np.int32), "mxfp4")
    with pytest.raises(ValueError, match="unknown block format 'mxfp5'; did you mean"):
        lp.quantize(x, "mxfp5")
    with pytest.raises(ValueError, match="scale_fmt must be E8M0-like"):
        lp.BlockFormat("float4_e2m1fn", scale_fmt="float8_e4m3fn")
    with pytest.raises(ValueError, match="scale_rule='nvfp4' stores E4M3"):
        lp.BlockFormat("float4_e2m1fn", scale_rule="nvfp4")
    with pytest.raises(ValueError, match="k=0 must be a positive int"):
        lp.BlockFormat("float4_e2m1fn", k=0)
    with pytest.raises(ValueError, match="tile=\\(16, 16\\) blocks the last two axes"):
        lp.quantize(np.zeros((16, 16), np.float32), "nvfp4_2d", axis=0)
    with pytest.raises(ValueError, match="needs exactly one source of random bits"):
        lp.quantize(x, "mxfp4", rounding="stochastic")
    bt = lp.quantize(np.zeros((2, 32), np.float32), "mxfp4")
    with pytest.raises(ValueError, match="code 16 is out of range for float4_e2m1fn"):
        lp.BlockTensor(bt.codes + 16, bt.scale_codes, bt.tensor_scale, bt.shape, bt.axis,
                       bt.fmt)
    with pytest.raises(ValueError, match="one scale code per block"):
        lp.BlockTensor(bt.codes, bt.scale_codes[:1], bt.tensor_scale, bt.shape, bt.axis,
                       bt.fmt)
    xin = np.linspace(-5, 5, 64, dtype=np.float32)
    keep = xin.copy()
    lp.fake_quantize(xin, "nvfp4", rounding="stochastic", seed=1)
    assert (bits(xin) == bits(keep)).all()                 # the input is never modified


def _nv_inputs(seed, shape=(24, 48)):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-12, 12, (shape[0], 1)))).astype(
        np.float32)
    x[0, :16] = 0.0                                   # an all-zero block
    x[1, 3] = 1e-42                                   # a float32 subnormal
    x[2, :16] = np.float32(2.0**-30)                  # a tiny block under a large tensor amax
    x[3, 5] *= 1000                                   # an outlier
    return x


def _check_two_level(x, preset, oracle_fn, scale_table):
    bt = lp.quantize(x, preset)
    t_scale, want = oracle_fn(list(x.reshape(-1, 16)), table("float4_e2m1fn"),
                              table(scale_table))
    assert bits(np.float32(bt.tensor_scale)) == bits(t_scale)
    got_sc, got = bt.scale_codes.reshape(-1).tolist(), bt.codes.reshape(-1, 16).tolist()
    for i, (sc, codes) in enumerate(want):
        assert (got_sc[i], got[i]) == (sc, codes), i


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nvfp4_torchao_against_the_oracle(seed):
    _check_two_level(_nv_inputs(seed), "nvfp4_torchao", ob.nvfp4_torchao, "float8_e4m3fn")


def test_nvfp4_torchao_differs_from_te_and_keeps_its_quirks():
    """The two NVFP4 recipes round the same products in different float32 orders, which
    rarely matters on Gaussian data; they part where torchao clamps a block scale at 2^-6
    (blocks far below the tensor amax). torchao's all-zero tensor has a zero tensor scale, so
    its scales are NaN (0/0)."""
    g = np.random.default_rng(4).standard_normal((512, 512)).astype(np.float32)
    assert np.mean(lp.quantize(g, "nvfp4").codes != lp.quantize(g, "nvfp4_torchao").codes) \
        < 1e-3
    x = _nv_inputs(4, (256, 256))
    te, ao = lp.quantize(x, "nvfp4"), lp.quantize(x, "nvfp4_torchao")
    assert np.mean(te.codes != ao.codes) > 0.05
    z = lp.quantize(np.zeros((2, 16), np.float32), "nvfp4_torchao")
    assert (z.scale_codes == 0x7F).all() and np.isnan(z.dequantize()).all()


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_nvfp4_4over6_against_the_oracle(seed):
    _check_two_level(_nv_inputs(seed), "nvfp4_4over6", ob.nvfp4_4over6, "ue4m3")


def test_4over6_picks_map_to_4_where_it_helps():
    """Worked by hand: tensor amax 6 gives S_enc = 1536/6 = 256. Block [6, 5, 0, ...]: map-to-6
    scale e4m3(6 * (256 * fl(1/6))) = 256 (code 120), elements 6 -> 6 and 5 -> 4 (tie to even),
    squared error 1; map-to-4 scale e4m3(256.00001 * 1.5) = 384 (code 124), elements x * fl(2/3)
    = 4.0000002 -> 4 and 3.3333335 -> 3, values 6 and 4.5, error 0.25: map-to-4 wins. Block
    [6, 3, 0, ...] is exact both ways: the tie keeps map-to-6."""
    x = np.zeros((2, 16), np.float32)
    x[0, :2] = [6.0, 5.0]
    x[1, :2] = [6.0, 3.0]
    bt = lp.quantize(x, "nvfp4_4over6")
    assert bt.scale_codes.tolist() == [[124], [120]]
    assert bt.codes[:, 0, :3].tolist() == [[6, 5, 0], [7, 5, 0]]     # 4, 3, 0 | 6, 3, 0
    assert bt.dequantize()[:, :2].tolist() == [[6.0, 4.5], [6.0, 3.0]]


@pytest.mark.parametrize("preset", ["nvfp4", "mxfp4"])
def test_te_stochastic_rounding_against_the_oracle(preset):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((8, 32)) * 3).astype(np.float32)
    x[0, :4] = [1e-30, -1e-30, 2.0**-40, 0.0]
    rb = rng.integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    bt = lp.quantize(x, preset, rounding="stochastic", sr_variant="te", rbits=rb)
    nearest = lp.quantize(x, preset)
    # the scales do not depend on the rounding; the elements are TE's SR of x / scale
    assert np.array_equal(bt.scale_codes, nearest.scale_codes)
    te = table("float4_e2m1fn")
    k = 16 if preset == "nvfp4" else 32
    if preset == "nvfp4":
        s_dec, _ = ob.nvfp4(list(x.reshape(-1, 16)), te, table("ue4m3"))
    for i, (blk, r) in enumerate(zip(x.reshape(-1, k), rb.reshape(-1, k))):
        sc = int(bt.scale_codes.reshape(-1)[i])
        if preset == "nvfp4":
            s_b = np.float32(float(table("ue4m3").values[sc]))
            s = np.float32(min(np.float32(1.0) / np.float32(s_b * s_dec),
                               np.float32(np.finfo(np.float32).max)))
            vals = [np.float32(v * s) for v in blk]
        else:
            vals = [np.float32(np.ldexp(np.float64(v), 127 - sc)) for v in blk]
        want = [ob.te_stochastic(v, int(rr) & 0xFF, te) for v, rr in zip(vals, r)]
        assert bt.codes.reshape(-1, k)[i].tolist() == want, i


def test_te_stochastic_rounding_is_unbiased_to_8_bits():
    x = np.full((4096, 16), 0.3, np.float32)
    x[:, 0] = 6.0                                    # scale 1 in TE's rule: elements = x
    bt = lp.quantize(x, "nvfp4", rounding="stochastic", sr_variant="te", seed=3)
    assert (bt.scale_codes == lp.encode(448.0, "ue4m3")).all()       # so elements = x
    # 0.3 is 0.6 of the step 0.5 above 0: P(up to 0.5, code 1) = floor(0.6 * 256) / 256
    assert set(np.unique(bt.codes[:, 0, 1:])) == {0, 1}
    assert abs(np.mean(bt.codes[:, 0, 1:] == 1) - 153 / 256) < 0.01


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False,
                          min_value=-2.0**100, max_value=2.0**100), min_size=16, max_size=64),
       st.sampled_from(["mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "nvfp4", "nvfp4_4over6"]))
def test_dequantized_values_are_grid_times_scale_and_errors_are_bounded(vals, preset):
    """Every dequantized value is an element-grid value x block scale (x tensor scale),
    exactly; under the OCP floor rule each block's error is at most scale x max(half the top
    element step, 2^(emax+1) - max) (the most a value below 2^(emax+1) x scale can lose)."""
    x = np.array(vals[:len(vals) // 16 * 16], np.float32).reshape(1, -1)
    bt = lp.quantize(x, preset)
    bf = bt.fmt
    grid = {Fraction(float(v)) for v in bf.elem.values()}
    s = cast_decode(bt.scale_codes, bf.scale_fmt)
    t = Fraction(float(np.float32(bt.tensor_scale)))
    deq = bt.dequantize(np.float64).reshape(-1)
    for i, v in enumerate(deq):
        sv = Fraction(float(s.reshape(-1)[i // bf.k])) * t
        assert (v == 0) if sv == 0 else Fraction(float(v)) / sv in grid
    if bf.scale_rule == "floor":
        vals_sorted = sorted(grid)
        top_step = vals_sorted[-1] - vals_sorted[-2]
        bound = max(top_step / 2, Fraction(2) ** (bf.emax_elem + 1) - vals_sorted[-1])
        for i, (xv, v) in enumerate(zip(x.reshape(-1), deq)):
            sv = Fraction(float(s.reshape(-1)[i // bf.k]))
            assert abs(Fraction(float(xv)) - Fraction(float(v))) <= bound * sv


def cast_decode(codes, fmt):
    return lp.decode(codes, fmt, dtype=np.float64)


def test_bad_input_of_the_newer_options():
    x = np.zeros((2, 32), np.float32)
    with pytest.raises(ValueError, match="sr_variant='te'.*rounding='stochastic'"):
        lp.quantize(x, "nvfp4", sr_variant="te")
    with pytest.raises(ValueError, match="sr_variant='te'"):
        lp.quantize(x.astype(np.float64), "nvfp4", rounding="stochastic", sr_variant="te",
                    seed=1)
    with pytest.raises(ValueError, match="rbits must have x's shape \\(2, 32\\)"):
        lp.quantize(x, "mxfp4", rounding="stochastic", rbits=np.zeros(32, np.uint32))
    with pytest.raises(ValueError, match="tensor_amax=-1.0 must be a number >= 0"):
        lp.quantize(x, "nvfp4", tensor_amax=-1.0)
    with pytest.raises(ValueError, match="tensor_amax=nan must be"):
        lp.quantize(x, "nvfp4", tensor_amax=float("nan"))
    with pytest.raises(ValueError, match="tensor_amax is for the two-level rules"):
        lp.quantize(x, "mxfp4", tensor_amax=3.0)
    with pytest.raises(ValueError, match="scale_rule='4over6' stores E4M3"):
        lp.BlockFormat("float4_e2m1fn", scale_rule="4over6")


@pytest.mark.parametrize("preset,oracle_fn,scale_table", [
    ("nvfp4", ob.nvfp4, "ue4m3"), ("nvfp4_torchao", ob.nvfp4_torchao, "float8_e4m3fn"),
    ("nvfp4_4over6", ob.nvfp4_4over6, "ue4m3")])
def test_tensor_amax_sets_the_tensor_scale(preset, oracle_fn, scale_table):
    """A calibrated tensor_amax T gives what the oracle gives for the same blocks plus one
    block whose amax is T (the oracle takes the tensor amax from its blocks)."""
    x = _nv_inputs(8, (8, 32))
    t = np.float32(np.abs(x).max() * 3.5)
    bt = lp.quantize(x, preset, tensor_amax=float(t))
    extra = np.zeros(16, np.float32)
    extra[0] = t
    t_scale, want = oracle_fn(list(x.reshape(-1, 16)) + [extra], table("float4_e2m1fn"),
                              table(scale_table))
    assert bits(np.float32(bt.tensor_scale)) == bits(t_scale)
    got_sc, got = bt.scale_codes.reshape(-1).tolist(), bt.codes.reshape(-1, 16).tolist()
    for i, (sc, codes) in enumerate(want[:-1]):
        assert (got_sc[i], got[i]) == (sc, codes), i


@pytest.mark.parametrize("scale", [2.0**-140, 2.0**-125, 2.0**-118, 2.0**-112, 2.0**100])
def test_nvfp4_at_the_float32_range_edges(scale):
    """Tensors whose amax makes TE's float32 scale arithmetic leave the normal range: subnormal
    inputs, S_dec = 1 / S_enc subnormal (amax below about 2^-114.6), S_enc clamped to FLT_MAX
    (amax below 2688 / FLT_MAX), and a huge amax; against the oracle's float32 emulation."""
    x = (_nv_inputs(9, (4, 32)).astype(np.float64) * scale).astype(np.float32)
    _check_two_level(x, "nvfp4", ob.nvfp4, "ue4m3")


@pytest.mark.parametrize("fmt", ["nvfp4", "nvfp4_2d", "nvfp4_torchao"])
def test_dequantize_without_the_tensor_scale_is_element_times_block_scale(fmt):
    """``BlockTensor.dequantize(tensor_scale=False)`` (what NVFP4 GEMMs multiply): each code
    decoded by ml_dtypes (E2M1 elements, E4M3 block scales), multiplied in float64 (exact)
    and rounded to float32, NaN blocks the quiet NaN; with the tensor scale it is the usual
    dequantization. A non-bool is refused, naming the argument."""
    import ml_dtypes as md
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((32, 48)) * np.exp2(rng.integers(-8, 8, (32, 1)))).astype(
        np.float32)
    x[3, 5] = np.nan
    bt = lp.quantize(x, fmt, -1)
    assert np.float32(bt.tensor_scale) != 1
    nib = np.asarray(bt.codes, np.uint8)
    e = (nib & 7).astype(np.uint8).view(md.float4_e2m1fn).astype(np.float64) * np.where(
        nib & 8, -1.0, 1.0)
    s = np.asarray(bt.scale_codes, np.uint8).view(md.float8_e4m3fn).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = (e * s[..., None]).astype(np.float32)
    want = lp.blocks.unblock(np.where(np.isnan(want), np.float32(np.nan), want), bt.shape,
                             bt.axis, bt.fmt)
    got = bt.dequantize(np.float32, tensor_scale=False)
    assert np.isnan(got[3, 5]) and np.array_equal(bits(got), bits(want))
    assert np.array_equal(bits(bt.dequantize(np.float32, tensor_scale=True)),
                          bits(bt.dequantize(np.float32)))
    with pytest.raises(TypeError, match="tensor_scale"):
        bt.dequantize(np.float32, tensor_scale="no")
