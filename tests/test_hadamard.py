"""rht16 against exact rationals: H16 built by Sylvester's recursion [[H, H], [H, -H]], TE's sign
vector, every output the exact sum rounded once (Python's float(Fraction) for float64, an exact
nearest-even float32 rounding for float32)."""
from fractions import Fraction as Fr

import numpy as np
import pytest

import lowprec as lp
import oracle_blocks as ob
from conftest import bits

SIGNS = [1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1]   # TE get_wgrad_sign_vector


def _sylvester(n):
    h = [[1]]
    while len(h) < n:
        h = [r + r for r in h] + [r + [-v for v in r] for r in h]
    return h


H = _sylvester(16)


def _f32(v: Fr):
    r = ob.round_f32(abs(v))
    return np.float32(-float(r) if v < 0 else float(r))


def _oracle(row, inverse, to):
    out = []
    for j in range(16):
        if inverse:   # (v @ M.T)_j = sum_i v_i M[j, i] = s_j sum_i v_i H[j][i] / 4
            s = sum(Fr(float(v)) * SIGNS[j] * H[j][i] for i, v in enumerate(row)) / 4
        else:         # (v @ M)_j = sum_i v_i s_i H[i][j] / 4
            s = sum(Fr(float(v)) * SIGNS[i] * H[i][j] for i, v in enumerate(row)) / 4
        out.append(to(s))
    return out


def _rows(rng, dtype, n=60):
    x = rng.standard_normal((n, 16))
    spread = np.exp2(rng.integers(-60, 60, (n, 16)))          # wide exponent spreads
    x = x * np.where(rng.random((n, 16)) < 0.5, spread, 1.0)
    x[0] = 0.0
    x[1, :] = 1.0                                             # cancellations to exact zero
    x[2, :8] = 2.0**-140 if dtype == np.float32 else 2.0**-1060   # subnormals
    x[3, :] = [1.0 + 2.0**-23] + [2.0**-30] * 15            # ties after a big cancellation
    return x.astype(dtype)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rht16_is_exactly_rounded(dtype, inverse):
    x = _rows(np.random.default_rng(int(inverse) + 2 * (dtype == np.float64)), dtype)
    y = lp.rht16(x, inverse=inverse)
    assert y.dtype == dtype
    to = _f32 if dtype == np.float32 else (lambda s: np.float64(float(s)))
    for r in range(x.shape[0]):
        want = np.array(_oracle(x[r], inverse, to), dtype)
        assert np.array_equal(bits(y[r]), bits(want)), r


def test_rht16_bfloat16_rounds_once():
    import ml_dtypes
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((40, 16)) * np.exp2(rng.integers(-20, 20, (40, 16))))
    x = x.astype(ml_dtypes.bfloat16)
    y = lp.rht16(x)
    assert y.dtype == x.dtype

    def to_bf16(v):                     # nearest-even with 8 significant bits (normal range)
        if v == 0:
            return ml_dtypes.bfloat16(0.0)
        q = Fr(2) ** (ob.floor_log2(abs(v)) - 7)
        n, rem = divmod(abs(v) / q, 1)
        n = int(n) + (rem > Fr(1, 2) or (rem == Fr(1, 2) and int(n) % 2 == 1))
        return ml_dtypes.bfloat16(float(n * q) * (1 if v > 0 else -1))

    for r in range(40):
        want = np.array(_oracle(x[r].astype(np.float64), False, to_bf16), x.dtype)
        assert np.array_equal(y[r].view(np.uint16), want.view(np.uint16)), r


def test_rht16_matrix_axes_and_round_trip():
    m = lp.rht16_matrix()
    want = np.array([[SIGNS[i] * H[i][j] / 4 for j in range(16)] for i in range(16)])
    assert np.array_equal(m, want)
    assert np.array_equal(m @ m.T, np.eye(16))               # orthogonal, exactly
    rng = np.random.default_rng(5)
    x = rng.integers(-8, 8, (3, 32, 5)).astype(np.float64)   # small integers: all exact
    y = lp.rht16(x, axis=1)
    want = np.moveaxis((np.moveaxis(x, 1, -1).reshape(-1, 16) @ m).reshape(3, 5, 32), -1, 1)
    assert np.array_equal(y, want)
    assert np.array_equal(lp.rht16(y, axis=1, inverse=True), x)


def test_rht16_special_values_and_bad_input():
    x = np.zeros(16, np.float32)
    x[3] = np.inf
    y = lp.rht16(x)
    assert np.isinf(y).all()
    x[4] = np.nan
    assert np.isnan(lp.rht16(x)).all()
    with pytest.raises(ValueError, match="multiple of 16"):
        lp.rht16(np.zeros(20))
    with pytest.raises(ValueError, match="out of range"):
        lp.rht16(np.zeros(16), axis=1)
    with pytest.raises(ValueError, match="signs"):
        lp.rht16(np.zeros(16), signs=[1] * 15)
