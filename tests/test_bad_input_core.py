"""Issue 21's bad-input probes of the NumPy core, each with its error text: formats, block
tensors, the Hadamard transform, matmul operands and result dtypes. Where the right answer is a
value (big-endian input, rht16 past float64's range), it is checked against an oracle."""
from fractions import Fraction

import numpy as np
import pytest

import lowprec as lp


def test_fp8_names_no_one_format_and_block_formats_point_to_quantize():
    for name in ("fp8", "FP8", "float8"):
        with pytest.raises(ValueError, match="names no one format: FP8 is e4m3 .* e5m2"):
            lp.round(np.ones(2), name)
    with pytest.raises(ValueError, match=r"'nvfp4' is a block format.*lp.quantize\(x, 'nvfp4'\)"):
        lp.round(np.ones(2), "nvfp4")
    with pytest.raises(ValueError, match="'mxfp8_e4m3' is a block format"):
        lp.encode(np.ones(2), "mxfp8_e4m3")


def test_numpy_ints_as_format_fields():
    f = lp.FloatFormat(np.int64(4), np.int64(3), np.int64(7))
    assert f.max == 240.0 and lp.round(np.float32(250), f, overflow="saturate") == 240.0


def test_foreign_arrays_point_to_the_adapter():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch tensor that is torch.bfloat16: use lowprec_torch"):
        lp.round(torch.ones(3, dtype=torch.bfloat16), "e4m3")
    with pytest.raises(TypeError, match="requires grad: use lowprec_torch"):
        lp.round(torch.ones(3, requires_grad=True), "e4m3")
    assert lp.round(torch.ones(3), "e4m3").tolist() == [1.0] * 3     # a plain CPU tensor is fine
    jax = pytest.importorskip("jax")
    with pytest.raises(TypeError, match="JAX tracer .* use lowprec_jax"):
        jax.jit(lambda x: lp.round(x, "e4m3"))(np.ones(3, np.float32))


def test_big_endian_input_gives_the_native_bits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64).astype(np.float32)
    be = x.astype(">f4")
    assert np.array_equal(lp.round(be, "bfloat16").view(np.uint32),
                          lp.round(x, "bfloat16").view(np.uint32))
    # rht16 of big-endian float32: the exact transform rounded once to float32 (rationals)
    y = lp.hadamard.rht16(be)
    m = lp.hadamard.rht16_matrix()
    for r in range(4):
        for j in range(16):
            exact = sum(Fraction(float(v)) * Fraction(float(m[i, j]))
                        for i, v in enumerate(x[16 * r:16 * r + 16]))
            assert y[16 * r + j] == np.float32(float(exact))      # float64 then float32: the
            # exact value has at most 24 + 4 + 4 bits, so float64 holds it exactly


def test_rht16_past_float64_range_is_infinite():
    x = np.full(16, 1e308)
    y = lp.hadamard.rht16(x, inverse=True)
    col = lp.hadamard.rht16_matrix().T.sum(axis=0)                 # the sum of each column
    for j in range(16):
        exact = Fraction(1e308) * Fraction(float(col[j]))
        want = np.inf if exact > Fraction(np.finfo(np.float64).max) else \
            -np.inf if exact < -Fraction(np.finfo(np.float64).max) else float(exact)
        assert y[j] == want


def test_block_tensor_fields_are_checked():
    bf = lp.block_format("nvfp4")
    codes, sc = np.zeros((2, 16), np.uint8), np.zeros(2, np.uint8)
    with pytest.raises(ValueError, match=r"axis=7 must be the blocked axis of shape \(32,\)"):
        lp.BlockTensor(codes, sc, np.float32(1), (32,), 7, bf)
    with pytest.raises(ValueError, match=r"a tensor of shape \(40,\) blocked along axis 0 in "
                                         r"nvfp4 has codes of shape \(3, 16\)"):
        lp.BlockTensor(codes, sc, np.float32(1), (40,), 0, bf)
    t = lp.BlockTensor(codes, sc, np.float32(1), (30,), -1, bf)     # padded: 2 blocks hold 30
    assert t.axis == 0 and t.dequantize().shape == (30,)


def test_quantize_arguments():
    x = np.ones(32, np.float32)
    with pytest.raises(ValueError, match=r"tensor_amax must be one number .* shape \(3,\)"):
        lp.quantize(x, "nvfp4", tensor_amax=np.ones(3))
    for kw in (dict(seed=3), dict(rbits=np.zeros(32, np.uint32))):
        with pytest.raises(ValueError, match="apply to rounding='stochastic' only"):
            lp.quantize(x, "nvfp4", **kw)
    with pytest.raises(ValueError, match="sr_variant='bogus' is not allowed"):
        lp.quantize(x, "nvfp4", -1, "stochastic", seed=1, sr_variant="bogus")
    with pytest.raises(ValueError, match="sr_bits=40 is out of range"):
        lp.quantize(x, "nvfp4", -1, "stochastic", seed=1, sr_bits=40)
    with pytest.raises(ValueError, match="dtype=int32 is not allowed: fake_quantize returns"):
        lp.fake_quantize(x * 3.3, "nvfp4", dtype=np.int32)


def test_integer_accumulator_result_dtype_must_hold_the_format():
    a, b = np.array([[-100.0, 1.0]]), np.ones((2, 1))
    acc = lp.Accumulator("int8")
    with pytest.raises(ValueError, match=r"dtype=uint8 cannot hold every value of int8 "
                                         r"\(-128 \.\. 127\)"):
        lp.matmul(a, b, acc, dtype=np.uint8)
    assert lp.matmul(a, b, acc, dtype=np.int8).tolist() == [[-99]]
    assert lp.matmul(a, b, acc, dtype=np.int32).dtype == np.int32
    assert lp.matmul(a, b, acc).dtype == np.int64


@pytest.mark.parametrize("a,b,c", [
    ([[np.nan, 1.0]], [[1.0], [1.0]], None),
    ([[0.0, 1.0]], [[np.inf], [1.0]], None),                     # 0 * Inf
    ([[np.inf, 1.0]], [[1.0], [-np.inf]], None),                 # Inf - Inf
    ([[np.inf, 1.0]], [[1.0], [1.0]], [[-np.inf]]),              # Inf - Inf with c
])
def test_nan_sums_into_a_format_without_nan_raise(a, b, c):
    acc = lp.Accumulator("float4_e2m1fn")
    with pytest.raises(ValueError, match="a sum is NaN .* float4_e2m1fn has no NaN"):
        lp.matmul(np.array(a), np.array(b), acc, None if c is None else np.array(c))
    with pytest.raises(ValueError, match="float4_e2m1fn has no NaN"):
        lp.add(np.nan, 1.0, "e2m1")


def test_nan_sums_are_exactly_the_ieee_nans():
    """nan_sums against float64 IEEE sums term by term (a loop, no BLAS zero-skipping)."""
    rng = np.random.default_rng(5)
    pool = np.array([0.0, -0.0, 1.0, -2.0, np.inf, -np.inf, np.nan])
    A, B, C = (rng.choice(pool, s) for s in ((6, 5), (5, 7), (6, 7)))
    want = np.zeros((6, 7), bool)
    with np.errstate(all="ignore"):
        for i in range(6):
            for j in range(7):
                s = C[i, j]
                for k in range(5):
                    s = s + A[i, k] * B[k, j]
                want[i, j] = np.isnan(s)
    assert np.array_equal(lp.accumulate.nan_sums(A, B, C), want)
