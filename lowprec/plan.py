"""The rounding plan: everything one rounding needs, as a frozen object with named fields.

``lp.plan(fmt, rounding, overflow, sr_bits=..., sr_variant=..., dtype=...)`` validates its
arguments once and returns a ``Plan``. Every backend reads the same plan by field name: the
array-API step (``lowprec.xstep``: NumPy small arrays, JAX, torch), the Numba kernels (which
pack it into their own parameter array inside ``lowprec._kernels``), the Pallas and Triton
kernels. The rule the plan describes is in ``docs/rounding.md``:

An input is read as the bits of a *work* float (float32 or float64, ``work_bits``) that holds
every value of the format exactly. A magnitude ``sig * 2^(E - work_man_bits)`` falls on the
format's grid at exponent ``Et = max(E, emin)`` with ``man_bits`` fraction bits in the normal
range and ``sub_man_bits`` below it (the quantum is ``2^(Et - kept bits)``). The rounded
magnitude ``q`` gives the code magnitude ``((Et - emin) << man_bits) + (q << (man_bits -
kept)) + code_base``, monotone in |x|, so overflow is one comparison with ``max_code_pos`` /
``max_code_neg``. The special outputs (NaN, overflow, saturation, and the zero-less E8M0's
corner cases) are precomputed as (code, work-type bits) pairs under the overflow policy.
"""
from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import numpy as np

from .formats import FloatFormat, IntFormat, TableFormat, format as _format
from .rounding import VARIANT_NAMES, check_overflow, mode_name
from .xstep import NO_CODE

__all__ = ["Plan", "plan", "holds", "work_bits", "NO_CODE"]

_WORK = {32: (23, 127, np.float32, np.uint32), 64: (52, 1023, np.float64, np.uint64)}
_FLOAT_IN = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to round to one format, in one mode, under one overflow policy (module docstring).

    Codes are Python ints (``NO_CODE`` where the format cannot represent the result); ``*_bits``
    fields are the work type's bit patterns of the same results (unsigned, ``work_bits`` wide).
    """
    format: str              # the format's name
    mode: str                # canonical rounding mode (``lowprec.rounding``)
    overflow: str            # the resolved policy: "saturate", "inf", "nan" or "inf_always"
    natural: bool            # overflow=None was asked for (the format's own behaviour)
    sr_variant: str          # stochastic variant: srff, srf, src, sr_odd ("srff" if unused)
    sr_bits: int             # random bits r one decision uses (0 unless stochastic)
    work_bits: int           # 32 (float32 work type) or 64 (float64)
    work_man_bits: int       # fraction bits of the work type (23 or 52)
    work_bias: int           # exponent bias of the work type (127 or 1023)
    man_bits: int            # fraction bits kept in the normal range
    emin: int                # exponent of the smallest normal value
    sub_man_bits: int        # fraction bits kept below 2^emin (man_bits with subnormals, else 0)
    subnormal_step_exp: int  # log2 of the quantum below 2^emin
    code_base: int           # added to the code magnitude (-2^man_bits: a format without zero)
    max_code_pos: int        # largest code magnitude of a positive result
    max_code_neg: int        # largest code magnitude of a negative result (< 0: none)
    kind: str                # code layout: "sign_magnitude", "twos_complement", "unsigned"
    sign_bit: int            # position of the sign bit in a code
    code_mask: int           # all ones of the format's width
    neg_zero: bool           # the format has -0
    nan_pos_code: int
    nan_pos_bits: int
    nan_neg_code: int
    nan_neg_bits: int
    overflow_pos_code: int   # a result beyond the largest value, rounded away from zero
    overflow_pos_bits: int
    overflow_neg_code: int
    overflow_neg_bits: int
    max_pos_code: int        # a result beyond the largest value, rounded toward zero
    max_pos_bits: int
    max_neg_code: int
    max_neg_bits: int
    zero_in_code: int        # a zero input to a format without zero (E8M0)
    zero_in_bits: int
    min_code: int            # a tiny result in a format without zero: its smallest value
    min_bits: int

    @property
    def stochastic(self) -> bool:
        return self.mode == "stochastic"

    @property
    def wide_words(self) -> bool:
        """Each decision reads a 64-bit random word (more than 32 random bits)."""
        return self.sr_bits > 32


def _float_info(dt):
    dt = np.dtype(dt)
    import ml_dtypes  # noqa: PLC0415
    fi = ml_dtypes.finfo(dt) if dt.kind == "V" or dt.name == "bfloat16" else np.finfo(dt)
    return int(fi.nmant), int(fi.minexp), int(fi.maxexp) - 1


def geometry(fmt):
    """(fraction bits, emin, emax, finest quantum exponent) of a FloatFormat / IntFormat."""
    if isinstance(fmt, IntFormat):
        mt = fmt.bits - 1 if fmt.signed else fmt.bits
        emin = mt - fmt.frac_bits
        return mt, emin, emin, emin - mt
    return fmt.man_bits, fmt.emin, fmt.emax, fmt.emin - fmt.man_bits


def holds(fmt, dtype) -> bool:
    """True if every value of ``fmt`` is exactly representable in the float ``dtype``."""
    fmt = _format(fmt)
    dt = np.dtype(dtype)
    if isinstance(fmt, TableFormat):
        v = fmt.values()
        with np.errstate(over="ignore"):
            return bool(np.all(v.astype(dt).astype(np.float64) == v))
    md, emin_d, emax_d = _float_info(dt)
    mt, emin, emax, finest = geometry(fmt)
    return finest >= emin_d - md and emax <= emax_d and (mt <= md or emax < emin_d)


def work_bits(fmt, in_dtype) -> int:
    """32 if float32 holds the format and the input (its work type), else 64."""
    fmt = _format(fmt)
    if np.dtype(in_dtype).itemsize > 4 or isinstance(fmt, TableFormat):
        return 64
    mt, emin, _, _ = geometry(fmt)
    return 32 if holds(fmt, np.float32) and emin >= -126 and mt <= 23 else 64


def _value_bits(v, W, negative=False):
    """Work-type bits of a float value ("nan": the quiet NaN), with the given sign."""
    ft, ut = _WORK[W][2:]
    f = ft(np.nan) if v == "nan" else ft(float(v))
    b = int(np.array([f], dtype=ft).view(ut)[0]) & ~(1 << (W - 1))
    return b | (1 << (W - 1)) if negative else b


def _specials(fmt, policy, natural, W):
    """Codes and work-type bits for NaN, overflow, saturation and the E8M0 corner cases."""
    sign = 1 << (fmt.bits - 1) if fmt.signed else 0

    def nan_out(neg):
        if fmt.has_nan:
            code = fmt.nan_code | (sign if neg and fmt.signed_nan else 0)
            return code, _value_bits("nan", W, bool(code & sign))
        if natural and fmt.has_neg_zero:          # ml_dtypes: NaN -> zero of the other sign
            return (0 if neg else sign), _value_bits(0.0, W, not neg)
        return NO_CODE, 0

    def max_out(neg):
        if neg and not fmt.signed:                # the largest value below zero is 0, if any
            return nan_out(neg) if fmt.lowest > 0 else (0, 0)
        if isinstance(fmt, IntFormat):
            mag = -fmt.min_int if neg else fmt.max_int
            code = (-mag) & ((1 << fmt.bits) - 1) if neg else mag
            return code, _value_bits(math.ldexp(mag, -fmt.frac_bits), W, neg)
        return fmt.max_code | (sign if neg else 0), _value_bits(fmt.max, W, neg)

    def inf_out(neg):
        if neg and not fmt.signed:
            return nan_out(neg)
        return fmt.inf_code | (sign if neg else 0), _value_bits(np.inf, W, neg)

    ovf = {"saturate": max_out, "inf": inf_out, "nan": nan_out, "inf_always": inf_out}[policy]
    sat = inf_out if policy == "inf_always" else max_out     # an overflow toward zero
    d = {}
    d["nan_pos_code"], d["nan_pos_bits"] = nan_out(False)
    d["nan_neg_code"], d["nan_neg_bits"] = nan_out(True)
    d["overflow_pos_code"], d["overflow_pos_bits"] = ovf(False)
    d["overflow_neg_code"], d["overflow_neg_bits"] = ovf(True)
    d["max_pos_code"], d["max_pos_bits"] = sat(False)
    d["max_neg_code"], d["max_neg_bits"] = sat(True)
    d["zero_in_code"] = d["zero_in_bits"] = d["min_code"] = d["min_bits"] = 0
    if isinstance(fmt, FloatFormat) and not fmt.zero:
        d["zero_in_code"], d["zero_in_bits"] = nan_out(False)
        d["min_code"], d["min_bits"] = 0, _value_bits(math.ldexp(1.0, fmt.emin), W)
    return d


def rounding_args(rounding, sr_bits, sr_variant, wide_input, own="nearest_even"):
    """(mode, r, variant) of a rounding request: the canonical mode (``rounding=None``: the
    format's own, ``own``), the random bits r one stochastic decision reads (``sr_bits``
    1..32, or for None, exact SR: 32, or 64 for float64 inputs; 0 unless stochastic) and the
    variant (srff for exact SR and deterministic modes)."""
    mode = mode_name(own if rounding is None else rounding)
    if sr_variant not in VARIANT_NAMES:
        raise ValueError(f"sr_variant={sr_variant!r} is not allowed; choose one of "
                         f"{list(VARIANT_NAMES)}")
    if mode != "stochastic":
        if sr_bits is not None:
            raise ValueError(f"seed, rbits and sr_bits apply to rounding='stochastic' only "
                             f"(rounding={rounding!r})")
        return mode, 0, "srff"
    if sr_bits is None:
        return mode, (64 if wide_input else 32), "srff"
    if isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)):
        raise TypeError(f"sr_bits must be an int in 1..32 or None, got {sr_bits!r}")
    if not 1 <= sr_bits <= 32:
        raise ValueError(f"sr_bits={sr_bits} is out of range: allowed 1..32 (None = exact)")
    return mode, int(sr_bits), sr_variant


def plan(fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
         dtype=np.float32) -> Plan:
    """The ``Plan`` of rounding inputs of float ``dtype`` to ``fmt`` (module docstring).

    ``rounding``, ``overflow``, ``sr_bits``, ``sr_variant`` as in ``lp.round``; ``dtype``: the
    input's float dtype (it decides the work type and the exact-SR word width). Raises
    ``ValueError`` / ``TypeError`` naming the argument for anything ``lp.round`` refuses.

    >>> p = plan("float8_e4m3fn")
    >>> p.man_bits, p.emin, p.max_pos_bits == 0x43E00000
    (3, -6, True)
    """
    fmt = _format(fmt)
    dt = np.dtype(dtype)
    if dt.name not in _FLOAT_IN:
        raise TypeError(f"dtype must be float16, bfloat16, float32 or float64 (the input's "
                        f"dtype), got {dt}")
    mode, r, variant = rounding_args(rounding, sr_bits, sr_variant, dt.itemsize > 4,
                                     fmt.rounding)
    policy = check_overflow(overflow, fmt)
    return _build(fmt, mode, policy, overflow is None, r, variant, work_bits(fmt, dt))


@lru_cache(maxsize=4096)
def _build(fmt, mode, policy, natural, r, variant, W) -> Plan:
    mw, bw = _WORK[W][:2]
    if isinstance(fmt, IntFormat):
        mt, emin, _, _ = geometry(fmt)
        mb, code_base = mt, 0
        maxpos, maxneg = fmt.max_int, -fmt.min_int
        kind = "twos_complement" if fmt.signed else "unsigned"
        step = -fmt.frac_bits
    elif isinstance(fmt, FloatFormat):
        mt, emin = fmt.man_bits, fmt.emin
        mb = mt if fmt.subnormals else 0
        code_base = 0 if fmt.zero else -(1 << mt)
        maxpos = fmt.max_code
        maxneg = fmt.max_code if fmt.signed else (0 if fmt.zero else -1)
        kind = "sign_magnitude" if fmt.signed else "unsigned"
        step = emin - mb
    else:                                        # TableFormat: only the policy fields matter
        mt = emin = mb = code_base = maxpos = maxneg = step = 0
        kind = "sign_magnitude"
    return Plan(format=fmt.name, mode=mode, overflow=policy, natural=natural,
                sr_variant=variant, sr_bits=r, work_bits=W, work_man_bits=mw, work_bias=bw,
                man_bits=mt, emin=emin, sub_man_bits=mb, subnormal_step_exp=step,
                code_base=code_base, max_code_pos=maxpos, max_code_neg=maxneg, kind=kind,
                sign_bit=max(fmt.bits - 1, 0), code_mask=(1 << fmt.bits) - 1,
                neg_zero=bool(fmt.has_neg_zero), **_specials(fmt, policy, natural, W))
