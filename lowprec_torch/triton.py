"""Triton kernels (``lowprec_torch.triton``): ``round`` / ``encode`` over blocks of the
flattened input and block ``fake_quantize`` / ``quantize`` (MX power-of-two rules and
Transformer Engine's NVFP4), ``ROWS`` blocks per program, bit-identical to the core.

The rounding step is ``lowprec_torch._triton_round.round_bits`` (uint32 lanes, float32 work
type: formats that float32 holds, inputs of at most 32 bits). They run on CUDA tensors, or on
CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before this module is
imported); otherwise they raise. Random bits come in as arrays (``rbits``, or the core's
Philox words for ``seed=`` / a generator's words computed by torch first), never from
``tl.rand``. NVFP4's float32 scale arithmetic uses ``*`` and ``tl.math.div_rn`` (IEEE).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import triton
import triton.language as tl

from lowprec import blocks as _B, cast
from lowprec.formats import TableFormat, format as _format
from lowprec.rounding import check_overflow

from . import (_NP, _check_x, _codes, _generator_words, _rbits_words, _TORCH,
               cast_keeping_nan_sign, random_bits)
from ._triton_round import _mask, _msb, _shl, _shr, _u, round_bits

__all__ = ["round", "encode", "fake_quantize", "quantize", "BLOCK", "ROWS", "available"]

BLOCK = 1024          # elements per program (round, encode)
ROWS = 16             # blocks per program (fake_quantize, quantize)


def available(t) -> bool:
    """True if the kernels can run on tensor ``t``: a CUDA tensor, or the Triton interpreter
    was switched on (``TRITON_INTERPRET=1``) for a CPU tensor."""
    return t.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"


def _need(t):
    if not available(t):
        raise RuntimeError("lowprec_torch.triton needs a CUDA tensor, or TRITON_INTERPRET=1 set "
                           "before importing it for CPU tensors; lowprec_torch.round / "
                           "fake_quantize run anywhere")


def triton_params(P):
    """P for the Triton step: SUBQ_BITS replaced by the subnormal quantum's exponent."""
    P = list(int(v) for v in P)
    P[29] = int(np.frexp(float(np.int64(P[29]).view(np.float64)))[1]) - 1
    return tuple(P)


@triton.jit
def _round_kernel(x_ptr, r_ptr, code_ptr, val_ptr, n, P: tl.constexpr, HAS_R: tl.constexpr,
                  BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    ub = tl.load(x_ptr + i, mask=m, other=0).to(tl.uint32, bitcast=True)
    if HAS_R:
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
    if isinstance(fmt, TableFormat) or cast._work_bits(fmt, _NP[x.dtype]) != 32:
        raise ValueError(f"the Triton kernels use a float32 work type: {fmt.name} from "
                         f"{x.dtype} needs float64 (use lowprec_torch.round)")
    if sum(v is not None for v in (seed, rbits, generator)) > 1:
        raise ValueError("give one of seed=, rbits=, generator= for stochastic rounding")
    mode, r, variant = cast._check_rounding_args(
        fmt, rounding, sr_bits, sr_variant, 0 if generator is not None else seed, rbits,
        _NP[x.dtype])
    P = triton_params(cast._params(fmt, 32, mode, check_overflow(overflow, fmt),
                                   overflow is None, r, variant))
    xb = x.to(torch.float32).contiguous().view(torch.int32).reshape(-1)
    w = _words(x, r, seed, rbits, generator) if mode == "stochastic" else None
    n = xb.numel()
    code, val = torch.empty_like(xb), torch.empty_like(xb)
    rw = xb if w is None else w.contiguous().reshape(-1)
    _round_kernel[(triton.cdiv(n, BLOCK),)](xb, rw, code, val, n, P=P, HAS_R=w is not None,
                                            BLOCK=BLOCK)
    err = code == -1
    if bool(err.any()):
        i = int(torch.nonzero(err)[0])
        raise ValueError(f"x holds NaN (first at flat index {i}) but {fmt.name} has no NaN "
                         "code")
    return fmt, x, code.reshape(x.shape), val.reshape(x.shape)


def round(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
          seed=None, rbits=None, generator=None):
    """``lowprec_torch.round`` as a Triton kernel (values in the core's result dtype; no
    gradient rule)."""
    fmt, x, _, val = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                          generator)
    return cast_keeping_nan_sign(val.view(torch.float32),
                                 _TORCH[cast.result_dtype(_NP[x.dtype], fmt)])


def encode(x, fmt, rounding="nearest_even", overflow=None, *, sr_bits=None, sr_variant="srff",
           seed=None, rbits=None, generator=None):
    """``lowprec_torch.encode`` as a Triton kernel."""
    fmt, x, code, _ = _run(x, fmt, rounding, overflow, sr_bits, sr_variant, seed, rbits,
                           generator)
    return _codes(code.to(torch.int64) & 0xFFFFFFFF, fmt)


# ---- block quantization -----------------------------------------------------------------------

@triton.jit
def _floor_log2(a):
    """floor(log2 v) of positive float32 bits a (subnormals included), int32."""
    ef = (a >> 23).to(tl.int32)
    return tl.where(ef > 0, ef - 127, _msb(a & _u(0x7FFFFF)) - 149)


@triton.jit
def _is_pow2(a):
    return tl.where((a >> 23) == _u(0), (a & (a - _u(1))) == _u(0), (a & _u(0x7FFFFF)) == _u(0))


@triton.jit
def _times_pow2(b, k):
    """float32 bits b times 2^k (``lowprec_torch.blocks._times_pow2``)."""
    sign = b & _u(0x80000000)
    a = b & _u(0x7FFFFFFF)
    ef = (a >> 23).to(tl.int32)
    mant = a & _u(0x7FFFFF)
    lz = 23 - _msb(mant)
    sig = tl.where(ef > 0, mant | _u(1 << 23), _shl(mant, lz))
    E = tl.where(ef > 0, ef - 127, -126 - lz) + k
    normal = sign | (tl.minimum(tl.maximum(E + 127, 0), 255).to(tl.uint32) << 23) | (
        sig & _u(0x7FFFFF))
    sh = -126 - E
    exact = (sh <= 24) & ((sig & _mask(tl.minimum(tl.maximum(sh, 0), 32))) == _u(0))
    out = tl.where(E >= -126, normal, tl.where(exact, sign | _shr(sig, sh), sign | _u(1)))
    out = tl.where(E > 127, sign | _u(0x7F800000), out)
    return tl.where(a == _u(0), b, out)


@triton.jit
def _scale_exp(amax, RULE: tl.constexpr, EMAX: tl.constexpr, MELEM: tl.constexpr,
               RECIP: tl.constexpr):
    """Unclipped scale exponent per block (``lowprec.blocks._pow2_scale_exp``); RULE 0 floor,
    1 ceil, 2 even, 3 rceil (RECIP: the bits of fl32(1 / element max))."""
    safe = tl.where(amax > _u(0), amax, _u(0x3F800000))
    fl = _floor_log2(safe)
    if RULE == 0:
        e = fl - EMAX
    elif RULE == 1:
        e = fl - EMAX + (~_is_pow2(safe)).to(tl.int32)
    elif RULE == 2:
        e = ((safe + _u(1 << (23 - MELEM - 1))) >> 23).to(tl.int32) - 127 - EMAX
    else:
        p = safe.to(tl.float32, bitcast=True) * _u(RECIP).to(tl.float32, bitcast=True)
        pb = p.to(tl.uint32, bitcast=True) & _u(0x7FFFFFFF)
        pfl = _floor_log2(tl.where(pb == _u(0), _u(1), pb))
        e = pfl + (~_is_pow2(pb)).to(tl.int32)
        e = tl.where(pb == _u(0x7F800000), 1023, tl.where(pb == _u(0), -(1 << 20), e))
    return e


@triton.jit
def _block_kernel(x_ptr, r_ptr, ts_ptr, code_ptr, scode_ptr, val_ptr, nblocks,
                  P: tl.constexpr, Ps: tl.constexpr, S: tl.constexpr, HAS_R: tl.constexpr,
                  ROWS: tl.constexpr, K: tl.constexpr, KP: tl.constexpr):
    """ROWS blocks of K elements (KP: K padded to a power of two): amax, scale, element
    rounding and the dequantized values (``lowprec_torch.blocks._quantize_blocks``). S: the
    block format's constants (see ``_block_constants``)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, KP)
    m = (rows[:, None] < nblocks) & (cols[None, :] < K)
    off = rows[:, None] * K + cols[None, :]
    xb = tl.load(x_ptr + off, mask=m, other=0).to(tl.uint32, bitcast=True)
    if HAS_R:
        Rl = tl.load(r_ptr + off, mask=m, other=0).to(tl.uint32, bitcast=True)
    else:
        Rl = xb & _u(0)
    a = xb & _u(0x7FFFFFFF)
    INF = _u(0x7F800000)
    nan = tl.max((a > INF).to(tl.int32), axis=1) > 0
    inf = tl.max((a == INF).to(tl.int32), axis=1) > 0
    amax = tl.max(tl.where(a < INF, a, _u(0)), axis=1)
    if S[0] == 1:                                         # nonfinite == "nan"
        nan = nan | inf
    if S[1] == 4:                                         # TE NVFP4
        t0 = tl.load(ts_ptr)
        t1 = tl.load(ts_ptr + 1)
        sb_in = tl.where(inf, INF, amax).to(tl.float32, bitcast=True) * t0
        sc, s_b = round_bits(sb_in.to(tl.uint32, bitcast=True), amax & _u(0), amax & _u(0), Ps)
        s_bf = s_b.to(tl.float32, bitcast=True)
        mult = tl.minimum(tl.math.div_rn(tl.full((ROWS,), 1.0, tl.float32), s_bf * t1),
                          _u(0x7F7FFFFF).to(tl.float32, bitcast=True))
        s_codes = tl.where(nan, S[7], (sc & _u((1 << S[8]) - 1)).to(tl.int32))
        scaled = (xb.to(tl.float32, bitcast=True) * mult[:, None]).to(tl.uint32, bitcast=True)
    else:
        exp = tl.where(amax > _u(0), _scale_exp(amax, S[1], S[2], S[3], S[4]), S[5])
        if S[0] == 0:                                     # nonfinite == "saturate"
            exp = tl.where(inf, S[6], exp)
        if S[9] == 1:                                     # scale_overflow == "nan"
            nan = nan | (exp > S[6])
        exp = tl.minimum(tl.maximum(exp, S[5]), S[6])
        s_codes = tl.where(nan, S[7], exp + S[10])
        scaled = _times_pow2(xb, -exp[:, None])
        if S[0] == 0:
            scaled = tl.where(a == INF, (xb & _u(0x80000000)) | _u(S[11]), scaled)
    scaled = tl.where(nan[:, None], _u(0), scaled)
    codes, vb = round_bits(scaled, Rl & _u(0), Rl, P)
    codes = codes & _u((1 << S[12]) - 1)
    if S[13] >= 0:                                        # the element format's NaN code
        codes = tl.where(nan[:, None], _u(S[13]), codes)
    if S[1] == 4:
        v = (vb.to(tl.float32, bitcast=True) * s_bf[:, None]) * t1
        vb = v.to(tl.uint32, bitcast=True)
    else:
        vb = _times_pow2(vb, exp[:, None])
    vb = tl.where(nan[:, None], _u(0x7FC00000), vb)
    tl.store(code_ptr + off, codes.to(tl.int32, bitcast=True), mask=m)
    tl.store(val_ptr + off, vb.to(tl.int32, bitcast=True), mask=m)
    tl.store(scode_ptr + rows, s_codes, mask=rows < nblocks)


_RULE = {"floor": 0, "ceil": 1, "even": 2, "rceil": 3, "nvfp4": 4}


def _block_constants(bf):
    """S: (nonfinite is nan, rule, element emax, element mantissa bits, bits of fl32(1 / elem
    max), scale emin, scale emax, scale NaN code, scale bits, scale_overflow is nan, scale
    bias, bits of the element max, element bits, element NaN code or -1)."""
    sf, el = bf.scale_fmt, bf.elem
    m_elem = el.man_bits if hasattr(el, "man_bits") else el.bits - 2
    recip = int((np.float32(1.0) / np.float32(el.max)).view(np.uint32))
    s_nan = sf.nan_code if sf.has_nan else sf.max_code
    return (int(bf.nonfinite == "nan"), _RULE[bf.scale_rule], int(bf.emax_elem), int(m_elem),
            recip, int(sf.emin), int(sf.emax), int(s_nan), int(sf.bits),
            int(bf.scale_overflow == "nan"), int(getattr(sf, "bias", 0)),
            int(np.float32(el.max).view(np.uint32)), int(el.bits),
            int(el.nan_code) if el.has_nan else -1)


def _blocks(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, generator, tensor_amax):
    """Run the block kernel: (bf, x, axis, codes, scale codes, values, tensor scale)."""
    from .blocks import _bits, _blocked, _check, _tensor_scales, _torch_path_ok  # noqa: PLC0415
    bf, x, axis = _check(x, bf, axis)
    _need(x)
    if bf.scale_rule not in _RULE or not _torch_path_ok(x, bf, sr_variant):
        raise NotImplementedError(f"the Triton block kernel covers the rules {tuple(_RULE)} "
                                  f"with float32-held elements; {bf.name} needs "
                                  "lowprec_torch.quantize")
    if sum(v is not None for v in (seed, rbits, generator)) > 1:
        raise ValueError("give one of seed=, rbits=, generator= for stochastic rounding")
    if tensor_amax is not None and bf.scale_rule != "nvfp4":
        raise ValueError(f"tensor_amax is for the two-level rules; {bf.name} uses "
                         f"scale_rule={bf.scale_rule!r}")
    mode, r, variant = cast._check_rounding_args(
        bf.elem, rounding, sr_bits, sr_variant, 0 if generator is not None else seed, rbits,
        np.float32)
    P = triton_params(cast._params(bf.elem, 32, mode, "saturate", False, r, variant))
    Ps = triton_params(cast._params(bf.scale_fmt, 32, "nearest_even", "saturate", False, 0,
                                    0)) if bf.scale_rule == "nvfp4" else P
    xb64 = _blocked(_bits(x.to(torch.float32)), axis, bf)
    k = bf.k
    xb = _int32(xb64).reshape(-1, k).contiguous()
    nb = xb.shape[0]
    w = _words(x, r, seed, rbits, generator) if mode == "stochastic" else None
    rw = xb if w is None else _blocked(w, axis, bf).reshape(-1, k).contiguous()
    ts = None
    if bf.scale_rule == "nvfp4":
        ts = _tensor_scales(xb64, tensor_amax)
        tsv = torch.stack(ts).to(torch.float32).contiguous()
    else:
        tsv = torch.ones(2, dtype=torch.float32, device=x.device)
    codes, vals = torch.empty_like(xb), torch.empty_like(xb)
    scodes = torch.empty(nb, dtype=torch.int32, device=x.device)
    _block_kernel[(triton.cdiv(nb, ROWS),)](
        xb, rw, tsv, codes, scodes, vals, nb, P=P, Ps=Ps, S=_block_constants(bf),
        HAS_R=w is not None, ROWS=ROWS, K=k, KP=triton.next_power_of_2(k))
    shape = xb64.shape
    t = 1.0 if ts is None else float(ts[1])
    return bf, x, axis, codes.reshape(shape), scodes.reshape(shape[:-1]), vals.reshape(
        shape).view(torch.float32), t


def quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, sr_variant="srff",
             seed=None, rbits=None, generator=None, tensor_amax=None):
    """``lowprec_torch.quantize`` (MX power-of-two rules, TE's NVFP4) as a Triton kernel."""
    from .blocks import QuantizedTensor  # noqa: PLC0415
    bf, x, axis, codes, scodes, _, t = _blocks(x, bf, axis, rounding, sr_bits, sr_variant,
                                               seed, rbits, generator, tensor_amax)
    return QuantizedTensor(codes.to(torch.uint8), scodes.to(torch.uint8), t, tuple(x.shape),
                           axis, bf)


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None,
                  sr_variant="srff", seed=None, rbits=None, generator=None, tensor_amax=None):
    """``lowprec_torch.fake_quantize`` (MX power-of-two rules, TE's NVFP4) as a Triton kernel:
    amax, scale, rounding and dequantization in one pass over ROWS blocks (no gradient
    rule)."""
    bf, x, axis, _, _, vals, _ = _blocks(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                         rbits, generator, tensor_amax)
    return cast_keeping_nan_sign(_B._unblock(vals, x.shape, axis, bf, xp=torch), x.dtype)


def compile_kernels(arch=90, fmts=("float8_e4m3fn", "float4_e2m1fn"),
                    block_formats=("mxfp8_e4m3", "mxfp4", "mxfp8_e4m3_rceil", "nvfp4")):
    """Compile every kernel for ``GPUTarget("cuda", arch, 32)`` (no GPU needed) for the given
    element and block formats, nearest-even and stochastic; returns {name: PTX size}. Run with
    ``TRITON_INTERPRET`` unset: code that only the interpreter accepts fails here."""
    from triton.backends.compiler import GPUTarget  # noqa: PLC0415
    from triton.compiler import ASTSource  # noqa: PLC0415
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("compile_kernels needs TRITON_INTERPRET unset (the kernels are "
                           "interpreted functions now)")
    target = GPUTarget("cuda", arch, 32)
    out = {}
    for fmt in fmts:
        for mode, r in (("nearest_even", 0), ("stochastic", 32)):
            P = triton_params(cast._params(_format(fmt), 32, mode, "saturate", False, r, 0))
            sig = {"x_ptr": "*i32", "r_ptr": "*i32", "code_ptr": "*i32", "val_ptr": "*i32",
                   "n": "i32", "P": "constexpr", "HAS_R": "constexpr", "BLOCK": "constexpr"}
            src = ASTSource(_round_kernel, sig, dict(P=P, HAS_R=r > 0, BLOCK=BLOCK))
            out[f"round {fmt} {mode}"] = len(triton.compile(src, target=target).asm["ptx"])
    for name in block_formats:
        bf = _B.block_format(name)
        for mode, r in (("nearest_even", 0), ("stochastic", 32)):
            P = triton_params(cast._params(bf.elem, 32, mode, "saturate", False, r, 0))
            Ps = triton_params(cast._params(bf.scale_fmt, 32, "nearest_even", "saturate",
                                            False, 0, 0)) if bf.scale_rule == "nvfp4" else P
            sig = {"x_ptr": "*i32", "r_ptr": "*i32", "ts_ptr": "*fp32", "code_ptr": "*i32",
                   "scode_ptr": "*i32", "val_ptr": "*i32", "nblocks": "i32",
                   **{c: "constexpr" for c in ("P", "Ps", "S", "HAS_R", "ROWS", "K", "KP")}}
            src = ASTSource(_block_kernel, sig, dict(
                P=P, Ps=Ps, S=_block_constants(bf), HAS_R=r > 0, ROWS=ROWS, K=bf.k,
                KP=triton.next_power_of_2(bf.k)))
            out[f"block {name} {mode}"] = len(triton.compile(src, target=target).asm["ptx"])
    return out
