"""Rounding float32 arrays into small formats by table lookup.

For a float format of at most 8 bits that keeps at most 6 fraction bits and whose finest step
is at least 2^-125, the rounded code of a float32 x depends on its bits only through the top
16 (sign, exponent, 7 fraction bits) and whether the low 16 are nonzero: the rounding position
(the half bit) lies at most 7 bits below x's leading bit, so inside the top 16 bits, and every
float32 subnormal lies below half the format's finest step. So for each deterministic mode and
overflow policy one table of 2 x 65536 codes, built once by the general kernel on the inputs
hi << 16 and hi << 16 | 1, rounds any float32 array with one gather per element (the value
bits come from a second 256-entry table). NaN inputs into formats without a NaN under an
explicit policy are counted, and the caller raises, as on the general path.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from . import _kernels as K
from .formats import FloatFormat

MIN_SIZE = 1 << 16
_TABLES = {}


def applies(fmt, P) -> bool:
    """True if the table path gives the general kernel's answer for fmt and P."""
    return (isinstance(fmt, FloatFormat) and fmt.bits <= 8 and fmt.man_bits <= 6
            and fmt.min_subnormal >= 2.0**-125 and int(P[K.MODE]) != K.SR
            and int(P[K.WSH]) == 31)


def tables(P):
    """(code of every index (hi << 1) | low_nonzero, value bits of every index, NaN-error
    flag) for the parameter array P (float32 work type), built by the general kernel and
    cached per P."""
    key = tuple(int(v) for v in P)
    t = _TABLES.get(key)
    if t is None:
        hi = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
        xb = np.empty(1 << 17, np.uint32)
        xb[0::2], xb[1::2] = hi, hi | np.uint32(1)
        codes = np.empty(xb.shape, np.int64)
        vals = np.empty(xb.shape, np.int64)
        errs = np.zeros(1, np.int64)
        none = np.zeros(1, np.uint64)
        K.round_array(xb, P, 0, none, np.uint64(0), 0, True, codes, errs)
        K.round_array(xb, P, 0, none, np.uint64(0), 0, False, vals, errs)
        bad = codes == K.ERR
        t = _TABLES[key] = (np.where(bad, 0, codes).astype(np.uint8),
                            np.where(bad, 0, vals).astype(np.uint32), bool(bad.any()))
    return t


@nb.njit(nogil=True, cache=True)
def rows(xb, lo, hi, T, out):
    """out[i] = T[index of xb[i]] for i in [lo, hi): codes or value bits."""
    for i in range(lo, hi):
        b = xb[i]
        out[i] = T[((b >> np.uint32(16)) << np.uint32(1)) | np.uint32((b & np.uint32(0xFFFF)) != 0)]
    return 0


@nb.njit(nogil=True, cache=True)
def count_nan(xb, lo, hi):
    """The NaN inputs in xb[lo:hi] (float32 bits)."""
    n = 0
    for i in range(lo, hi):
        n += (xb[i] & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return n


def run(xb, P, want_code, out, errs, parallel):
    """Round the float32 bits xb into out (codes or value bits) by table; NaN inputs the
    format cannot hold are counted into errs[0]."""
    codes, values, nan_bad = tables(P)
    T = codes if want_code else values
    parallel(xb.shape[0], lambda lo, hi: rows(xb, lo, hi, T, out), errs)
    if nan_bad:
        parallel(xb.shape[0], lambda lo, hi: count_nan(xb, lo, hi), errs)
