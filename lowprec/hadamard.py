"""The 16 x 16 random Hadamard transform of NVFP4 training (docs/blocks.md).

Transformer Engine rotates each run of 16 consecutive values by M = diag(s) H16 / 4, with H16
the Sylvester Hadamard matrix (H[i, j] = (-1)^popcount(i & j)) and s its fixed "wgrad" sign
vector, before computing NVFP4 scales: y = x @ M, and x = y @ M.T undoes it (M is orthogonal).

Every output is a sum of 16 signed inputs divided by 4. lowprec computes that sum exactly
(Shewchuk's error-free expansion, as in ``math.fsum``) and rounds it once to the input's
float type, so the result does not depend on summation order. A GPU's bf16/fp32 matmul sums in
an order of its own; compare against it with that in mind.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numba as nb
import numpy as np

__all__ = ["rht16", "rht16_matrix", "TE_SIGNS"]

TE_SIGNS = (1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1)   # get_wgrad_sign_vector


def _hadamard16():
    i = np.arange(16)
    pop = np.vectorize(lambda v: bin(v).count("1"))(i[:, None] & i[None, :])
    return np.where(pop % 2 == 0, 1.0, -1.0)


def rht16_matrix(signs=TE_SIGNS) -> np.ndarray:
    """M = diag(signs) @ H16 / 4 as float64 (exact: entries +-1/4)."""
    s = np.asarray(signs, dtype=np.float64)
    if s.shape != (16,) or not np.all(np.abs(s) == 1):
        raise ValueError(f"signs must be 16 values of +1 or -1, got {signs!r}")
    return s[:, None] * _hadamard16() / 4.0


@nb.njit(cache=True)
def _low_bit(v):                                 # pragma: no cover - compiled
    return np.array([v]).view(np.int64)[0] & 1


@nb.njit(cache=True, parallel=True)
def _exact_rows(x, sgn, hi_out, odd_out):      # pragma: no cover - compiled
    """For each row r and output j: the exact sum S = sum_i x[r, i] * sgn[i, j] (sgn = +-1) as
    hi = RN64(S) and odd = S rounded to odd in float64."""
    for r in nb.prange(x.shape[0]):
        part = np.empty(17)
        for j in range(16):
            m = 0
            for i in range(16):
                v = x[r, i] * sgn[i, j]
                k = 0
                for q in range(m):                       # grow the expansion by v
                    y = part[q]
                    if abs(v) < abs(y):
                        v, y = y, v
                    h = v + y
                    lo = y - (h - v)
                    if lo != 0.0:
                        part[k] = lo
                        k += 1
                    v = h
                part[k] = v
                m = k + 1
            m -= 1
            hi = part[m]
            lo = 0.0
            while m > 0:                                 # top-down, as math.fsum
                xx = hi
                m -= 1
                y = part[m]
                hi = xx + y
                lo = y - (hi - xx)
                if lo != 0.0:
                    break
            odd = hi
            if lo != 0.0:                                # exact = hi + lo + (smaller, same sign)
                if _low_bit(hi) == 0:
                    odd = np.nextafter(hi, np.inf if lo > 0 else -np.inf)
                if m > 0 and ((lo < 0 and part[m - 1] < 0) or (lo > 0 and part[m - 1] > 0)):
                    y = lo * 2.0                         # exactly half way: the rest decides
                    xx = hi + y
                    if y == xx - hi:
                        hi = xx
            hi_out[r, j] = hi
            odd_out[r, j] = odd


def rht16(x, axis=-1, *, inverse=False, signs=TE_SIGNS) -> np.ndarray:
    """The random Hadamard transform of ``x`` along ``axis`` (length a multiple of 16): each
    run of 16 values v becomes v @ M (``inverse=True``: v @ M.T), M = ``rht16_matrix(signs)``,
    each output the exact value rounded once to x's float dtype (float16, bfloat16, float32
    or float64). Source: Transformer Engine's NVFP4 recipe (arXiv:2509.25149, docs/blocks.md)."""
    from . import cast  # noqa: PLC0415
    arr, _ = cast._as_float_array(x)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if arr.ndim == 0 or not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis={axis} is out of range for an input of shape {arr.shape}")
    if arr.shape[axis] % 16:
        raise ValueError(f"axis {axis} has length {arr.shape[axis]}; the transform works on "
                         "runs of 16, so it must be a multiple of 16")
    m = rht16_matrix(signs)
    sgn = np.ascontiguousarray((m.T if inverse else m) * 4.0)     # entries +-1
    moved = np.moveaxis(arr, axis, -1)
    rows = moved.reshape(-1, 16).astype(np.float64)
    fin = np.isfinite(rows).all(axis=1)
    big = np.abs(np.where(fin[:, None], rows, 0.0)).max(axis=1, initial=0.0) > 2.0**1000
    easy = fin & ~big
    hi = np.empty((int(easy.sum()), 16))
    odd = np.empty_like(hi)
    _exact_rows(np.ascontiguousarray(rows[easy]), sgn, hi, odd)
    y = np.empty_like(rows)
    if arr.dtype == np.float64:
        y[easy] = hi * 0.25                              # exact unless below 2^-1022
        redo = np.zeros(rows.shape, bool)
        redo[easy] = (np.abs(hi) < 2.0**-1020) & (hi != 0)        # 0 is exact
        redo[fin & big] = True
        for r, j in zip(*np.nonzero(redo)):             # rare: an exact rational, rounded once
            q = sum(Fraction(float(v)) * int(sgn[i, j]) for i, v in enumerate(rows[r])) / 4
            try:
                y[r, j] = float(q)
            except OverflowError:                        # rounds past float64's max: Inf
                y[r, j] = math.inf if q > 0 else -math.inf
    else:
        y[easy] = odd * 0.25        # round-to-odd in float64 (53 >= 24 + 2 bits), then one
        y[fin & big] = 0.0          # rounding to the narrow type; |x| < 2^1000 here
    with np.errstate(invalid="ignore", over="ignore"):
        y[~fin] = (rows[~fin] @ sgn) * 0.25              # Inf / NaN: IEEE arithmetic
    if arr.dtype in (np.float32, np.float16):
        y = y.astype(arr.dtype)
    elif arr.dtype != np.float64:
        y = cast.round(y, "bfloat16", dtype=arr.dtype)
    return np.moveaxis(y.reshape(moved.shape), -1, axis)
