"""Hypothesis strategies and bit-exact assertions for other projects' test suites.

>>> from hypothesis import given
>>> from lowprec import testing as lpt
>>> @given(lpt.values("float8_e4m3fn"))
... def test_my_kernel(x): ...

Strategies: ``float_formats`` (arbitrary FloatFormats), ``values(fmt)`` (values of a format,
specials included on request), ``special_values(fmt)``, ``blocks(bf)`` (float32 inputs for a
block format with zeros, subnormals, powers of two and outliers). Assertions: ``compare`` and
``assert_bits_equal`` (see ``lowprec.compare``). Needs ``hypothesis`` (the ``dev`` extra).
"""
from __future__ import annotations

import numpy as np

try:
    from hypothesis import assume, strategies as st
except ImportError as e:                                  # pragma: no cover
    raise ImportError("lowprec.testing needs hypothesis: pip install 'lowprec[dev]'") from e

from . import cast
from .blocks import block_format
from .compare import assert_bits_equal, compare
from .formats import FloatFormat, IntFormat, format as _format

__all__ = ["float_formats", "values", "special_values", "blocks", "compare",
           "assert_bits_equal"]

_CONVENTIONS = [dict(inf=True, nan="ieee"), dict(inf=False, nan="max_code"),
                dict(inf=False, nan="neg_zero"), dict(inf=False, nan=None)]


@st.composite
def float_formats(draw, max_exp=5, max_man=4):
    """Arbitrary signed FloatFormats: exponent 1..max_exp bits, mantissa 0..max_man bits, a
    bias near the IEEE one, subnormals on or off, and each special-value convention."""
    e = draw(st.integers(1, max_exp))
    m = draw(st.integers(0, max_man))
    conv = draw(st.sampled_from(_CONVENTIONS))
    base = 2 ** (e - 1) - 1
    bias = draw(st.integers(base - min(base + 3, 6), base + 6))
    try:
        return FloatFormat(e, m, bias, subnormals=draw(st.booleans()), **conv)
    except ValueError:
        assume(False)


def special_values(fmt):
    """The values where conversions go wrong: +-0, +-smallest subnormal, +-smallest normal,
    +-max, and Inf / NaN where the format has them."""
    fmt = _format(fmt)
    v = [fmt.min_subnormal, getattr(fmt, "min_normal", fmt.min_subnormal), fmt.max]
    v += [0.0] if getattr(fmt, "zero", True) else []
    if getattr(fmt, "signed", True):
        v += [-x for x in v]
    if fmt.has_inf:
        v += [np.inf] + ([-np.inf] if getattr(fmt, "signed", True) else [])
    if fmt.has_nan:
        v += [np.nan]
    return st.sampled_from(v)


def values(fmt, *, specials=False):
    """Values of ``fmt`` (as Python floats): any code's value for formats of up to 16 bits
    (uniform over codes), else random floats rounded to the format; ``specials=True`` adds Inf
    and NaN where the format has them."""
    fmt = _format(fmt)
    if fmt.bits <= 16:
        codes = np.arange(1 << fmt.bits)
        if isinstance(fmt, IntFormat) and fmt.symmetric:            # the unused code
            codes = codes[codes != 1 << (fmt.bits - 1)]
        table = cast.decode(codes, fmt, dtype=np.float64)
        if not specials:
            table = table[np.isfinite(table)]
        return st.sampled_from(sorted(set(table.tolist()), key=lambda x: (np.isnan(x), x)))
    floats = st.floats(allow_nan=specials, allow_infinity=specials)
    return floats.map(lambda x: float(cast.round(np.float64(x), fmt, overflow="saturate")
                                      if np.isfinite(x) else x))


@st.composite
def blocks(draw, bf, max_blocks=4, nonfinite=False):
    """float32 arrays (n, k) for the block format ``bf``: each block Gaussian at a random
    magnitude, with zeros, float32 subnormals, a power-of-two amax or an outlier mixed in,
    and (``nonfinite=True``) Inf and NaN."""
    bf = block_format(bf)
    n = draw(st.integers(1, max_blocks))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, bf.k)) * np.exp2(rng.integers(-140, 120, (n, 1)))
    for i in range(n):
        kind = draw(st.sampled_from(["plain", "zeros", "subnormal", "pow2", "outlier", "nan",
                                     "inf"] if nonfinite else
                                    ["plain", "zeros", "subnormal", "pow2", "outlier"]))
        j = rng.integers(0, bf.k)
        if kind == "zeros":
            x[i, rng.integers(0, bf.k, bf.k // 2)] = 0.0
        elif kind == "subnormal":
            x[i] = rng.standard_normal(bf.k) * 2.0**-140
        elif kind == "pow2":
            x[i, j] = np.exp2(rng.integers(-20, 20))
        elif kind == "outlier":
            x[i, j] *= 2.0**20
        elif kind == "nan":
            x[i, j] = np.nan
        elif kind == "inf":
            x[i, j] = np.inf if rng.random() < 0.5 else -np.inf
    with np.errstate(over="ignore"):
        return x.astype(np.float32)
