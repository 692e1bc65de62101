"""Block quantization for torch tensors: ``quantize`` (a ``QuantizedTensor`` laid out as
``lp.BlockTensor``: blocked axes last, padded, ``(..., blocks, k)``), ``dequantize`` and
``fake_quantize``, bit-identical to ``lp.quantize`` / ``.dequantize()`` / ``lp.fake_quantize``.

The torch path (any device) covers float32, float16 and bfloat16 inputs with the power-of-two
rules (OCP MX ``floor``, ``ceil``, torchao ``even``, TE/cuBLAS ``rceil``) and Transformer
Engine's NVFP4 rule, 1 x k blocks or tiles: amax and scale exponents are integer operations on
the float32 bits (no NaN-dropping float max), x / 2^e is exact integer arithmetic, NVFP4's
float32 scale arithmetic uses torch's float32 ``*`` and ``/`` (IEEE: torch does not flush
subnormals unless ``torch.set_flush_denormal(True)`` was called), and every returned value is
the exact product element x scale (x tensor scale) in float64, rounded once. Other rules
(torchao's NVFP4, 4over6), ``sr_variant="te"`` and element formats that need float64 go
through the core on a CPU copy (``backend="core"``, also the default for CPU tensors).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as Fn

from lowprec import blocks as _B
from lowprec.rounding import check_random_source
import lowprec as lp

from lowprec import xscale, xstep
from .cast import (_check_backend, _check_x, _generator_words, _rbits_words, _use_core,
               check_sources, from_numpy, random_bits, to_numpy, to_numpy_words, with_gradient,
               round as _lt_round)

__all__ = ["quantize", "dequantize", "fake_quantize", "QuantizedTensor"]

I64 = torch.int64
INF, QNAN, SIGN, MAG = 0x7F800000, 0x7FC00000, 0x80000000, 0x7FFFFFFF
POW2_RULES = ("floor", "ceil", "even", "rceil")
TORCH_RULES = POW2_RULES + ("nvfp4",)


def _bits(x):
    """float32 tensor -> int64 bits (zero-extended)."""
    return x.view(torch.int32).to(I64) & xstep.M32


def _f32(b):
    """int64 bits (< 2^32) -> float32 tensor."""
    return torch.where(b >= 1 << 31, b - (1 << 32), b).to(torch.int32).view(torch.float32)


def _scaled_by_pow2(b, k):
    """Float32 bits ``b`` times 2^k (``xscale.times_pow2`` on the magnitude, sign kept)."""
    return (b & SIGN) | xscale.times_pow2(torch, b & MAG, k)


def _mul_bits(a, c):
    """rceil's float32 product (``xscale.scale_exp``): torch's float32 ``*`` is IEEE."""
    return _bits(_f32(a) * torch.tensor(float(c), dtype=torch.float32, device=a.device))


_F = xscale.NativeF32(torch)


def _round_scale(sf):
    """``xscale``'s round_scale: float32 values -> (codes, float32 values) of the scale format,
    nearest even, saturating, through ``xstep.round_bits``."""
    Ps = lp.plan(sf, "nearest_even", "saturate")

    def round_scale(v):
        code, vb = xstep.round_bits(torch, _bits(v), None, None, Ps)
        return code & ((1 << sf.bits) - 1), _f32(vb)
    return round_scale


def _blocked(a, axis, bf):
    """``_block`` (lowprec/blocks.py) for tensors: blocked axes last, padded, (..., blocks, k)."""
    a = torch.movedim(a, axis, -1)
    if bf.tile is None:
        padn = -a.shape[-1] % bf.k
        if padn and not bf.pad:
            raise ValueError(f"axis {axis} has length {a.shape[-1]}, not a multiple of "
                             f"k={bf.k}; use a BlockFormat with pad=True or pad the input")
        a = Fn.pad(a, (0, padn)) if padn else a
        return a.reshape(a.shape[:-1] + (a.shape[-1] // bf.k, bf.k))
    r, c = bf.tile
    pr, pc = -a.shape[-2] % r, -a.shape[-1] % c
    if (pr or pc) and not bf.pad:
        raise ValueError(f"the last two axes {tuple(a.shape[-2:])} are not multiples of "
                         f"tile={bf.tile}; use pad=True or pad the input")
    a = Fn.pad(a, (0, pc, 0, pr)) if pr or pc else a
    R, C = a.shape[-2:]
    a = torch.swapaxes(a.reshape(a.shape[:-2] + (R // r, r, C // c, c)), -3, -2)
    return a.reshape(a.shape[:-2] + (r * c,))


def _amax(xb):
    """Per block: (|x| bits, NaN flag, Inf flag, largest finite |x| bits)."""
    a = xb & MAG
    return (a, (a > INF).any(-1), (a == INF).any(-1),
            torch.where(a < INF, a, 0).amax(-1))


def _tensor_scales(xb, tensor_amax):
    """TE's float32 tensor scales (``xscale.te_tensor_scales``) as float32 tensors."""
    if tensor_amax is None:
        _, _, inf, amax = _amax(xb)
        g = _f32(torch.where(inf, INF, amax).amax() if amax.numel() else torch.zeros(
            (), dtype=I64, device=xb.device))
    else:
        g = torch.as_tensor(tensor_amax, dtype=torch.float32, device=xb.device)
    return tuple(t.to(xb.device) for t in xscale.te_tensor_scales(_F, g))


def _quantize_blocks(xb, Rh, Rl, bf, P, ts):
    """(element codes, scale codes, values as exact float64) of float32 bits cut into
    blocks, as ``lowprec_jax.blocks.quantize_bits``."""
    a, nan, inf, amax = _amax(xb)
    if bf.nonfinite == "nan":
        nan = nan | inf
    sf = bf.scale_fmt
    if bf.scale_rule == "nvfp4":
        sb_in = _f32(torch.where(inf, INF, amax)) * ts[0]
        code, s_b, mult = xscale.te_block_scales(_F, sb_in, ts[1], _round_scale(sf))
        s_codes = torch.where(nan, sf.nan_code, code)
        scaled = _bits(_f32(xb) * mult[..., None])
        scale = s_b.to(torch.float64) * ts[1].to(torch.float64)          # exact
    else:
        s_codes, exp, nan = xscale.pow2_scales(torch, amax, nan, inf, bf, 32, _mul_bits)
        scaled = _scaled_by_pow2(xb, -exp[..., None])
        if bf.nonfinite == "saturate":
            emax_bits = int(np.float32(bf.elem.max).view(np.uint32))
            scaled = torch.where(a == INF, (xb & SIGN) | emax_bits, scaled)
        scale = torch.ldexp(torch.ones_like(exp, dtype=torch.float64), exp)
    scaled = torch.where(nan[..., None], 0, scaled)
    codes, vb = xstep.round_bits(torch, scaled, Rh, Rl, P)
    elem = bf.elem
    codes = codes & ((1 << elem.bits) - 1)
    if elem.has_nan:
        codes = torch.where(nan[..., None], elem.nan_code, codes)
    v = _f32(vb).to(torch.float64) * scale[..., None]                   # exact
    v = torch.where(nan[..., None], float("nan"), v)
    return codes, s_codes, v


@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
    """A block-quantized tensor laid out as ``lp.BlockTensor``: element ``codes`` and block
    ``scale_codes`` (uint8 tensors), the float32 ``tensor_scale`` (NVFP4's; 1 otherwise),
    the original ``shape``, ``axis`` and the format. ``to_core()`` gives the
    ``lp.BlockTensor``; ``dequantize()`` the values."""
    codes: torch.Tensor
    scale_codes: torch.Tensor
    tensor_scale: float
    shape: tuple
    axis: int
    fmt: _B.BlockFormat

    def to_core(self) -> _B.BlockTensor:
        """The same codes as a NumPy ``lp.BlockTensor``."""
        dt = lambda f: np.dtype(f.code_dtype)  # noqa: E731
        return _B.BlockTensor(self.codes.cpu().numpy().astype(dt(self.fmt.elem)),
                              self.scale_codes.cpu().numpy().astype(dt(self.fmt.scale_fmt)),
                              np.float32(self.tensor_scale), self.shape, self.axis, self.fmt)

    def dequantize(self, dtype=torch.float32, tensor_scale=True):
        return dequantize(self, dtype, tensor_scale)


def _check(x, bf, axis):
    bf = _B.block_format(bf)
    x = _check_x(x)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension to cut into blocks")
    axis = _B.check_axis(x, axis, bf)
    return bf, x, axis


def _torch_path_ok(x, bf, sr_variant):
    return (bf.scale_rule in TORCH_RULES and x.dtype != torch.float64 and sr_variant != "te"
            and not bf.flush_subnormal_inputs and bf.elem.min_subnormal >= 2.0**-80
            and lp.holds(bf.elem, np.float32))


def _prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, generator,
             tensor_amax):
    """Validated (bf, x, axis), the float32 bits and random words in blocks, P and the tensor
    scales, for the torch path."""
    if tensor_amax is not None and bf.scale_rule not in _B.TWO_LEVEL:
        raise ValueError(f"tensor_amax is for the two-level rules {_B.TWO_LEVEL}; {bf.name} "
                         f"uses scale_rule={bf.scale_rule!r}")
    P = lp.plan(bf.elem, rounding, "saturate", sr_bits=sr_bits, sr_variant=sr_variant)
    check_random_source(P.mode, 0 if generator is not None else seed, rbits)
    mode, r = P.mode, P.sr_bits
    xb = _blocked(_bits(x.to(torch.float32)), axis, bf)
    Rh = Rl = None
    if mode == "stochastic":
        if generator is not None:
            Rh, Rl = (w.to(x.device) for w in _generator_words(generator, x.shape, r,
                                                                 generator.device))
        elif rbits is not None:
            Rh, Rl = _rbits_words(rbits, x.shape, r, x.device)
        else:
            Rh, Rl = random_bits(seed, x.shape, device=x.device)
        Rh, Rl = _blocked(Rh, axis, bf), _blocked(Rl, axis, bf)
    ts = _tensor_scales(xb, tensor_amax) if bf.scale_rule == "nvfp4" else None
    return xb, Rh, Rl, P, ts


def _core_kw(x, rounding, sr_bits, sr_variant, seed, rbits, generator, tensor_amax, bf):
    P = lp.plan(bf.elem, rounding, "saturate", sr_bits=sr_bits, sr_variant=sr_variant)
    check_random_source(P.mode, 0 if generator is not None else seed, rbits)
    mode, r = P.mode, P.sr_bits
    kw = dict(sr_bits=sr_bits, sr_variant=sr_variant, seed=seed, rbits=rbits,
              tensor_amax=tensor_amax)
    if generator is not None and mode == "stochastic":
        kw.update(seed=None, rbits=to_numpy_words(*_generator_words(
            generator, x.shape, r, generator.device)).reshape(x.shape))
    elif isinstance(rbits, torch.Tensor):
        kw.update(rbits=rbits.cpu().numpy())
    return kw


def quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, sr_variant="srff",
             seed=None, rbits=None, generator=None, tensor_amax=None,
             backend="auto") -> QuantizedTensor:
    """``lp.quantize`` for torch tensors: a ``QuantizedTensor`` with the core's codes on x's
    device. Arguments as ``lp.quantize``; ``generator``: a ``torch.Generator`` (one
    ``torch.randint(0, 2**32)`` word per element of x); ``backend`` as ``lowprec_torch.round``."""
    bf, x, axis = _check(x, bf, axis)
    _check_backend(backend)
    check_sources(seed, rbits, generator)
    if _use_core(x, bf.elem, backend) or not _torch_path_ok(x, bf, sr_variant):
        bt = lp.quantize(to_numpy(x), bf, axis, rounding, **_core_kw(
            x, rounding, sr_bits, sr_variant, seed, rbits, generator, tensor_amax, bf))
        return QuantizedTensor(from_numpy(bt.codes, x.device), from_numpy(bt.scale_codes,
                               x.device), float(bt.tensor_scale), tuple(bt.shape), bt.axis, bf)
    xb, Rh, Rl, P, ts = _prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits,
                                 generator, tensor_amax)
    codes, s_codes, _ = _quantize_blocks(xb, Rh, Rl, bf, P, ts)
    t = 1.0 if ts is None else float(ts[1])
    return QuantizedTensor(codes.to(torch.uint8), s_codes.to(torch.uint8), t, tuple(x.shape),
                           axis, bf)


def _round_once(v64, dtype):
    """Exact float64 values rounded once (nearest even) to a torch float dtype."""
    if dtype == torch.float64:
        return v64
    name = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
    return _lt_round(v64, name[dtype], dtype=dtype, backend="torch", grad="none")


def dequantize(q: QuantizedTensor, dtype=torch.float32, tensor_scale=True):
    """``lp.BlockTensor.dequantize`` for a ``QuantizedTensor``: element x block scale
    (x tensor scale), exact, rounded once to ``dtype``, in the original shape; NaN blocks are
    the positive quiet NaN. ``tensor_scale=False``: without the tensor scale (a two-level
    operand as NVFP4 GEMMs take it; ``lowprec.recipes.epilogue`` applies the scale)."""
    from .cast import decode  # noqa: PLC0415
    if not isinstance(tensor_scale, (bool, np.bool_)):          # as the core's
        raise TypeError(f"tensor_scale={tensor_scale!r} is not allowed: give True or False")
    bf = q.fmt
    ev = decode(q.codes, bf.elem, dtype=torch.float64)
    sv = decode(q.scale_codes, bf.scale_fmt, dtype=torch.float64)
    v = ev * sv[..., None]
    if bf.scale_rule in _B.TWO_LEVEL and tensor_scale:
        v = v * float(np.float32(q.tensor_scale))
    v = torch.where(torch.isnan(v), float("nan"), v)
    return _B.unblock(_round_once(v, dtype), q.shape, q.axis, bf, xp=torch)


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None,
                  sr_variant="srff", seed=None, rbits=None, generator=None, tensor_amax=None,
                  grad="ste", grad_fmt=None, grad_rounding="nearest_even", grad_kw=None,
                  backend="auto"):
    """``lp.fake_quantize`` for torch tensors: every value rounded to its block's grid, in
    x's shape and dtype (NaN blocks NaN). Gradient: straight through (``grad="ste"``) or zero
    (``"none"``); ``grad_fmt``: the incoming gradient is first fake-quantized to that block
    format along the same axis (``grad_rounding``, stochastic arguments in ``grad_kw``)."""
    bf_, x, ax = _check(x, bf, axis)
    _check_backend(backend)
    check_sources(seed, rbits, generator)

    def f(v):
        if _use_core(v, bf_.elem, backend) or not _torch_path_ok(v, bf_, sr_variant):
            out = lp.fake_quantize(to_numpy(v), bf_, ax, rounding, **_core_kw(
                v, rounding, sr_bits, sr_variant, seed, rbits, generator, tensor_amax, bf_))
            return from_numpy(out, v.device)
        xb, Rh, Rl, P, ts = _prepare(v, bf_, ax, rounding, sr_bits, sr_variant, seed, rbits,
                                     generator, tensor_amax)
        vals = _quantize_blocks(xb, Rh, Rl, bf_, P, ts)[2]
        return _round_once(_B.unblock(vals, v.shape, ax, bf_, xp=torch), v.dtype)

    gfn = None
    if grad_fmt is not None:
        gkw = dict(grad_kw or {})
        gfn = lambda g: fake_quantize(g, grad_fmt, axis, grad_rounding, grad="none",  # noqa
                                      backend=backend, **gkw)
    return with_gradient(x, f, grad, gfn)
