"""``round`` / ``encode`` as Triton kernels over blocks of the flattened input (the rounding
step of ``step.py``; seeded words computed in the kernel by ``step.seed_words``)."""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

import lowprec as lp
from lowprec.formats import TableFormat
from lowprec.formats import format as _format
from lowprec.rounding import check_random_source

from ..cast import (
    _NP,
    _TORCH,
    _check_x,
    _codes,
    _generator_words,
    _rbits_words,
    cast_keeping_nan_sign,
    check_sources,
    random_bits,
)
from .step import _u, kernel_params, round_bits, seed_words

__all__ = ["round", "encode", "available", "BLOCK"]

BLOCK = 1024          # elements per program (round, encode)


def available(t) -> bool:
    """True if the kernels can run on tensor ``t``: a CUDA tensor, or the Triton interpreter
    was switched on (``TRITON_INTERPRET=1``) for a CPU tensor."""
    return t.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"


def _need(t):
    if not available(t):
        raise RuntimeError("lowprec_torch.triton needs a CUDA tensor, or TRITON_INTERPRET=1 set "
                           "before importing it for CPU tensors; lowprec_torch.round / "
                           "fake_quantize run anywhere")


@triton.jit
def _round_kernel(x_ptr, r_ptr, code_ptr, val_ptr, n, seed_lo, seed_hi, P: tl.constexpr,
                  HAS_R: tl.constexpr, SEEDED: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    ub = tl.load(x_ptr + i, mask=m, other=0).to(tl.uint32, bitcast=True)
    if SEEDED:
        Rl = seed_words(i, seed_lo, seed_hi)
    elif HAS_R:
        Rl = tl.load(r_ptr + i, mask=m, other=0).to(tl.uint32, bitcast=True)
    else:
        Rl = ub & _u(0)
    code, vb = round_bits(ub, Rl & _u(0), Rl, P)
    tl.store(code_ptr + i, code.to(tl.int32, bitcast=True), mask=m)
    tl.store(val_ptr + i, vb.to(tl.int32, bitcast=True), mask=m)


def _int32(v):
    """int64 values of 32-bit patterns as int32 (wrapping)."""
    return torch.where(v >= 1 << 31, v - (1 << 32), v).to(torch.int32)


def _words(x, r, seed, rbits, generator):
    """The low random words (int32 patterns) for x, or None."""
    if generator is not None:
        return _int32(_generator_words(generator, x.shape, r, generator.device)[1].to(x.device))
    if rbits is not None:
        return _int32(_rbits_words(rbits, x.shape, r, x.device)[1])
    if seed is not None:
        return _int32(random_bits(seed, x.shape, device=x.device)[1])
    return None


def _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits, generator):
    fmt = _format(fmt)
    x = _check_x(x)
    _need(x)
    if isinstance(fmt, TableFormat) or lp.plan(fmt, dtype=_NP[x.dtype]).work_bits != 32:
        raise ValueError(f"the Triton kernels use a float32 work type: {fmt.name} from "
                         f"{x.dtype} needs float64 (use lowprec_torch.round)")
    check_sources(seed, rbits, generator)
    plan = lp.plan(fmt, rounding, overflow, sr_bits=sr_bits, sr_variant=sr_variant,
                   dtype=_NP[x.dtype])
    check_random_source(plan.mode, 0 if generator is not None else seed, rbits)
    mode, r, P = plan.mode, plan.sr_bits, kernel_params(plan)
    xb = x.to(torch.float32).contiguous().view(torch.int32).reshape(-1)
    n = xb.numel()
    seeded = mode == "stochastic" and seed is not None and n < 2**31   # int32 offsets
    w = _words(x, r, seed, rbits, generator) if mode == "stochastic" and not seeded else None
    code, val = torch.empty_like(xb), torch.empty_like(xb)
    rw = xb if w is None else w.contiguous().reshape(-1)
    sd = int(seed) if seeded else 0
    _round_kernel[(triton.cdiv(n, BLOCK),)](xb, rw, code, val, n, sd & 0xFFFFFFFF, sd >> 32,
                                            P=P, HAS_R=w is not None, SEEDED=seeded,
                                            BLOCK=BLOCK)
    err = code == -1
    if bool(err.any()):
        i = int(torch.nonzero(err)[0])
        raise ValueError(f"x holds NaN (first at flat index {i}) but {fmt.name} has no NaN "
                         "code")
    return fmt, x, code.reshape(x.shape), val.reshape(x.shape)


def round(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, generator=None):
    """``lowprec_torch.round`` as a Triton kernel (values in the core's result dtype; no
    gradient rule)."""
    fmt, x, _, val = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                          generator)
    return cast_keeping_nan_sign(val.view(torch.float32),
                                 _TORCH[lp.result_dtype(_NP[x.dtype], fmt)])


def encode(x, fmt, rounding=None, overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, generator=None):
    """``lowprec_torch.encode`` as a Triton kernel."""
    fmt, x, code, _ = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                           generator)
    return _codes(code.to(torch.int64) & 0xFFFFFFFF, fmt)


