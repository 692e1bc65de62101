"""``round``, ``encode``, ``decode`` for torch tensors: validated by the core's ``lp.plan``,
rounded by the array-API step ``lowprec.xstep`` on torch (any device, ``torch.compile``) or by
the core on a CPU copy. The rules are the package's (``lowprec_torch``'s docstring)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import torch

import lowprec as lp
from lowprec.formats import TableFormat, format as _format
from lowprec.rounding import check_random_source, check_seed

from lowprec import xstep

__all__ = ["round", "encode", "decode", "random_bits", "TORCH_FORMATS", "pack_fp4",
           "unpack_fp4", "to_numpy", "from_numpy"]

_NP = {torch.float16: np.dtype(np.float16), torch.bfloat16: np.dtype(ml_dtypes.bfloat16),
       torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_TORCH = {v: k for k, v in _NP.items()}
TORCH_FORMATS = {torch.float8_e4m3fn: "float8_e4m3fn", torch.float8_e5m2: "float8_e5m2",
                 torch.float8_e4m3fnuz: "float8_e4m3fnuz",
                 torch.float8_e5m2fnuz: "float8_e5m2fnuz",
                 torch.float8_e8m0fnu: "float8_e8m0fnu"}
_CODE = {8: torch.uint8, 16: torch.uint16, 32: torch.uint32, 64: torch.uint64}
BACKENDS = ("auto", "torch", "core")
GRADS = ("ste", "none")


def _check_x(x, name="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__} (use lp.round "
                        "for NumPy arrays)")
    if x.dtype not in _NP:
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 tensor, got "
                        f"{x.dtype}")
    return x


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; choose one of {BACKENDS}")


def _use_core(x, fmt, backend):
    if backend == "core" or isinstance(fmt, TableFormat):
        return True
    return backend == "auto" and x.device.type == "cpu" and not torch.compiler.is_compiling()


def to_numpy(x):
    """A float tensor as a NumPy array on the CPU (bfloat16 as ml_dtypes.bfloat16), sharing
    memory where torch allows."""
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return x.numpy()


def from_numpy(a, device):
    """A NumPy float or unsigned array as a tensor on ``device`` (bit patterns kept)."""
    a = np.asarray(a, order="C")                     # (ascontiguousarray makes 0-d 1-d)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(device)
    if a.dtype.kind == "u" and a.dtype.itemsize > 1:
        t = torch.from_numpy(a.view({2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]))
        return t.view(_CODE[8 * a.dtype.itemsize]).to(device)
    return torch.from_numpy(a).to(device)


# ---- random bits ------------------------------------------------------------------------------

def random_bits(seed, shape, wide=False, device=None):
    """The core's seeded random words (``lp.random_bits``) as (hi, lo) int64 tensors of
    32-bit halves; hi is 0 unless ``wide`` (``lowprec.xstep.random_words`` on torch)."""
    seed = check_seed(seed)
    n = 1
    for d in shape:
        n *= int(d)
    hi, lo = xstep.random_words(torch, seed, n, wide, device=device)
    return hi.reshape(shape), lo.reshape(shape)


def _generator_words(generator, shape, r, device):
    draw = lambda: torch.randint(0, 1 << 32, shape, generator=generator,  # noqa: E731
                                 dtype=torch.int64, device=device)
    lo = draw()
    return (draw() if r > 32 else torch.zeros_like(lo)), lo


def _rbits_words(rbits, shape, r, device):
    """(hi, lo) int64 halves of user random bits (an unsigned tensor or NumPy array)."""
    if isinstance(rbits, torch.Tensor):
        if rbits.dtype not in _CODE.values():
            raise TypeError(f"rbits must be an unsigned integer tensor (torch.uint8..uint64), "
                            f"got {rbits.dtype}")
        nbits = rbits.dtype.itemsize * 8
        rb = rbits.to(device)
        rb = rb.view(torch.int64) if nbits == 64 else rb.to(torch.int64)
    else:
        arr = np.asarray(rbits)
        if arr.dtype.kind != "u":
            raise TypeError(f"rbits must be an unsigned integer array, got dtype {arr.dtype}")
        nbits = arr.dtype.itemsize * 8
        rb = torch.from_numpy(np.ascontiguousarray(arr).astype(np.uint64).view(np.int64))
        rb = rb.to(device)
    if nbits < r:
        raise ValueError(f"rbits has {nbits} bits per element but {r} random bits are used")
    try:
        rb = rb.broadcast_to(shape)
    except RuntimeError:
        raise ValueError(f"rbits with shape {tuple(rb.shape)} does not broadcast to x's shape "
                         f"{tuple(shape)}") from None
    return (rb >> 32) & xstep.M32, rb & xstep.M32


def to_numpy_words(hi, lo):
    """(hi, lo) int64 halves as one uint64 NumPy array."""
    return ((hi.cpu() << 32) | lo.cpu()).numpy().view(np.uint64)


# ---- the rounding step ------------------------------------------------------------------------

def check_sources(seed, rbits, generator):
    """At most one source of random bits, and a generator that is a torch.Generator."""
    given = sum(v is not None for v in (seed, rbits, generator))
    if given > 1:
        raise ValueError("give one of seed=, rbits=, generator= for stochastic rounding")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


@torch.compiler.assume_constant_result
def _plan(fmt, rounding, overflow, sr_bits, sr_variant, seeded, has_rbits, dtype):
    """The core's rounding plan (``lp.plan``), after checking the random source; computed
    in Python, outside any torch.compile graph."""
    plan = lp.plan(fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                   dtype=_NP[dtype])
    check_random_source(plan.mode, 0 if seeded else None, 0 if has_rbits else None)
    return plan


def _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator, want_code,
         backend):
    """(W, codes or value bits) of x rounded to fmt: codes as fmt.code_dtype / value bits as
    the work type's float, both as tensors on x's device."""
    fmt = _format(fmt)
    _check_backend(backend)
    check_sources(seed, rbits, generator)
    P = _plan(fmt, rounding, overflow, sr_bits, sr_variant,
              seed is not None or generator is not None, rbits is not None, x.dtype)
    W, r, stoch = P.work_bits, P.sr_bits, P.stochastic
    core = _use_core(x, fmt, backend)
    words = None
    if stoch and generator is not None:
        words = _generator_words(generator, x.shape, r, generator.device)
    elif stoch and rbits is not None and not core:
        words = _rbits_words(rbits, x.shape, r, x.device)
    if core:
        kw = dict(sr_bits=sr_bits, sr_variant=sr_variant, seed=seed, rbits=rbits)
        if words is not None:
            kw.update(seed=None, rbits=to_numpy_words(*words).reshape(x.shape))
        arr = to_numpy(x)
        if want_code:
            return W, from_numpy(lp.encode(arr, fmt, rounding, overflow, **kw), x.device)
        ft = np.float32 if W == 32 else np.float64
        return W, from_numpy(np.asarray(lp.round(arr, fmt, rounding, overflow, dtype=ft,
                                                 **kw)), x.device)
    ft, it = (torch.float32, torch.int32) if W == 32 else (torch.float64, torch.int64)
    ub = x.to(ft).view(it).to(torch.int64)
    if W == 32:
        ub = ub & xstep.M32
    if not stoch:
        Rh = Rl = None
    elif words is not None:
        Rh, Rl = (w.to(x.device) for w in words)
    else:
        Rh, Rl = random_bits(seed, x.shape, wide=r > 32, device=x.device)
    code, vb = xstep.round_bits(torch, ub, Rh, Rl, P)
    err = code == xstep.NO_CODE
    if not torch.compiler.is_compiling() and bool(err.any()):
        i = int(torch.nonzero(err.reshape(-1))[0])
        raise ValueError(f"x holds NaN (first at flat index {i}) but {fmt.name} has no NaN "
                         "code")
    if want_code:
        return W, _codes(code, fmt)
    if W == 32:
        vb = torch.where(vb >= 1 << 31, vb - (1 << 32), vb).to(torch.int32)
    return W, vb.view(ft)


def _codes(code, fmt):
    """int64 codes as the format's unsigned torch dtype."""
    nb = np.dtype(fmt.code_dtype).itemsize * 8
    code = code & ((1 << fmt.bits) - 1) if fmt.bits < 64 else code
    if nb == 64:
        return code.view(torch.uint64)
    signed = {8: torch.int8, 16: torch.int16, 32: torch.int32}[nb]
    code = torch.where(code >= 1 << (nb - 1), code - (1 << nb), code)
    return code.to(signed).view(_CODE[nb])


def _result_dtype(x, fmt, dtype):
    if dtype is None:
        return _TORCH[lp.result_dtype(_NP[x.dtype], fmt)]
    if dtype in TORCH_FORMATS:
        if _format(TORCH_FORMATS[dtype]) != fmt:
            raise ValueError(f"dtype={dtype} holds {TORCH_FORMATS[dtype]}, not {fmt.name}")
        return dtype
    if dtype not in _NP:
        raise TypeError(f"dtype must be torch.float16, bfloat16, float32, float64 or {fmt.name}'s "
                        f"torch float8 dtype, got {dtype}")
    if not lp.holds(fmt, _NP[dtype]):
        raise ValueError(f"dtype={dtype} cannot hold every value of {fmt.name}")
    return dtype


FP4_X2 = torch.float4_e2m1fn_x2


def pack_fp4(codes):
    """E2M1 codes (uint8, last axis even) packed two per byte as ``torch.float4_e2m1fn_x2``:
    element 2j in the low nibble, 2j + 1 in the high one (PyTorch's
    ``c10/util/Float4_e2m1fn_x2.h``: "val1 : val0" = bits 7654 : 3210; ``lp.pack``'s layout)."""
    if codes.shape[-1] % 2:
        raise ValueError(f"float4_e2m1fn_x2 packs pairs along the last axis; its length is "
                         f"{codes.shape[-1]} (pad it to an even length first)")
    c = codes.to(torch.int32)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).to(torch.uint8).view(FP4_X2)


def unpack_fp4(packed):
    """``pack_fp4`` undone: the E2M1 codes (uint8), the last axis twice as long."""
    b = packed.view(torch.uint8).to(torch.int32)
    return torch.stack([b & 0xF, b >> 4], dim=-1).reshape(*b.shape[:-1], -1).to(torch.uint8)


def _round_values(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator,
                  dtype, backend):
    fmt = _format(fmt)
    if dtype == FP4_X2:
        if fmt != _format("float4_e2m1fn"):
            raise ValueError(f"dtype=torch.float4_e2m1fn_x2 holds float4_e2m1fn, not {fmt.name}")
        _, code = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator,
                       True, backend)
        return pack_fp4(code)
    rdt = _result_dtype(x, fmt, dtype)
    if rdt in TORCH_FORMATS:
        _, code = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator,
                       True, backend)
        return code.view(rdt)
    _, v = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator, False,
                backend)
    return cast_keeping_nan_sign(v, rdt)


_QNAN = {torch.float16: (torch.int16, 16, 0x7E00), torch.bfloat16: (torch.int16, 16, 0x7FC0),
         torch.float32: (torch.int32, 32, 0x7FC00000),
         torch.float64: (torch.int64, 64, 0x7FF8000000000000)}


def cast_keeping_nan_sign(v, dtype):
    """v.to(dtype) for values that dtype holds, with NaN as NumPy converts it: the quiet NaN
    with v's sign (torch's bfloat16 conversion makes every NaN positive)."""
    if v.dtype == dtype:
        return v
    y = v.to(dtype)
    it, n, q = _QNAN[dtype]
    nan = torch.isnan(v)
    bits = torch.where(torch.signbit(v), q - (1 << (n - 1)), q)
    return torch.where(nan, bits.to(it).view(dtype), y)


class _Quantize(torch.autograd.Function):
    """y = f(x) with a straight-through (or zero) gradient, the incoming gradient optionally
    rounded by ``gfn`` first."""

    @staticmethod
    def forward(ctx, x, f, grad, gfn):
        ctx.grad, ctx.gfn, ctx.xdtype = grad, gfn, x.dtype
        return f(x)

    @staticmethod
    def backward(ctx, g):
        if ctx.grad == "none":
            return torch.zeros_like(g, dtype=ctx.xdtype), None, None, None
        if ctx.gfn is not None:
            g = ctx.gfn(g)
        return g.to(ctx.xdtype), None, None, None


def with_gradient(x, f, grad, gfn=None):
    """f(x) with a straight-through (``grad="ste"``) or zero (``"none"``) gradient; ``gfn``
    (optional) transforms the incoming gradient first (gradient quantization)."""
    if grad not in GRADS:
        raise ValueError(f"grad={grad!r} is not allowed; choose one of {GRADS}")
    if not (x.requires_grad and torch.is_grad_enabled()):
        return f(x)
    return _Quantize.apply(x, f, grad, gfn)


def round(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, generator=None, dtype=None, grad="ste", grad_fmt=None,
          grad_rounding="nearest_even", grad_kw=None, backend="auto"):
    """``lp.round`` for torch tensors: x rounded once to ``fmt``, on x's device; the result
    dtype follows the core's rule (``lowprec.cast``) or ``dtype`` (a torch float dtype, or the
    format's torch float8 dtype for the codes as that dtype).

    Gradient (autograd): ``grad="ste"`` (default) passes the incoming gradient straight
    through (Bengio et al. 2013), ``"none"`` gives zero; ``grad_fmt``: the incoming gradient is
    rounded to that format first (``grad_rounding``, stochastic arguments in ``grad_kw``, e.g.
    ``dict(generator=g)``). ``backend``: see the module docstring."""
    x = _check_x(x)
    args = (fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator, dtype,
            backend)
    gfn = None
    if grad_fmt is not None:
        gkw = dict(grad_kw or {})
        gfn = lambda g: round(g, grad_fmt, grad_rounding, grad="none", **gkw)  # noqa: E731
    return with_gradient(x, lambda v: _round_values(v, *args), grad, gfn)


def encode(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, generator=None, backend="auto"):
    """``lp.encode`` for torch tensors: the codes, in the smallest unsigned torch dtype holding
    the format (torch.uint8 .. torch.uint64)."""
    x = _check_x(x)
    _, code = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator, True,
                   backend)
    return code


def decode(codes, fmt=None, dtype=None):
    """``lp.decode`` for torch tensors: ``codes`` an integer tensor (or a torch float8 tensor,
    whose bits are the codes; ``fmt`` defaults to its format); formats of at most 16 bits
    are a gather from the table of every code's value, wider ones go through the core."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype == FP4_X2:
        codes, fmt = unpack_fp4(codes), (fmt or "float4_e2m1fn")
        if _format(fmt) != _format("float4_e2m1fn"):
            raise ValueError("float4_e2m1fn_x2 codes are float4_e2m1fn codes")
    if codes.dtype in TORCH_FORMATS:
        tf = _format(TORCH_FORMATS[codes.dtype])
        if fmt is not None and _format(fmt) != tf:
            raise ValueError(f"codes of dtype {codes.dtype} are {tf.name} codes, not "
                             f"{_format(fmt).name}")
        fmt, codes = tf, codes.view(torch.uint8)
    if fmt is None:
        raise TypeError("fmt is required for integer codes")
    fmt = _format(fmt)
    if codes.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                           *_CODE.values()):
        raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
    if dtype is not None and dtype not in _NP:
        raise TypeError(f"dtype must be torch.float16, bfloat16, float32 or float64, got {dtype}")
    ndt = None if dtype is None else _NP[dtype]
    idx = codes.view(torch.int64) if codes.dtype == torch.uint64 else codes.to(torch.int64)
    if not torch.compiler.is_compiling() and idx.numel() and bool(
            ((idx < 0) | (idx >= (1 << fmt.bits) if fmt.bits < 64 else idx < 0)).any()):
        raise ValueError(f"codes must lie in 0..2^{fmt.bits}-1 for {fmt.name}")
    if fmt.bits > 16:
        a = idx.cpu().numpy().astype(fmt.code_dtype)
        return from_numpy(lp.decode(a, fmt, dtype=ndt), codes.device)
    every = np.arange(1 << fmt.bits)
    if getattr(fmt, "symmetric", False):        # the unused code -2^(bits-1) decodes as 0
        every = np.where(every == 1 << (fmt.bits - 1), 0, every)
    table = lp.decode(every.astype(fmt.code_dtype), fmt, dtype=ndt)
    table = np.asarray(table, dtype=ndt) if ndt is not None else np.asarray(table)
    return from_numpy(table, codes.device)[idx]


