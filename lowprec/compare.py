"""Bit-level comparison of a kernel's output with golden values: ``compare`` and
``assert_bits_equal``.

Two values agree when their codes in the format are identical (so +0 and -0 differ, and two
NaNs agree only with the same code). The ulp distance between two finite values is the number
of representable values of the format between them, counted along the real line (+0 and -0 are
one point, at distance 0); it is undefined where either value is NaN or infinite.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from . import cast
from .formats import IntFormat, TableFormat, format as _format

__all__ = ["compare", "assert_bits_equal", "CompareReport"]


@dataclasses.dataclass(frozen=True)
class CompareReport:
    """The result of ``compare``: ``count`` elements, ``mismatches`` with different codes, of
    which ``nan_mismatches`` have a NaN on exactly one side; ``max_ulp`` and ``ulp_histogram``
    ({distance: count} over finite mismatched pairs); ``first``: the first mismatches as
    (index, actual, expected, actual code, expected code, exact actual - expected)."""
    fmt: str
    count: int
    mismatches: int
    nan_mismatches: int
    max_ulp: int | None
    ulp_histogram: dict
    first: list

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def __str__(self):
        lines = [f"{self.count} elements in {self.fmt}: {self.mismatches} bit mismatches"
                 f" ({self.nan_mismatches} NaN on one side only)"]
        if self.max_ulp is not None:
            hist = ", ".join(f"{d} ulp: {n}" for d, n in sorted(self.ulp_histogram.items()))
            lines.append(f"max distance {self.max_ulp} ulp; {hist}")
        for idx, a, e, ca, ce, diff in self.first:
            lines.append(f"  at {idx}: actual {a!r} ({ca}) expected {e!r} ({ce})"
                         f" actual - expected = {diff}")
        if self.mismatches > len(self.first):
            lines.append(f"  ... {self.mismatches - len(self.first)} more")
        return "\n".join(lines)


def _codes(arr, fmt, name):
    codes = cast.encode(arr, fmt, "nearest_even")
    back = cast.decode(codes, fmt, dtype=np.float64)
    a64 = arr.astype(np.float64)
    same = (back == a64) | (np.isnan(back) & np.isnan(a64))
    if not same.all():
        i = tuple(int(j) for j in np.argwhere(~same)[0])
        raise ValueError(f"{name} holds {float(a64[i])!r} at {i}, which is not a value of {fmt.name}; "
                         "pass fmt= the format the values are in")
    return codes.astype(np.int64)


def _line(codes, values, fmt, finite):
    """Position of each finite value along the real line, in steps of the format (+-0 -> 0)."""
    if isinstance(fmt, TableFormat):                     # tapered codes: rank among values
        pos = np.searchsorted(np.asarray(fmt.values(), np.float64), values)
    elif isinstance(fmt, IntFormat):
        pos = np.where(fmt.signed & (codes >> (fmt.bits - 1) == 1), codes - (1 << fmt.bits),
                       codes) if fmt.signed else codes
    elif fmt.signed:                                     # sign-magnitude floats
        mag = codes & ((1 << (fmt.bits - 1)) - 1)
        pos = np.where((codes >> (fmt.bits - 1)) & 1 == 1, -mag, mag)
    else:
        pos = codes
    return np.where(finite, pos, 0)


def compare(actual, expected, fmt=None, *, show=10) -> CompareReport:
    """Compare ``actual`` with ``expected`` (same shape) code by code in ``fmt`` (default: the
    arrays' float dtype as a format). Every value must be a value of ``fmt``. Returns a
    ``CompareReport``; ``show``: how many mismatches to list."""
    a, _ = cast._as_float_array(actual)
    e, _ = cast._as_float_array(expected)
    if a.shape != e.shape:
        raise ValueError(f"actual has shape {a.shape} but expected has shape {e.shape}")
    if fmt is None:
        if a.dtype != e.dtype:
            raise ValueError(f"actual is {a.dtype} but expected is {e.dtype}; pass fmt= to "
                             "compare them in one format")
        fmt = a.dtype.name
    fmt = _format(fmt)
    ca, ce = _codes(a, fmt, "actual"), _codes(e, fmt, "expected")
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    bad = ca != ce
    nan_bad = bad & (np.isnan(a64) != np.isnan(e64))
    finite = np.isfinite(a64) & np.isfinite(e64)
    dist = np.abs(_line(ca, a64, fmt, finite) - _line(ce, e64, fmt, finite))
    fb = bad & finite
    hist = {int(d): int(n) for d, n in zip(*np.unique(dist[fb], return_counts=True))}
    width = (fmt.bits + 3) // 4
    first = []
    for idx in np.argwhere(bad)[:show]:
        i = tuple(int(j) for j in idx)
        av, ev = float(a64[i]), float(e64[i])
        diff = (str(Fraction(av) - Fraction(ev)) if np.isfinite(av) and np.isfinite(ev)
                else "n/a")
        first.append((i, av, ev, f"0x{int(ca[i]):0{width}x}", f"0x{int(ce[i]):0{width}x}",
                      diff))
    return CompareReport(fmt.name, int(a.size), int(bad.sum()), int(nan_bad.sum()),
                         max(hist) if hist else None, hist, first)


def assert_bits_equal(actual, expected, fmt=None, *, show=10) -> None:
    """Raise AssertionError with ``compare``'s report unless every code agrees."""
    report = compare(actual, expected, fmt, show=show)
    if not report.ok:
        raise AssertionError(str(report))
