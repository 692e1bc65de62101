"""Triton kernels (``lowprec_torch.triton``): ``round`` / ``encode`` over blocks of the
flattened input and block ``fake_quantize`` / ``quantize`` (MX power-of-two rules and
Transformer Engine's NVFP4), ``ROWS`` blocks per program, bit-identical to the core.

The rounding step is ``lowprec_torch._triton_round.round_bits`` (uint32 lanes, float32 work
type: formats that float32 holds, inputs of at most 32 bits). They run on CUDA tensors, or on
CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before this module is
imported); otherwise they raise. Random bits come in as arrays (``rbits``, a generator's
words computed by torch first), or for ``seed=`` in ``round`` / ``encode`` from the core's
Philox stream computed in the kernel (``_triton_round.seed_words``), never from ``tl.rand``.
NVFP4's float32 scale arithmetic uses ``*`` and ``tl.math.div_rn`` (IEEE).
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

from . import (_NP, _TORCH, _check_x, _codes, _generator_words, _rbits_words,
               cast_keeping_nan_sign, check_sources, random_bits)
from ._triton_round import (_mask, _msb, _shl, _shr, _u, msb64, round_bits, round_int,
                            seed_words)

__all__ = ["round", "encode", "fake_quantize", "quantize", "matmul", "compile_kernels", "BLOCK",
           "ROWS", "TILE", "available"]

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
    if isinstance(fmt, TableFormat) or cast._work_bits(fmt, _NP[x.dtype]) != 32:
        raise ValueError(f"the Triton kernels use a float32 work type: {fmt.name} from "
                         f"{x.dtype} needs float64 (use lowprec_torch.round)")
    check_sources(seed, rbits, generator)
    mode, r, variant = cast._check_rounding_args(
        fmt, rounding, sr_bits, sr_variant, 0 if generator is not None else seed, rbits,
        _NP[x.dtype])
    P = triton_params(cast._params(fmt, 32, mode, check_overflow(overflow, fmt),
                                   overflow is None, r, variant))
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
    check_sources(seed, rbits, generator)
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


def _ptx(compiled):
    """The PTX size, after checking that no instruction flushes subnormals (``.ftz``): the
    float32 products and quotients of the NVFP4 and rceil rules must be IEEE."""
    ptx = compiled.asm["ptx"]
    if ".ftz" in ptx:
        raise RuntimeError("a kernel compiled to a flush-to-zero instruction")
    return len(ptx)


def compile_kernels(arch=90, fmts=("float8_e4m3fn", "float4_e2m1fn"),
                    block_formats=("mxfp8_e4m3", "mxfp4", "mxfp8_e4m3_rceil", "nvfp4"),
                    matmul_models=("h100-fp8", "b200-fp8")):
    """Compile every kernel for ``GPUTarget("cuda", arch, 32)`` (no GPU needed) for the given
    element and block formats (nearest-even and stochastic) and accumulator models (names,
    or ``lp.Accumulator`` such as ``lp.exact_per_block(...)``); returns {name: PTX size}. Run with
    ``TRITON_INTERPRET`` unset: code that only the interpreter accepts fails here."""
    from triton.backends.compiler import GPUTarget  # noqa: PLC0415
    from triton.compiler import ASTSource  # noqa: PLC0415
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("compile_kernels needs TRITON_INTERPRET unset (the kernels are "
                           "interpreted functions now)")
    target = GPUTarget("cuda", arch, 32)
    out = {}
    for fmt in fmts:
        for mode, r, seeded in (("nearest_even", 0, False), ("stochastic", 32, False),
                                ("stochastic seed", 32, True)):
            P = triton_params(cast._params(_format(fmt), 32, mode.split()[0], "saturate",
                                           False, r, 0))
            sig = {"x_ptr": "*i32", "r_ptr": "*i32", "code_ptr": "*i32", "val_ptr": "*i32",
                   "n": "i32", "seed_lo": "i64", "seed_hi": "i64",
                   **{c: "constexpr" for c in ("P", "HAS_R", "SEEDED", "BLOCK")}}
            src = ASTSource(_round_kernel, sig, dict(P=P, HAS_R=r > 0 and not seeded,
                                                     SEEDED=seeded, BLOCK=BLOCK))
            out[f"round {fmt} {mode}"] = _ptx(triton.compile(src, target=target))
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
            out[f"block {name} {mode}"] = _ptx(triton.compile(src, target=target))
    from lowprec import accumulate as _acc  # noqa: PLC0415
    for acc in (_acc._resolve(p) for p in matmul_models):
        fz = acc.fused
        P = triton_params(cast._params(acc.fmt, 32, acc.rounding, cast.check_overflow(
            acc.overflow, acc.fmt), acc.overflow is None, 0, 0))
        fa, fb = acc.input_formats
        sig = {"sa_ptr": "*i64", "ea_ptr": "*i32", "fa_ptr": "*i32", "sb_ptr": "*i64",
               "eb_ptr": "*i32", "fb_ptr": "*i32", "c_ptr": "*i32", "out_ptr": "*i32",
               "err_ptr": "*i32", "M": "i32", "N": "i32", "K": "i32", "Kp": "i32",
               **{c: "constexpr" for c in ("P", "F", "NT", "ALIGN", "TERMS", "MAB", "CEMIN",
                                           "DOWN_MODE", "TILE")}}
        src = ASTSource(_matmul_kernel, sig, dict(
            P=P, F=fz.frac_bits, NT=fz.n, ALIGN=bool(fz.align_addend),
            TERMS=_acc.TERMS[fz.terms], MAB=fa.man_bits + fb.man_bits,
            CEMIN=(acc.addend_format or acc.fmt).emin, DOWN_MODE=acc.rounding == "down",
            TILE=TILE))
        out[f"matmul {acc}"] = _ptx(triton.compile(src, target=target))
    return out


# ---- matmul: fused adders -----------------------------------------------------------------------

TILE = 16             # output rows and columns per program (matmul)


@triton.jit
def _align(p, sh, MODE: tl.constexpr):
    """p * 2^sh to an integer (p int64): truncation (0), floor (1) or nearest even (2)
    (``lowprec._accumulate._align``)."""
    up = p << tl.minimum(tl.maximum(sh, 0), 62).to(tl.int64)
    k = tl.minimum(tl.maximum(-sh, 0), 62).to(tl.int64)
    a = tl.abs(p)
    if MODE == 1:
        down = p >> k
        far = tl.where(p < 0, -1, 0).to(tl.int64)
    else:
        q = a >> k
        if MODE == 2:
            one = k * 0 + 1
            rem = a & ((one << k) - one)
            half = tl.where(k > 0, one << tl.maximum(k - 1, 0), k * 0)
            q = q + ((k > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))).to(tl.int64)
        down = tl.where(p < 0, -q, q)
        far = p * 0
    down = tl.where(-sh >= 62, far, down)
    return tl.where(sh >= 0, up, down)


@triton.jit
def _f32_parts(b):
    """(signed int64 significand m, int32 exponent e: value m * 2^e) of finite float32 bits."""
    a = b & _u(0x7FFFFFFF)
    ew = (a >> 23).to(tl.int32)
    m = ((a & _u(0x7FFFFF)) | ((ew != 0).to(tl.uint32) << 23)).to(tl.int64)
    e = tl.maximum(ew, 1) - 150
    return tl.where((b >> 31) == _u(1), -m, m), e


@triton.jit
def _sum_round(S, x, accb, P: tl.constexpr, DOWN_MODE: tl.constexpr):
    """(code, bits) of S * 2^x + acc (acc finite, float32 bits) rounded once: both brought
    to 53-bit significands, the smaller aligned into units 2^(eL - 9) with a sticky bit (the
    float64 ``_sum_odd`` of ``lowprec_jax.matmul``), then ``round_int``."""
    am, ae = _f32_parts(accb)
    mS = tl.abs(S).to(tl.uint64)
    ms = msb64(mS)
    m1 = (mS << tl.maximum(52 - ms, 0).to(tl.uint64)).to(tl.int64)
    e1 = x - tl.maximum(52 - ms, 0)
    m1 = tl.where(S < 0, -m1, m1)
    a2 = tl.abs(am).to(tl.uint64)
    ma = msb64(a2)
    m2 = (a2 << tl.maximum(52 - ma, 0).to(tl.uint64)).to(tl.int64)
    e2 = ae - tl.maximum(52 - ma, 0)
    m2 = tl.where(am < 0, -m2, m2)
    first = e1 >= e2
    mL = tl.where(first, m1, m2)
    eL = tl.where(first, e1, e2)
    mS2 = tl.where(first, m2, m1)
    eS = tl.where(first, e2, e1)
    k = eL - 9 - eS
    aS = tl.abs(mS2)
    left = aS << tl.minimum(tl.maximum(-k, 0), 9).to(tl.int64)
    kk = tl.minimum(tl.maximum(k, 0), 63).to(tl.int64)
    one = kk * 0 + 1
    right = (aS >> kk) | ((aS & ((one << kk) - one)) != 0).to(tl.int64)
    right = tl.where(k >= 63, (aS != 0).to(tl.int64), right)
    sS = tl.where(k <= 0, left, right)
    T = (mL << 9) + tl.where(mS2 < 0, -sS, sS)
    T = tl.where(S == 0, m2 << 9, tl.where(am == 0, m1 << 9, T))
    eT = tl.where(S == 0, e2, tl.where(am == 0, e1, eL)) - 9
    code, vb = round_int(T < 0, tl.abs(T).to(tl.uint64), eT, P)
    zero = tl.where(DOWN_MODE & (S != 0), _u(0x80000000), _u(0))   # x - x: -0 rounding down
    zc, zv = round_bits(zero, zero & _u(0), zero & _u(0), P)
    return tl.where(T == 0, zc, code), tl.where(T == 0, zv, vb)


@triton.jit
def _matmul_kernel(sa_ptr, ea_ptr, fa_ptr, sb_ptr, eb_ptr, fb_ptr, c_ptr, out_ptr, err_ptr,
                   M, N, K, Kp, P: tl.constexpr, F: tl.constexpr, NT: tl.constexpr,
                   ALIGN: tl.constexpr, TERMS: tl.constexpr, MAB: tl.constexpr,
                   CEMIN: tl.constexpr, DOWN_MODE: tl.constexpr, TILE: tl.constexpr):
    """One (TILE, TILE) output tile of batch b: the running sums start at c and take NT
    products per fused step (``lowprec._accumulate._fused_step`` / ``_special_step``).
    Operand views (nb, rows, Kp): signed significands (int64), exponents with the block
    scale's (int32), flags 0 finite, 1 Inf, 2 NaN, 3 -0; B is transposed (nb, N, Kp)."""
    b = tl.program_id(0)
    rows = tl.program_id(1) * TILE + tl.arange(0, TILE)
    cols = tl.program_id(2) * TILE + tl.arange(0, TILE)
    kk = tl.arange(0, NT)
    om = (rows[:, None] < M) & (cols[None, :] < N)
    oo = b * M * N + rows[:, None] * N + cols[None, :]
    acc = tl.load(c_ptr + oo, mask=om, other=0).to(tl.uint32, bitcast=True)
    err = rows[:, None] * 0 + cols[None, :] * 0
    for s in range(0, Kp // NT):
        k = s * NT + kk
        ao = b * M * Kp + rows[:, None] * Kp + k[None, :]
        bo = b * N * Kp + cols[:, None] * Kp + k[None, :]
        sa = tl.load(sa_ptr + ao, mask=rows[:, None] < M, other=0)[:, None, :]
        ea = tl.load(ea_ptr + ao, mask=rows[:, None] < M, other=0)[:, None, :]
        fa = tl.load(fa_ptr + ao, mask=rows[:, None] < M, other=0)[:, None, :]
        sb = tl.load(sb_ptr + bo, mask=cols[:, None] < N, other=0)[None, :, :]
        eb = tl.load(eb_ptr + bo, mask=cols[:, None] < N, other=0)[None, :, :]
        fb = tl.load(fb_ptr + bo, mask=cols[:, None] < N, other=0)[None, :, :]
        valid = (k < K)[None, None, :]
        fin = valid & (fa == 0) & (fb == 0)
        p = tl.where(fin, sa * sb, 0)
        pe = ea + eb
        nzp = p != 0
        E = tl.max(tl.where(nzp, pe, -(1 << 30)), axis=2)
        am, ae = _f32_parts(acc)
        a_abs = acc & _u(0x7FFFFFFF)
        acc_fin = a_abs < _u(0x7F800000)
        acc_nz = (am != 0) & acc_fin
        if ALIGN:
            accE = tl.maximum(msb64(tl.abs(am).to(tl.uint64)) + ae, CEMIN)
            E = tl.where(acc_nz, tl.maximum(E, accE), E)
            nz = (tl.max(nzp.to(tl.int32), axis=2) > 0) | acc_nz
        else:
            nz = tl.max(nzp.to(tl.int32), axis=2) > 0
        S = tl.sum(tl.where(nzp, _align(p, F + pe - E[:, :, None] - MAB, TERMS), 0), axis=2)
        if ALIGN:
            S = S + tl.where(acc_nz, _align(am, F + ae - E, TERMS), 0)
            code, vb = round_int(S < 0, tl.abs(S).to(tl.uint64), E - F, P)
            zc, zv = round_bits(acc & _u(0), acc & _u(0), acc & _u(0), P)   # +0: S cancels
            code = tl.where(S == 0, zc, code)
            vb = tl.where(S == 0, zv, vb)
        else:
            code, vb = _sum_round(S, E - F, tl.where(acc_nz, acc, _u(0)), P, DOWN_MODE)
        # no non-zero product: the addend alone, or a signed zero (-0 only if all terms are)
        neg_p = ((sa < 0) | (fa == 3)) != ((sb < 0) | (fb == 3))
        all_neg = (tl.max((~neg_p & valid).to(tl.int32), axis=2) == 0) & (
            acc == _u(0x80000000))
        # Inf and NaN (IEEE): a NaN operand, 0 * Inf or Inf - Inf give NaN
        nan_t = valid & ((fa == 2) | (fb == 2) | ((fa == 1) & (sb == 0)) | ((fb == 1) & (sa == 0)))
        inf_t = valid & ~nan_t & ((fa == 1) | (fb == 1))
        inf_pos = tl.max((inf_t & ((sa < 0) == (sb < 0))).to(tl.int32), axis=2) > 0
        inf_neg = tl.max((inf_t & ((sa < 0) != (sb < 0))).to(tl.int32), axis=2) > 0
        acc_inf = a_abs == _u(0x7F800000)
        acc_nan = a_abs > _u(0x7F800000)
        acc_neg = (acc >> 31) == _u(1)
        nan = (tl.max(nan_t.to(tl.int32), axis=2) > 0) | (inf_pos & inf_neg) | acc_nan | (
            acc_inf & ((~acc_neg & inf_neg) | (acc_neg & inf_pos)))
        sp = tl.where(acc_nz, acc, tl.where(all_neg, _u(0x80000000), _u(0)))
        sp = tl.where(inf_pos | inf_neg | acc_inf, tl.where(
            acc_inf, acc, tl.where(inf_pos, _u(0x7F800000), _u(0xFF800000))), sp)
        sp = tl.where(nan, _u(0x7FC00000), sp)
        use_sp = (~nz) | inf_pos | inf_neg | acc_inf | nan
        spc, spv = round_bits(sp, sp & _u(0), sp & _u(0), P)
        code = tl.where(use_sp, spc, code)
        acc = tl.where(use_sp, spv, vb)
        err = err | (code == _u(0xFFFFFFFF)).to(tl.int32)
    tl.store(out_ptr + oo, acc.to(tl.int32, bitcast=True), mask=om)
    tl.store(err_ptr + oo, err, mask=om)


def _views(X, fmt, name, swap):
    """(sig int64, exp int32, flag int32) views (nb, rows, K) of a float tensor of ``fmt``
    values or an MX ``QuantizedTensor`` (scales folded into the exponents), via the core's
    helpers on a CPU copy; and the batch shape and the two matrix sizes."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    from . import to_numpy  # noqa: PLC0415
    from .blocks import QuantizedTensor  # noqa: PLC0415
    if isinstance(X, QuantizedTensor):
        if X.fmt.scale_rule in _B.TWO_LEVEL or X.fmt.scale_fmt.man_bits:
            raise NotImplementedError("the Triton matmul takes power-of-two (MX) block scales; "
                                      "NVFP4 operands need lowprec_torch.matmul")
        want_axis = len(X.shape) - (2 if swap else 1)
        if X.fmt.tile is None and X.axis != want_axis:
            raise ValueError(f"{name} must be blocked along K (axis {want_axis - len(X.shape)})")
        e, s = X.to_core().element_and_scale_values()
        if np.any(np.isfinite(s) & (s > 0) & (np.frexp(s)[0] != 0.5)):
            raise ValueError(f"{name}'s block scales are not all powers of two")
        shape = e.shape
        sx, ex, fx = _acc.scaled_parts(e, s, X.fmt.elem, shape, swap)
        fmt = X.fmt.elem
    else:
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or a QuantizedTensor")
        x = to_numpy(X).astype(np.float64)
        _acc._check_values(x, fmt, name)
        shape = x.shape
        if swap:
            x = np.swapaxes(x, -1, -2)
        nb = int(np.prod(x.shape[:-2], dtype=np.int64))
        sx, ex, fx = _acc._sig_exp(np.ascontiguousarray(x).reshape((nb,) + x.shape[-2:]), fmt)
    if len(shape) < 2:
        raise ValueError(f"{name} needs at least 2 dimensions")
    return (sx, ex.astype(np.int32), fx.astype(np.int32)), tuple(shape[:-2]), shape[-2:], fmt


def matmul(A, B, acc, c=None, *, dtype=None):
    """``lowprec_torch.matmul`` as a Triton kernel for fused-adder accumulators without
    stochastic rounding or promotion and with power-of-two block scales (every such
    ``lp.hardware`` preset, e.g. ``h100-fp8``, ``b200-fp8``, ``b200-mxf8f6f4``, and
    ``lp.exact_per_block``), into formats float32 holds: one (TILE, TILE) output tile per
    program, the fused adder's steps along K (integer sums of the aligned products, one
    rounding per step). A, B: float tensors of the input formats (same batch shape) or MX
    ``QuantizedTensor``s (A blocked along K, B along axis -2); c: values of the addend
    format. The operand views are prepared by the core on the CPU (a host round trip)."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    acc = _acc._resolve(acc)
    dev = (A.codes if hasattr(A, "codes") else A).device
    _need(torch.empty(0, device=dev))
    fz = acc.fused
    if fz is None or acc.stochastic or acc.promote_every is not None or (
            acc.block_scales != "product"):
        raise NotImplementedError(f"the Triton matmul models fused adders with power-of-two "
                                  f"block scales, no stochastic rounding and no promotion; "
                                  f"{acc} needs lowprec_torch.matmul")
    cf = acc.addend_format or acc.fmt
    if not (cast.holds(acc.fmt, np.float32) and cast.holds(cf, np.float32)):
        raise NotImplementedError(f"the Triton matmul rounds into formats float32 holds, not "
                                  f"{acc.fmt.name}")
    if (fz.n + 2) * 2.0 ** (fz.frac_bits + 3) >= 2.0**53:
        raise NotImplementedError("this fused adder's sums exceed 53 bits; use "
                                  "lowprec_torch.matmul")
    fa, fb = acc.input_formats
    (sa, ea, fla), ba, (M, K), fa = _views(A, fa, "A", False)
    (sb, eb, flb), bb, (K2, N), fb = _views(B, fb, "B", True)
    if K != K2 or ba != bb:
        raise ValueError(f"shapes do not multiply: A {ba + (M, K)}, B {bb + (K2, N)}")
    nb = sa.shape[0]
    n = fz.n
    Kp = max(1, -(-K // n)) * n
    pad = lambda a: np.pad(a, ((0, 0), (0, 0), (0, Kp - K)))  # noqa: E731
    t = lambda a: torch.from_numpy(np.ascontiguousarray(pad(a))).to(dev)  # noqa: E731
    cv = np.zeros(ba + (M, N), np.float64) if c is None else np.broadcast_to(
        np.asarray(c.detach().cpu() if isinstance(c, torch.Tensor) else c, np.float64),
        ba + (M, N))
    _acc._check_values(cv, cf, "c")
    cb = torch.from_numpy(np.ascontiguousarray(cv.astype(np.float32)).view(np.int32)).to(dev)
    out = torch.empty((nb, M, N), dtype=torch.int32, device=dev)
    err = torch.empty((nb, M, N), dtype=torch.int32, device=dev)
    P = triton_params(cast._params(acc.fmt, 32, acc.rounding, cast.check_overflow(
        acc.overflow, acc.fmt), acc.overflow is None, 0, 0))
    grid = (nb, triton.cdiv(M, TILE), triton.cdiv(N, TILE))
    _matmul_kernel[grid](t(sa), t(ea), t(fla), t(sb), t(eb), t(flb), cb, out, err, M, N, K, Kp,
                         P=P, F=fz.frac_bits, NT=n, ALIGN=bool(fz.align_addend),
                         TERMS=_acc.TERMS[fz.terms], MAB=fa.man_bits + fb.man_bits,
                         CEMIN=cf.emin, DOWN_MODE=acc.rounding == "down", TILE=TILE)
    if bool(err.any()):
        raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN")
    res = out.view(torch.float32).reshape(ba + (M, N))
    res = torch.where(torch.isnan(res), float("nan"), res)          # the positive quiet NaN
    return res if dtype is None else cast_keeping_nan_sign(res, dtype)
