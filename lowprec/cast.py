"""``round``, ``encode``, ``decode``: validate, pick the work type, build the kernel parameters.

Result dtype of ``round`` (documented rule): the narrowest of (the input's float dtype, float32,
float64), never narrower than the input, that holds every value of the format exactly. Python
scalars count as float64 and give a NumPy scalar. ``dtype=`` overrides: any float dtype that
holds the format, or the format's own ml_dtypes type (the result is then that ml_dtypes array).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import _fast, _table8, _kernels as K
from .formats import FloatFormat, IntFormat, TableFormat, format as _format, ml_dtype
from .rounding import MODES, VARIANTS, check_overflow, check_seed, mode_name

__all__ = ["round", "encode", "decode", "result_dtype"]

_W = {32: (23, 127, np.float32, np.uint32), 64: (52, 1023, np.float64, np.uint64)}


# ---- format geometry ----------------------------------------------------------------------

def _geometry(fmt):
    """(MT, EMIN, emax, finest quantum exponent) of a FloatFormat / IntFormat."""
    if isinstance(fmt, IntFormat):
        mt = fmt.bits - 1 if fmt.signed else fmt.bits
        emin = mt - fmt.frac_bits
        return mt, emin, emin, emin - mt
    return fmt.man_bits, fmt.emin, fmt.emax, fmt.emin - fmt.man_bits


def _float_info(dt):
    dt = np.dtype(dt)
    import ml_dtypes  # noqa: PLC0415
    fi = ml_dtypes.finfo(dt) if dt.kind == "V" or dt.name == "bfloat16" else np.finfo(dt)
    return int(fi.nmant), int(fi.minexp), int(fi.maxexp) - 1


def holds(fmt, dtype) -> bool:
    """True if every value of ``fmt`` is exactly representable in the float ``dtype``."""
    dt = np.dtype(dtype)
    if isinstance(fmt, TableFormat):
        v = fmt.values()
        with np.errstate(over="ignore"):
            return bool(np.all(v.astype(dt).astype(np.float64) == v))
    md, emin_d, emax_d = _float_info(dt)
    mt, emin, emax, finest = _geometry(fmt)
    return finest >= emin_d - md and emax <= emax_d and (mt <= md or emax < emin_d)


def _work_bits(fmt, in_dtype) -> int:
    if np.dtype(in_dtype).itemsize > 4 or isinstance(fmt, TableFormat):
        return 64
    mt, emin, _, _ = _geometry(fmt)
    return 32 if holds(fmt, np.float32) and emin >= -126 and mt <= 23 else 64


_FLOAT_IN = ("float16", "bfloat16", "float32", "float64")


def result_dtype(x_dtype, fmt) -> np.dtype:
    """Result dtype of ``round(x, fmt)`` for input dtype ``x_dtype`` (see module docstring)."""
    fmt = _format(fmt)
    x_dtype = np.dtype(x_dtype)
    for cand in (x_dtype, np.dtype(np.float32), np.dtype(np.float64)):
        if cand.itemsize >= x_dtype.itemsize and holds(fmt, cand):
            return cand
    raise ValueError(f"{fmt.name} has values that float64 cannot hold")


# ---- input validation -----------------------------------------------------------------------

def _as_float_array(x, name="x"):
    """(array, was_scalar). Accepts float16/bfloat16/float32/float64 arrays and Python numbers."""
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise TypeError(f"{name} must be floating point, got a bool")
    if isinstance(x, (int, float)) and not isinstance(x, np.generic):
        v = float(x)
        if isinstance(x, int) and v != x:
            raise ValueError(f"{name}={x} is an int that float64 cannot hold exactly")
        return np.array(v, dtype=np.float64), True
    scalar = isinstance(x, np.generic)
    arr = np.asarray(x)
    if arr.dtype.name not in _FLOAT_IN:
        hint = " (cast it first, e.g. x.astype(np.float32))" if arr.dtype.kind in "iub" else ""
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 array or a "
                        f"Python number, got dtype {arr.dtype}{hint}")
    return arr, scalar


def _check_rounding_args(fmt, rounding, sr_bits, sr_variant, seed, rbits, in_dtype):
    mode = mode_name(rounding)
    if sr_variant not in VARIANTS:
        raise ValueError(f"sr_variant={sr_variant!r} is not allowed; choose one of "
                         f"{list(VARIANTS)}")
    if mode != "stochastic":
        if seed is not None or rbits is not None or sr_bits is not None:
            raise ValueError(f"seed, rbits and sr_bits apply to rounding='stochastic' only "
                             f"(rounding={rounding!r})")
        return mode, 0, K.SRFF
    if (seed is None) == (rbits is None):
        raise ValueError("rounding='stochastic' needs exactly one source of random bits: "
                         "seed=<int> (counter-based Philox) or rbits=<unsigned int array>")
    wide = np.dtype(in_dtype).itemsize > 4
    if sr_bits is None:
        r, variant = (64 if wide else 32), K.SRFF
    else:
        if isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)):
            raise TypeError(f"sr_bits must be an int in 1..32 or None, got {sr_bits!r}")
        if not 1 <= sr_bits <= 32:
            raise ValueError(f"sr_bits={sr_bits} is out of range: allowed 1..32 (None = exact)")
        r, variant = int(sr_bits), VARIANTS[sr_variant]
    return mode, r, variant


def _prepare_rbits(rbits, shape, r):
    arr = np.asarray(rbits)
    if arr.dtype.kind != "u":
        raise TypeError(f"rbits must be an unsigned integer array (uint8..uint64), got dtype "
                        f"{arr.dtype}")
    if arr.dtype.itemsize * 8 < r:
        raise ValueError(f"rbits has dtype {arr.dtype} ({arr.dtype.itemsize * 8} bits) but "
                         f"{r} random bits per element are used; pass uint{8 * ((r + 7) // 8)}"
                         f"{' or wider' if r < 64 else ''} (sr_bits=None uses 32 bits, 64 for "
                         "float64 inputs)")
    try:
        b = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"rbits with shape {arr.shape} does not broadcast to x's shape "
                         f"{shape}") from None
    return b.astype(np.uint64).reshape(-1)             # one copy, contiguous


# ---- kernel parameters ----------------------------------------------------------------------

def _vbits(v, W, negative=False):
    """Work-type bits (as Python int) of a float value; 'nan' gives the quiet NaN."""
    mw, bw, ft, ut = _W[W]
    if v == "nan":
        f = ft(np.nan)
    else:
        f = ft(float(v))
    b = int(np.array([f], dtype=ft).view(ut)[0])
    b &= ~(1 << (W - 1))
    if negative:
        b |= 1 << (W - 1)
    return b


def _specials(fmt, policy, natural, W):
    """Codes and work-type bits for NaN, overflow, saturation, and the E8M0 corner cases."""
    sign = 1 << (fmt.bits - 1) if fmt.signed else 0

    def nan_out(neg):
        if fmt.has_nan:
            code = fmt.nan_code | (sign if neg and fmt.signed_nan else 0)
            return code, _vbits("nan", W, bool(code & sign))
        if natural and fmt.has_neg_zero:          # ml_dtypes: NaN -> zero of the other sign
            return (0 if neg else sign), _vbits(0.0, W, not neg)
        return K.ERR, 0

    def max_out(neg):
        if neg and not fmt.signed:                # the largest value below zero is 0, if any
            return nan_out(neg) if fmt.lowest > 0 else (0, 0)
        if isinstance(fmt, IntFormat):
            mag = -fmt.min_int if neg else fmt.max_int
            code = (-mag) & ((1 << fmt.bits) - 1) if neg else mag
            return code, _vbits(math.ldexp(mag, -fmt.frac_bits), W, neg)
        return fmt.max_code | (sign if neg else 0), _vbits(fmt.max, W, neg)

    def inf_out(neg):
        if neg and not fmt.signed:
            return nan_out(neg)
        return fmt.inf_code | (sign if neg else 0), _vbits(np.inf, W, neg)

    ovf = {"saturate": max_out, "inf": inf_out, "nan": nan_out}[policy]
    d = {}
    d["NAN_POS_C"], d["NAN_POS_V"] = nan_out(False)
    d["NAN_NEG_C"], d["NAN_NEG_V"] = nan_out(True)
    d["OVF_POS_C"], d["OVF_POS_V"] = ovf(False)
    d["OVF_NEG_C"], d["OVF_NEG_V"] = ovf(True)
    d["SAT_POS_C"], d["SAT_POS_V"] = max_out(False)
    d["SAT_NEG_C"], d["SAT_NEG_V"] = max_out(True)
    if isinstance(fmt, FloatFormat) and not fmt.zero:
        d["ZIN_C"], d["ZIN_V"] = nan_out(False)
        d["MIN_C"], d["MIN_V"] = 0, _vbits(math.ldexp(1.0, fmt.emin), W)
    return d


@lru_cache(maxsize=None)
def _table_arrays(fmt):
    """(TV, TC) for a TableFormat: non-negative finite values' float64 bits ascending plus the
    overflow value, and their codes."""
    pairs = sorted((v, c) for c, v in enumerate(fmt._table)
                   if not isinstance(v, str) and v >= 0 and (c >> (fmt.bits - 1)) == 0)
    vals = np.array([float(v) for v, _ in pairs] + [float(fmt.overflow_value)])
    tv = vals.view(np.int64).copy()
    tc = np.array([c for _, c in pairs] + [-1], dtype=np.int64)
    return tv, tc


@lru_cache(maxsize=None)
def _check_table_sr(fmt):
    """Stochastic rounding on a table needs every gap between neighbours to be a power of two
    (then the discarded fraction is exact in float64)."""
    tv = _table_arrays(fmt)[0].view(np.float64)
    gaps = np.diff(tv)
    m, _ = np.frexp(gaps)
    if not np.all(m == 0.5):
        raise ValueError(f"stochastic rounding on {fmt.name} needs power-of-two gaps between "
                         "neighbouring values")


@lru_cache(maxsize=4096)
def _params(fmt, W, mode, policy, natural, r, variant) -> np.ndarray:
    P = np.zeros(K.NPARAM, dtype=np.int64)
    mw, bw = _W[W][:2]
    P[K.MW], P[K.BW], P[K.WSH] = mw, bw, W - 1
    P[K.MODE], P[K.SRBITS], P[K.VARIANT] = MODES[mode], r, variant
    P[K.SBIT] = max(fmt.bits - 1, 0)
    P[K.CMASK] = (1 << fmt.bits) - 1 if fmt.bits < 64 else -1
    P[K.NEGZ_OK] = int(fmt.has_neg_zero)
    if isinstance(fmt, IntFormat):
        mt, emin, _, _ = _geometry(fmt)
        P[K.MT], P[K.EMIN], P[K.MB] = mt, emin, mt
        P[K.MAXPOS], P[K.MAXNEG] = fmt.max_int, -fmt.min_int
        P[K.KIND] = K.KIND_TWOS if fmt.signed else K.KIND_UNSIGNED
        P[K.SUBQ_BITS] = np.array([math.ldexp(1.0, -fmt.frac_bits)]).view(np.int64)[0]
    elif isinstance(fmt, FloatFormat):
        mt = fmt.man_bits
        mb = mt if fmt.subnormals else 0
        P[K.MT], P[K.EMIN], P[K.MB] = mt, fmt.emin, mb
        P[K.CODE_BASE] = 0 if fmt.zero else -(1 << mt)
        P[K.MAXPOS] = fmt.max_code
        P[K.MAXNEG] = fmt.max_code if fmt.signed else (0 if fmt.zero else -1)
        P[K.KIND] = K.KIND_SIGNMAG if fmt.signed else K.KIND_UNSIGNED
        P[K.SUBQ_BITS] = np.array([math.ldexp(1.0, fmt.emin - mb)]).view(np.int64)[0]
    for k, v in _specials(fmt, policy, natural, W).items():
        P[getattr(K, k)] = v if v < 2**63 else v - 2**64
    P.setflags(write=False)
    return P


# ---- the public functions -------------------------------------------------------------------

SPECIALISE_MIN_SIZE = 1 << 20   # arrays at least this large get a kernel with P baked in


@lru_cache(maxsize=256)
def _value_lut(fmt, W):
    """Work-type bits of every code's value (decode's values; unused codes give 0)."""
    codes = np.arange(1 << fmt.bits)
    if isinstance(fmt, IntFormat) and fmt.symmetric:
        codes = np.where(codes == 1 << (fmt.bits - 1), 0, codes)
    ft, ut = _W[W][2:]
    with np.errstate(invalid="ignore"):
        return _decode64(codes, fmt).astype(ft).view(ut)


def _run(arr, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, want_code, dest=None):
    """Round the validated float array ``arr``; returns codes (``fmt.code_dtype``) or the
    work type's bits, flat, written into ``dest`` (a flat array of that type) if given."""
    mode, r, variant = _check_rounding_args(fmt, rounding, sr_bits, sr_variant, seed, rbits,
                                            arr.dtype)
    policy = check_overflow(overflow, fmt)
    if isinstance(fmt, TableFormat) and mode == "stochastic":
        _check_table_sr(fmt)
    W = _work_bits(fmt, arr.dtype)
    mw, bw, ft, ut = _W[W]
    flat = arr.reshape(-1)
    if flat.dtype != ft:
        with np.errstate(invalid="ignore"):
            flat = flat.astype(ft)                  # exact: W holds every input value
    xb = np.ascontiguousarray(flat).view(ut)
    rsrc, rb, sd = 0, np.zeros(1, np.uint64), 0
    if mode == "stochastic":
        if rbits is not None:
            rsrc, rb = 1, _prepare_rbits(rbits, arr.shape, r)
        else:
            rsrc, sd = 2, check_seed(seed)
    P = _params(fmt, W, mode, policy, overflow is None, r, variant)
    n = xb.shape[0]
    errs = np.zeros(1, dtype=np.int64)
    large = n >= SPECIALISE_MIN_SIZE
    table = rsrc == 0 and n >= _table8.MIN_SIZE and _table8.applies(fmt, P)
    vectorised = isinstance(fmt, FloatFormat) and fmt.signed and fmt.zero
    lut = not (want_code or vectorised or table) and fmt.bits <= 16  # codes, then a lookup
    out = dest if dest is not None and not lut else np.empty(
        n, dtype=fmt.code_dtype if want_code or lut else ut)
    if table:
        _table8.run(xb, P, want_code, out, errs, _fast.parallel)
    elif vectorised:
        _fast.run(xb, P, rsrc, rb, np.uint64(sd), want_code, out, errs, large)
    elif isinstance(fmt, TableFormat):
        tv, tc = _table_arrays(fmt)
        K.round_table_array(xb, tv, tc, P, rsrc, rb, np.uint64(sd), 0, want_code or lut, out,
                            errs)
    elif large:
        K.specialised(P, rsrc, want_code or lut)(xb, rb, np.uint64(sd), out, errs)
    else:
        K.round_array(xb, P, rsrc, rb, np.uint64(sd), 0, want_code or lut, out, errs)
    if errs[0]:
        bad = np.flatnonzero(np.isnan(flat))
        raise ValueError(
            f"x holds NaN (first at flat index {int(bad[0]) if bad.size else -1}) but "
            f"{fmt.name} has no NaN code"
            + ("" if isinstance(fmt, IntFormat) else
               "; overflow=None follows ml_dtypes (NaN -> zero of the opposite sign)"))
    if lut:
        values = dest if dest is not None else np.empty(n, dtype=ut)
        K.decode_array(out, _value_lut(fmt, W), values)
        return W, values
    return W, out


def round(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, dtype=None, out=None):
    """Round ``x`` to the values of ``fmt``, once, with the given mode and overflow policy.

    ``fmt``: a format object or name (``lp.formats()``). ``rounding``, ``overflow``,
    ``sr_bits``, ``sr_variant``, ``seed``, ``rbits``: see ``lowprec.rounding``. Returns floats
    holding the rounded values (dtype rule in ``lowprec.cast``); ``dtype=`` the format's
    ml_dtypes type returns that ml_dtypes array. ``out=``: an array of x's shape to write the
    result into (and return), as NumPy ufuncs do; its dtype acts as ``dtype=``; ``out=x``
    rounds in place. ``x`` is never modified otherwise.
    """
    fmt = _format(fmt)
    arr, scalar = _as_float_array(x)
    ml = ml_dtype(fmt)
    if dtype is None and isinstance(out, np.ndarray):
        dtype = out.dtype                           # out's dtype acts as dtype=
    if dtype is not None and ml is not None and np.dtype(dtype) == np.dtype(ml) and \
            fmt.name not in ("float16", "float32", "float64"):
        if out is not None:
            _check_out(out, arr, np.dtype(ml))
            out = out.view(fmt.code_dtype)
        codes = encode(arr, fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                       seed=seed, rbits=rbits, out=out)
        return codes.view(ml)
    rdt = result_dtype(arr.dtype, fmt)
    if dtype is not None:
        rdt = np.dtype(dtype)
        if rdt.name not in _FLOAT_IN:
            raise TypeError(f"dtype must be float16, bfloat16, float32, float64 or "
                            f"{fmt.name}'s ml_dtypes type, got {rdt}")
        if not holds(fmt, rdt):
            raise ValueError(f"dtype={rdt} cannot hold every value of {fmt.name}; use "
                             f"{result_dtype(np.float64, fmt)}")
    W = _work_bits(fmt, arr.dtype)
    if out is not None:
        _check_out(out, arr, rdt)
        if rdt == _W[W][2] and not np.shares_memory(out, arr):
            _run(arr, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, False,
                 out.reshape(-1).view(_W[W][3]))
            return out
    W, bits = _run(arr, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, False)
    res = bits.view(_W[W][2]).reshape(arr.shape).astype(rdt, copy=False)
    if out is not None:
        np.copyto(out, res)
        return out
    return res[()] if scalar else res


def _check_out(out, arr, dtype, in_place_ok=True):
    """``out=`` must be a writeable C-contiguous ndarray of ``dtype`` and x's shape, either
    separate from x or (``in_place_ok``) x itself."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.dtype != dtype or out.shape != arr.shape:
        raise ValueError(f"out has dtype {out.dtype} and shape {out.shape}; this call needs "
                         f"dtype {dtype} and shape {arr.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if not np.shares_memory(out, arr):
        return
    if not in_place_ok:
        raise ValueError("out must not share memory with x")
    if not (out.ctypes.data == arr.ctypes.data and out.strides == arr.strides):
        raise ValueError("out overlaps x only partly; pass out=x (in place) or a separate "
                         "array")


def encode(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, out=None):
    """Round ``x`` to ``fmt`` (as ``round``) and return the codes, in the smallest unsigned
    dtype holding ``fmt.bits`` bits. NaN is written as ``fmt.nan_code`` with the input's sign
    where the format has signed NaNs (IEEE: the quiet NaN, mantissa MSB set; ml_dtypes does the
    same). Integer formats give two's-complement codes. ``out=``: an array of that dtype and
    x's shape to write the codes into (and return)."""
    fmt = _format(fmt)
    arr, scalar = _as_float_array(x)
    if out is not None:
        _check_out(out, arr, np.dtype(fmt.code_dtype), in_place_ok=False)
        _run(arr, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, True,
             out.reshape(-1))
        return out
    _, codes = _run(arr, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, True)
    codes = codes.reshape(arr.shape)
    return codes[()] if scalar else codes


def _check_codes(codes, fmt):
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"codes must be an integer array, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= (1 << fmt.bits):
            bad = lo if lo < 0 else hi
            raise ValueError(f"code {bad} is out of range for {fmt.name}: codes are 0 .. "
                             f"{(1 << fmt.bits) - 1} ({fmt.bits} bits)")
    return arr


def _decode64(arr, fmt):
    """Exact float64 values of integer codes: through a table of every code for large arrays
    of formats up to 16 bits, else computed from the fields."""
    if fmt.bits <= 16 and arr.size > (1 << fmt.bits):
        if isinstance(fmt, IntFormat) and fmt.symmetric:
            _decode_fields(arr[arr == 1 << (fmt.bits - 1)][:1], fmt)    # raises if present
        return _decode_table(fmt)[arr.astype(np.intp)]
    return _decode_fields(arr, fmt)


@lru_cache(maxsize=64)
def _decode_table(fmt):
    codes = np.arange(1 << fmt.bits)
    if isinstance(fmt, IntFormat) and fmt.symmetric:
        codes = np.where(codes == 1 << (fmt.bits - 1), 0, codes)      # unused code
    return _decode_fields(codes, fmt)


def _decode_fields(arr, fmt):
    """Exact float64 values of integer codes (vectorised, no Python loop per element)."""
    c = arr.astype(np.int64)
    if isinstance(fmt, TableFormat):
        lut = np.array([np.nan if v == "nan" else np.inf if v == "inf" else -np.inf
                        if v == "-inf" else float(v) for v in fmt._table])
        lut[fmt.nan_code] = np.copysign(np.nan, -1.0 if fmt.nan_code >> (fmt.bits - 1) else 1.0)
        return lut[c]
    if isinstance(fmt, IntFormat):
        v = np.where(fmt.signed & (c >> (fmt.bits - 1) == 1), c - (1 << fmt.bits), c)
        if fmt.symmetric and np.any(v < fmt.min_int):
            raise ValueError(f"code {1 << (fmt.bits - 1)} (= {fmt.min_int - 1}) is not used by "
                             f"the symmetric format {fmt.name}")
        return np.ldexp(v.astype(np.float64), -fmt.frac_bits)
    M = fmt.man_bits
    sign = (c >> (fmt.bits - 1)) & 1 if fmt.signed else np.zeros_like(c)
    mag = c & fmt._mag_ones
    e, m = mag >> M, mag & ((1 << M) - 1)
    if fmt.zero:
        normal = np.ldexp((m + (1 << M)).astype(np.float64), e - fmt.bias - M)
        sub = np.ldexp(m.astype(np.float64), 1 - fmt.bias - M) if fmt.subnormals else 0.0
        v = np.where(e == 0, sub, normal)
    else:
        v = np.ldexp((m + (1 << M)).astype(np.float64), e - fmt.bias - M)
    v = np.where(sign == 1, -v, v)
    if fmt.inf_code is not None:
        v = np.where(mag == fmt.inf_code, np.where(sign == 1, -np.inf, np.inf), v)
    nan = mag > fmt.max_code
    if fmt.inf_code is not None:
        nan &= mag != fmt.inf_code
    if fmt.nan == "neg_zero":
        nan = (sign == 1) & (mag == 0)
    v = np.where(nan, np.where(sign == 1, -np.nan, np.nan), v)
    return v


def decode(codes, fmt, dtype=None):
    """Values of ``codes`` (integers as ``encode`` returns them) as floats of ``dtype``
    (default: float32 if it holds every value of ``fmt``, else float64). NaN codes give the
    quiet NaN with the code's sign bit, as ml_dtypes does. A ``dtype`` too narrow for the
    format rounds each value once, to nearest-even."""
    fmt = _format(fmt)
    scalar = isinstance(codes, (int, np.integer))
    arr = _check_codes(codes, fmt)
    if dtype is None:
        dtype = np.float32 if holds(fmt, np.float32) else np.float64
    dt = np.dtype(dtype)
    if dt.name not in _FLOAT_IN:
        raise TypeError(f"dtype must be float16, bfloat16, float32 or float64, got {dt}")
    if fmt.bits <= 16 and arr.size > (1 << fmt.bits) and holds(fmt, dt) and not (
            isinstance(fmt, IntFormat) and fmt.symmetric):
        out = _decode_table(fmt).astype(dt)[arr]        # one gather from a table of codes
        return out[()] if scalar else out
    v = _decode64(arr, fmt)
    if not holds(fmt, dt):
        v = round(v, _format(dt.name), "nearest_even")
    out = v.astype(dt)
    return out[()] if scalar else out

