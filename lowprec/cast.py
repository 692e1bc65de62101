"""``round``, ``encode``, ``decode``: validate, pick the work type, build the kernel parameters.

Result dtype of ``round`` (documented rule): the narrowest of (the input's float dtype, float32,
float64), never narrower than the input, that holds every value of the format exactly. Python
scalars count as float64 and give a NumPy scalar. ``dtype=`` overrides: any float dtype that
holds the format, or the format's own ml_dtypes type (the result is then that ml_dtypes array).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .formats import FloatFormat, IntFormat, TableFormat, format as _format, ml_dtype
from .plan import _WORK as _W, _build, holds, plan, rounding_args, work_bits as _work_bits
from .rounding import check_overflow, check_random_source, check_seed

__all__ = ["round", "encode", "decode", "result_dtype", "holds", "plan", "SMALL"]

SMALL = 1 << 14   # arrays below this many elements round with NumPy (lowprec.xstep): no compile

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

def _refuse_foreign(x, name):
    """JAX tracers and torch tensors NumPy cannot read as they are: an error naming the
    adapter that takes them (lowprec_jax / lowprec_torch give the same bits)."""
    mod = type(x).__module__ or ""
    if mod.startswith("jax") and "Tracer" in type(x).__name__:
        raise TypeError(f"{name} is a JAX tracer (inside jax.jit, grad or vmap): the NumPy core "
                        "cannot see its values; use lowprec_jax (lowprec_jax.round, "
                        "lowprec_jax.quantize, lowprec_jax.matmul: the same bits, traceable)")
    if mod.startswith("torch"):
        why = ("requires grad" if getattr(x, "requires_grad", False) else
               f"is {x.dtype}" if str(getattr(x, "dtype", "")) == "torch.bfloat16" else
               f"lives on {x.device}" if str(getattr(x, "device", "cpu")) != "cpu" else None)
        if why:
            raise TypeError(f"{name} is a torch tensor that {why}: use lowprec_torch "
                            "(lowprec_torch.round, .quantize, .matmul: the same bits, on "
                            "tensors), or pass x.detach().cpu().float().numpy()")


def _as_float_array(x, name="x"):
    """(array, was_scalar). Accepts float16/bfloat16/float32/float64 arrays and Python numbers."""
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise TypeError(f"{name} must be floating point, got a bool")
    if isinstance(x, (int, float)) and not isinstance(x, np.generic):
        try:
            v = float(x)
        except OverflowError:
            raise ValueError(f"{name}={x} is an int beyond float64's range (about 1.8e308); "
                             "lowprec rounds float64 values") from None
        if isinstance(x, int) and v != x:
            raise ValueError(f"{name}={x} is an int that float64 cannot hold exactly")
        return np.array(v, dtype=np.float64), True
    scalar = isinstance(x, np.generic)
    _refuse_foreign(x, name)
    arr = np.asarray(x)
    if not arr.dtype.isnative:                       # big-endian data: same values, native
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.name not in _FLOAT_IN:
        hint = " (cast it first, e.g. x.astype(np.float32))" if arr.dtype.kind in "iub" else ""
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 array or a "
                        f"Python number, got dtype {arr.dtype}{hint}")
    return arr, scalar


def _check_rounding_args(fmt, rounding, sr_bits, sr_variant, seed, rbits, in_dtype):
    """(mode, random bits r, variant name) after checking the stochastic arguments."""
    mode, r, variant = rounding_args(rounding, sr_bits, sr_variant,
                                     np.dtype(in_dtype).itemsize > 4, fmt.rounding)
    check_random_source(mode, seed, rbits)
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


def _params(fmt, W, mode, policy, natural, r, variant) -> np.ndarray:
    """The Numba kernels' parameter array of the plan (fmt, mode, policy, r, variant, W)."""
    from . import _kernels as K  # noqa: PLC0415
    return K.params(_build(fmt, mode, policy, natural, r, variant, W))


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


def _word_halves(rsrc, rb, seed, n, p):
    """(hi, lo) int64 halves of the random words the array-API step reads: from ``rbits``
    (``rsrc`` 1, uint64 ``rb``), from the seeded stream (2), or none (0)."""
    from . import xstep  # noqa: PLC0415
    if rsrc == 1:
        return (rb >> np.uint64(32)).astype(np.int64), (rb & np.uint64(xstep.M32)).astype(
            np.int64)
    if rsrc == 2:
        return xstep.random_words(np, seed, n, p.wide_words)
    return None, None


def _run_small(xb, p, rsrc, rb, seed, want_code, code_dtype):
    """(codes or work-type bits, any unrepresentable input?) of the work-type bits ``xb``
    rounded by the array-API step on NumPy (``lowprec.xstep``): no compiled kernel."""
    from . import xstep  # noqa: PLC0415
    ub = xb.astype(np.int64) if p.work_bits == 32 else xb.view(np.int64)
    code, vb = xstep.round_bits(np, ub, *_word_halves(rsrc, rb, seed, xb.shape[0], p), p)
    err = bool(np.any(code == xstep.NO_CODE))
    if want_code:
        return code.astype(code_dtype), err
    return (vb.astype(np.uint32) if p.work_bits == 32 else vb.view(np.uint64)), err


def _raise_nan(flat, fmt):
    bad = np.flatnonzero(np.isnan(flat))
    raise ValueError(
        f"x holds NaN (first at flat index {int(bad[0]) if bad.size else -1}) but "
        f"{fmt.name} has no NaN code"
        + ("" if isinstance(fmt, IntFormat) else
           "; overflow=None follows ml_dtypes (NaN -> zero of the opposite sign)"))


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
    n = xb.shape[0]
    if n < SMALL and not isinstance(fmt, TableFormat):
        p = _build(fmt, mode, policy, overflow is None, r, variant, W)
        out, err = _run_small(xb, p, rsrc, rb, sd, want_code, fmt.code_dtype)
        if err:
            _raise_nan(flat, fmt)
        if dest is not None:
            dest[...] = out
            return W, dest
        return W, out
    from . import _fast, _kernels as K, _table8  # noqa: PLC0415  (compiled on first use)
    P = _params(fmt, W, mode, policy, overflow is None, r, variant)
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
        _raise_nan(flat, fmt)
    if lut:
        values = dest if dest is not None else np.empty(n, dtype=ut)
        K.decode_array(out, _value_lut(fmt, W), values)
        return W, values
    return W, out


def round(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
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


def encode(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
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

