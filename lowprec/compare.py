"""Bit-level comparison of a kernel's output with golden values: ``compare`` and
``assert_bits_equal``.

Two values agree when their codes in the format are identical, so +0 and -0 differ. NaN rule:
by default any NaN equals any NaN (sign and payload are ignored, as IEEE 754-2019 6.2 leaves
the payload of a result unspecified); ``strict_nan=True`` compares their codes too (a float32
NaN's sign and payload bits, read from the array). The ulp distance between two finite values
is the number of representable values of the format between them, counted along the real line
(+0 and -0 are one point, at distance 0); it is undefined where either value is NaN or
infinite.

An integer array compared in a non-integer format is read as the format's codes (a kernel's
uint8 output); a value that is not a value of the format is counted and shown as such (with its
nearest codes), never an error, so a badly broken kernel still gets a report.
"""
from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import numpy as np

from . import cast
from .formats import IntFormat, TableFormat, format as _format

__all__ = ["compare", "assert_bits_equal", "CompareReport"]

# Classes of mismatched pairs besides finite ulp distances, worst first.
OFF_FORMAT, NAN_VS_NUMBER, INF_VS_FINITE, INF_SIGN, NAN_BITS, ZERO_SIGN = (
    "not a value of the format", "NaN vs number", "Inf vs finite", "Inf of the other sign",
    "NaN sign/payload", "+0 vs -0")
_CLASSES = ("", NAN_BITS, ZERO_SIGN, INF_SIGN, INF_VS_FINITE, NAN_VS_NUMBER, OFF_FORMAT)
_RANK = np.array([4, 5, 4, 3, 2, 1, 0])                # per class: sort key, worst first


@dataclasses.dataclass(frozen=True)
class CompareReport:
    """The result of ``compare``.

    ``count`` elements, ``mismatches`` that differ, of which ``nan_mismatches`` have a NaN on
    exactly one side and ``off_format`` hold an actual value that is not a value of ``fmt``;
    ``max_ulp`` and ``ulp_histogram`` ({distance: count} over finite mismatched pairs);
    ``buckets``: {label: count} with distances bucketed 1, 2-3, 4-7, ... and the classes
    above; ``max_rel_error`` / ``mean_rel_error`` over finite pairs with a non-zero expected
    value, ``mean_error`` (mean of actual - expected) and ``mean_ulp_error`` (mean signed ulp
    distance) over finite pairs: a bias; ``rows`` / ``cols``: mismatch counts along the last
    two axes (None below 2 axes) and ``pattern``: sentences naming a box or period that holds
    every mismatch; ``worst``: the worst mismatches first (class, then ulp distance, then
    index) as dicts; ``inputs``: how each array was read (values or codes)."""
    fmt: str
    shape: tuple
    count: int
    mismatches: int
    nan_mismatches: int
    off_format: int
    max_ulp: int | None
    ulp_histogram: dict
    buckets: dict
    max_rel_error: float | None
    mean_rel_error: float | None
    mean_error: float | None
    mean_ulp_error: float | None
    rows: tuple | None
    cols: tuple | None
    pattern: list
    worst: list
    inputs: dict

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        """The report as plain JSON-ready types (``json.dumps(report.to_dict())``)."""
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        d["shape"] = list(self.shape)
        d["ulp_histogram"] = {str(k): v for k, v in self.ulp_histogram.items()}
        d["rows"] = None if self.rows is None else list(self.rows)
        d["cols"] = None if self.cols is None else list(self.cols)
        for w in d["worst"]:
            w["index"] = list(w["index"])
            for k in ("actual", "expected"):
                w[k] = repr(w[k]) if not np.isfinite(w[k]) else w[k]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self):
        pct = f" ({100 * self.mismatches / self.count:.3g}%)" if self.count else ""
        lines = [f"{self.count} elements {self.shape} in {self.fmt}: {self.mismatches} bit "
                 f"mismatches{pct}; {self.nan_mismatches} NaN on one side only; "
                 f"{self.off_format} not values of {self.fmt}"]
        lines += [f"  {k}: {v}" for k, v in self.inputs.items() if v != "values"]
        if self.buckets:
            items = [f"{k}: {n}" for k, n in self.buckets.items()]
            head = "ulp distance" + (f" (max {self.max_ulp})" if self.max_ulp is not None
                                     else "") + ": "
            for i in range(0, len(items), 6):
                lines.append((head if i == 0 else " " * len(head)) + " | ".join(items[i:i + 6]))
        if self.mismatches and self.mean_error is not None:
            rel = (f"relative error max {self.max_rel_error:.3g}, mean {self.mean_rel_error:.3g}"
                   if self.max_rel_error is not None else "relative error n/a")
            lines.append(f"{rel}; mean signed error {self.mean_error:.3g} "
                         f"({self.mean_ulp_error:+.3g} ulp)")
        if self.mismatches and self.rows is not None:
            for name, counts in (("rows", self.rows), ("columns", self.cols)):
                idx = np.flatnonzero(counts)
                lines.append(f"{name} with mismatches: {len(idx)} of {len(counts)}: "
                             f"{_ranges(idx)}")
        lines += self.pattern
        if self.worst:
            lines.append("worst first:")
        for w in self.worst:
            what = w["class"] if w["ulp"] is None else f"{w['ulp']} ulp"
            lines.append(f"  at {w['index']}: actual {w['actual']!r} ({w['actual_code']}) "
                         f"expected {w['expected']!r} ({w['expected_code']}): {what}, "
                         f"actual - expected = {w['diff']}")
        if self.mismatches > len(self.worst):
            lines.append(f"  ... {self.mismatches - len(self.worst)} more")
        return "\n".join(lines)


def _ranges(idx, most=8):
    """'0-63, 128, 130-131' for sorted indices (at most ``most`` runs, then '...')."""
    if len(idx) == 0:
        return "none"
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = [(int(r[0]), int(r[-1])) for r in np.split(idx, cut)]
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:most])
    return text + (f", ... ({len(runs) - most} more runs)" if len(runs) > most else "")


def _read(arr, fmt, name, strict_nan):
    """(codes int64, values float64, off-format mask, how it was read) of one side."""
    a = np.asarray(arr)
    if a.dtype.kind in "ui" and not isinstance(fmt, IntFormat):
        if a.dtype.itemsize * 8 < fmt.bits:
            raise ValueError(f"{name} is {a.dtype}, too narrow for codes of {fmt.name} "
                             f"({fmt.bits} bits); pass fmt= the format whose codes it holds, "
                             "or cast values to float")
        if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << fmt.bits):
            bad = int(a.max()) if int(a.max()) >= 1 << fmt.bits else int(a.min())
            raise ValueError(f"{name} is {a.dtype}, read as codes of {fmt.name}, but holds "
                             f"{bad}, beyond its {fmt.bits}-bit codes; if these are values, "
                             f"cast them to float first")
        codes = a.astype(np.int64)
        return codes, cast.decode(a, fmt, dtype=np.float64), np.zeros(a.shape, bool), \
            f"{a.dtype} codes of {fmt.name}"
    if a.dtype.kind in "ui":                             # values of an integer format
        a = a.astype(np.float64)
    a, _ = cast._as_float_array(a, name)
    a64 = a.astype(np.float64)
    safe = a64
    if not getattr(fmt, "has_nan", True):              # encode cannot take it: off-format
        safe = np.where(np.isnan(a64), 0.0, a64)
    codes = cast.encode(safe, fmt, "nearest_even",
                        None if getattr(fmt, "has_inf", False) else "saturate").astype(np.int64)
    back = cast.decode(codes, fmt, dtype=np.float64)
    off = ~((back == a64) | (np.isnan(back) & np.isnan(a64)))
    if strict_nan and a.dtype.name == fmt.name:          # the array's own bits: NaN payloads
        codes = np.where(np.isnan(a64), a.view(f"u{a.dtype.itemsize}").astype(np.int64),
                         codes)
    return codes, a64, off, "values"


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


def _bucket_label(k):
    """Distances 2^k .. 2^(k+1) - 1: '1', '2-3', ..., '512-1023', then '[2^10, 2^11)'."""
    lo, hi = 1 << k, (1 << (k + 1)) - 1
    return str(lo) if lo == hi else f"{lo}-{hi}" if k < 10 else f"[2^{k}, 2^{k + 1})"


def _pattern(bad2):
    """Sentences naming where every mismatch lies in a (rows, cols) mask, if it says more than
    'everywhere': a box (a wrong tile) and a period of rows or columns (a wrong lane)."""
    R, C = bad2.shape
    rows, cols = np.flatnonzero(bad2.any(1)), np.flatnonzero(bad2.any(0))
    out = []
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    if (r1 - r0 + 1, c1 - c0 + 1) != (R, C):
        box = bad2[r0:r1 + 1, c0:c1 + 1]
        out.append(f"every mismatch lies in rows {r0}-{r1} x columns {c0}-{c1} "
                   f"({100 * box.mean():.3g}% of that box mismatches)")
    for name, counts, n in (("row", bad2.sum(1), R), ("column", bad2.sum(0), C)):
        best = None                                    # the period naming the fewest residues
        for p in (2, 4, 8, 16, 32, 64, 128, 256):
            if p >= n or n % p:
                continue
            folded = counts.reshape(n // p, p)
            res = np.flatnonzero(folded.sum(0))
            repeats = np.count_nonzero(folded.sum(1)) > 1      # else the box says it all
            sharper = best is None or len(res) / p < len(best[1]) / best[0]
            if len(res) < p and repeats and sharper:
                best = (p, res)
        if best:
            out.append(f"every mismatch lies in {name}s whose index mod {best[0]} is in "
                       f"{{{_ranges(best[1])}}}")
    return out


def compare(actual, expected, fmt=None, *, show=10, strict_nan=False) -> CompareReport:
    """Compare ``actual`` with ``expected`` (same shape) code by code in ``fmt`` (default: the
    arrays' float dtype as a format) and return a ``CompareReport`` (``print`` it; ``.ok``;
    ``.to_json()``).

    Each side is values (float arrays) or, for an integer array in a non-integer format, the
    format's codes. An actual value that is not a value of ``fmt`` is counted as a mismatch of
    its own class, shown with its nearest code; an expected one raises (the golden and ``fmt``
    disagree). NaNs: any NaN equals any NaN, unless ``strict_nan=True`` (sign and payload must
    agree). ``show``: how many mismatches to list, worst first."""
    if not isinstance(show, (int, np.integer)) or isinstance(show, bool) or show < 0:
        raise ValueError(f"show={show!r} must be an int >= 0")
    a_raw, e_raw = np.asarray(actual), np.asarray(expected)
    if a_raw.shape != e_raw.shape:
        raise ValueError(f"actual has shape {a_raw.shape} but expected has shape "
                         f"{e_raw.shape}")
    if fmt is None:
        if a_raw.dtype != e_raw.dtype:
            raise ValueError(f"actual is {a_raw.dtype} but expected is {e_raw.dtype}; pass "
                             "fmt= to compare them in one format (integer arrays are read "
                             "as its codes)")
        if a_raw.dtype.kind in "uib":
            raise ValueError(f"actual and expected are {a_raw.dtype}: pass fmt= the format "
                             "whose codes they hold (e.g. fmt='float8_e4m3fn')")
        fmt = a_raw.dtype.name
    fmt = _format(fmt)
    ca, a64, off_a, how_a = _read(a_raw, fmt, "actual", strict_nan)
    ce, e64, off_e, how_e = _read(e_raw, fmt, "expected", strict_nan)
    if off_e.any():
        i = tuple(int(j) for j in np.argwhere(off_e)[0])
        raise ValueError(f"expected holds {float(e64[i])!r} at {i}, which is not a value of "
                         f"{fmt.name}; pass fmt= the format the golden values are in")
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    bad = (ca != ce) | off_a
    if not strict_nan:
        bad &= ~(nan_a & nan_e)
    finite = np.isfinite(a64) & np.isfinite(e64)
    pa, pe = _line(ca, a64, fmt, finite), _line(ce, e64, fmt, finite)
    dist = np.abs(pa - pe)
    fb = bad & finite & ~off_a
    hist = {int(d): int(n) for d, n in zip(*np.unique(dist[fb], return_counts=True))}

    cls = np.zeros(a64.shape, np.int8)                  # class of each mismatch, 0: ulp
    inf_a, inf_e = np.isinf(a64), np.isinf(e64)
    for mask, c in ((bad & nan_a & nan_e, NAN_BITS), (fb & (dist == 0), ZERO_SIGN),
                    (bad & inf_a & inf_e, INF_SIGN),
                    (bad & (inf_a != inf_e) & ~nan_a & ~nan_e, INF_VS_FINITE),
                    (bad & (nan_a != nan_e), NAN_VS_NUMBER), (off_a, OFF_FORMAT)):
        cls[mask] = _CLASSES.index(c)
    buckets = {}
    if (fb & (dist == 0)).any():
        buckets["0 (+0 vs -0)"] = int((fb & (dist == 0)).sum())
    pos = dist[fb & (dist > 0)]
    if pos.size:
        k = np.floor(np.log2(pos)).astype(np.int64)
        for kk, n in zip(*np.unique(k, return_counts=True)):
            buckets[_bucket_label(int(kk))] = int(n)
    counts = np.bincount(cls[bad], minlength=len(_CLASSES))
    for c in (INF_VS_FINITE, INF_SIGN, NAN_VS_NUMBER, NAN_BITS, OFF_FORMAT):
        if counts[_CLASSES.index(c)]:
            buckets[c] = int(counts[_CLASSES.index(c)])

    with np.errstate(all="ignore"):
        err = np.where(finite, a64 - e64, 0.0)
        nz = finite & (e64 != 0)
        rel = np.abs(err[nz]) / np.abs(e64[nz])
    nfin = int(finite.sum())
    stats = ((float(rel.max()), float(rel.mean())) if rel.size else (None, None)) + (
        (float(err[finite].mean()), float((pa - pe)[finite].mean())) if nfin else (None, None))

    rows = cols = None
    pattern = []
    if off_a.any() and how_a == "values":
        fin = a64[np.isfinite(a64)]
        if fin.size and (fin == np.floor(fin)).all() and fin.min() >= 0 and \
                fin.max() < 1 << fmt.bits:
            pattern.append(f"actual holds only integers in [0, {(1 << fmt.bits) - 1}]: codes "
                           f"of {fmt.name} stored as {a_raw.dtype}? Pass them as an unsigned "
                           "integer array and they are read as codes")
    if a64.ndim >= 2:
        bad2 = bad.reshape(-1, *a64.shape[-2:]).any(0) if a64.ndim > 2 else bad
        cnt = bad.reshape(-1, *a64.shape[-2:]).sum(0)
        rows, cols = tuple(int(n) for n in cnt.sum(1)), tuple(int(n) for n in cnt.sum(0))
        if bad.any():
            pattern += _pattern(bad2)

    idx = np.flatnonzero(bad.reshape(-1))
    rank = _RANK[cls.reshape(-1)[idx]]
    order = idx[np.lexsort((idx, -dist.reshape(-1)[idx], rank))][:show]
    width = (fmt.bits + 3) // 4
    worst = []
    for flat in order:
        i = tuple(int(j) for j in np.unravel_index(flat, a64.shape))
        av, ev = float(a64[i]), float(e64[i])
        diff = (str(Fraction(av) - Fraction(ev)) if np.isfinite(av) and np.isfinite(ev)
                else "n/a")
        c = _CLASSES[cls[i]]
        worst.append(dict(index=i, actual=av, expected=ev,
                          actual_code=("nearest " if off_a[i] else "") +
                          f"0x{int(ca[i]):0{width}x}",
                          expected_code=f"0x{int(ce[i]):0{width}x}",
                          ulp=None if c else int(dist[i]), **{"class": c or "ulp"},
                          diff=diff))
    return CompareReport(fmt.name, tuple(a64.shape), int(a64.size), int(bad.sum()),
                         int((bad & (nan_a != nan_e)).sum()), int(off_a.sum()),
                         max(hist) if hist else None, hist, buckets, *stats, rows, cols,
                         pattern, worst, {"actual": how_a, "expected": how_e})


def assert_bits_equal(actual, expected, fmt=None, *, show=10, strict_nan=False) -> None:
    """Raise AssertionError with ``compare``'s report unless every code agrees."""
    report = compare(actual, expected, fmt, show=show, strict_nan=strict_nan)
    if not report.ok:
        raise AssertionError(str(report))
