"""Correctly rounded ``add``, ``sub``, ``mul``, ``div``, ``fma``, ``sqrt`` into any format.

Each result is the exact real result of the operation on the input values, rounded **once** to
``fmt`` with any rounding mode of ``lp.round`` (stochastic included: the discarded fraction is
the exact one, to 64 bits plus a sticky bit). The exact result is formed with integer arithmetic
on the significands (``lowprec._exact``, Numba, for large arrays; ``lowprec._exact_int``,
Python integers, below ``lp.cast.SMALL`` elements), never by rounding in float64 first.

Inputs are float arrays (float16, bfloat16, float32, float64) or Python numbers, broadcast
together as NumPy does; their values are used as they are (round them to an input format first
with ``lp.round`` to model a narrow operand). Special values follow IEEE 754-2019 §6 and §7:
NaN operands give NaN, invalid operations (0 * Inf, Inf - Inf, 0/0, Inf/Inf, sqrt of x < 0) give
NaN, x/0 gives a signed infinity, and an exact zero sum of opposite-signed terms is +0 (-0 when
rounding ``down``). Infinite and NaN results then meet the format as ``lp.round`` meets +-Inf and
NaN inputs (the ``overflow`` policy); a NaN result in a format without NaN raises, whatever
the policy (``lp.round`` instead maps a NaN input to zero under ``overflow=None``, as
ml_dtypes casts do). The result dtype follows ``lp.round``'s rule applied to the inputs' common dtype; ``dtype=`` overrides it.
"""
from __future__ import annotations

import numpy as np

from ._exact_int import ADD, DIV, FMA, MUL, SQRT, SUB, arith_small
from .plan import NO_CODE, _build
from .cast import (SMALL, _as_float_array, _word_halves, _check_rounding_args, _params, _prepare_rbits, holds,
                   result_dtype)
from .formats import FloatFormat, IntFormat, format as _format
from .rounding import check_overflow, check_seed

__all__ = ["add", "sub", "mul", "div", "fma", "sqrt"]


def _apply(op, operands, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, dtype):
    fmt = _format(fmt)
    if not isinstance(fmt, (FloatFormat, IntFormat)) or not holds(fmt, np.float64):
        raise ValueError(f"fmt={fmt.name} is not allowed: arithmetic rounds to float or integer "
                         "formats whose values float64 holds (at most 52 mantissa bits)")
    names = ("x", "y", "z")
    arrs = [_as_float_array(v, names[i]) for i, v in enumerate(operands)]
    scalar = all(s for _, s in arrs)
    in_dtype = np.result_type(*[a.dtype for a, _ in arrs])
    try:
        shape = np.broadcast_shapes(*[a.shape for a, _ in arrs])
    except ValueError:
        raise ValueError("operands do not broadcast together: shapes "
                         + ", ".join(str(a.shape) for a, _ in arrs)) from None
    mode, r, variant = _check_rounding_args(fmt, rounding, sr_bits, sr_variant, seed, rbits,
                                            np.float64)
    policy = check_overflow(overflow, fmt)
    flat = [np.ascontiguousarray(np.broadcast_to(a, shape), dtype=np.float64).reshape(-1)
            .view(np.uint64) for a, _ in arrs]
    while len(flat) < 3:
        flat.append(flat[0])
    rsrc, rb, sd = 0, np.zeros(1, np.uint64), 0
    if mode == "stochastic":
        if rbits is not None:
            rsrc, rb = 1, _prepare_rbits(rbits, shape, r)
        else:
            rsrc, sd = 2, check_seed(seed)
    n = flat[0].shape[0]
    if n < SMALL:                                 # Python integers, no compiled kernel
        plan = _build(fmt, mode, policy, False, r, variant, 64)     # NaN: no zero
        code, vb = arith_small(op, *flat, plan, *_word_halves(rsrc, rb, sd, n, plan))
        out, nerr = vb.view(np.uint64), int(np.sum(code == NO_CODE))
    else:
        from . import _exact  # noqa: PLC0415  (compiled on first use)
        P = _params(fmt, 64, mode, policy, False, r, variant)
        out = np.empty(n, dtype=np.uint64)
        errs = np.zeros(1, dtype=np.int64)
        _exact.arith_array(op, flat[0], flat[1], flat[2], P, rsrc, rb, np.uint64(sd), out,
                           errs)
        nerr = errs[0]
    if nerr:
        raise ValueError(f"a result is NaN (a NaN operand or an invalid operation) but "
                         f"{fmt.name} has no NaN code")
    rdt = result_dtype(in_dtype, fmt)
    if dtype is not None:
        rdt = np.dtype(dtype)
        if rdt.name not in ("float16", "bfloat16", "float32", "float64") or not holds(fmt, rdt):
            raise ValueError(f"dtype={rdt} is not allowed: it must be a float dtype that holds "
                             f"every value of {fmt.name}, e.g. {result_dtype(np.float64, fmt)}")
    res = out.view(np.float64).reshape(shape).astype(rdt, copy=False)
    return res[()] if scalar else res


_DOC_ARGS = """
    ``fmt``: the result format (name or object). ``rounding``, ``overflow``, ``sr_bits``,
    ``sr_variant``, ``seed``, ``rbits``: as ``lp.round`` (``sr_bits=None`` uses 64 random bits;
    ``seed`` numbers elements in the broadcast result's flat C order). ``dtype``: result dtype.
    Rules for special values and the result dtype: ``lowprec.arith``."""


def add(x, y, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
        seed=None, rbits=None, dtype=None):
    """x + y rounded once to ``fmt`` (IEEE 754-2019 §5.4.1 addition, any format and mode)."""
    return _apply(ADD, (x, y), fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                  dtype)


def sub(x, y, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
        seed=None, rbits=None, dtype=None):
    """x - y rounded once to ``fmt`` (IEEE 754-2019 §5.4.1 subtraction: x + (-y))."""
    return _apply(SUB, (x, y), fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                  dtype)


def mul(x, y, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
        seed=None, rbits=None, dtype=None):
    """x * y rounded once to ``fmt`` (IEEE 754-2019 §5.4.1 multiplication)."""
    return _apply(MUL, (x, y), fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                  dtype)


def div(x, y, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
        seed=None, rbits=None, dtype=None):
    """x / y rounded once to ``fmt`` (IEEE 754-2019 §5.4.1 division)."""
    return _apply(DIV, (x, y), fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                  dtype)


def fma(x, y, z, fmt, rounding=None, overflow=None, *, sr_bits=None,
        sr_variant="srff", seed=None, rbits=None, dtype=None):
    """x * y + z with one rounding to ``fmt`` (IEEE 754-2019 §5.4.1 fusedMultiplyAdd)."""
    return _apply(FMA, (x, y, z), fmt, rounding, overflow, sr_bits, sr_variant, seed,
                  rbits, dtype)


def sqrt(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
         seed=None, rbits=None, dtype=None):
    """sqrt(x) rounded once to ``fmt`` (IEEE 754-2019 §5.4.1 squareRoot; sqrt(-0) = -0)."""
    return _apply(SQRT, (x,), fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                  dtype)


for _f in (add, sub, mul, div, fma, sqrt):
    _f.__doc__ += "\n" + _DOC_ARGS
