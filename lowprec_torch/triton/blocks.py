"""Block ``fake_quantize`` / ``quantize`` as Triton kernels: MX power-of-two rules and
Transformer Engine's NVFP4, ``ROWS`` blocks per program."""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

import lowprec as lp
from lowprec import blocks as _B
from lowprec.rounding import check_random_source

from ..cast import cast_keeping_nan_sign, check_sources
from .cast import _int32, _need, _words
from .step import _mask, _msb, _shl, _shr, _u, kernel_params, round_bits

__all__ = ["quantize", "fake_quantize", "ROWS"]

ROWS = 16             # blocks per program (fake_quantize, quantize)


# ---- block quantization -----------------------------------------------------------------------

@triton.jit
def floor_log2(a):
    """floor(log2 v) of positive float32 bits a (subnormals included), int32."""
    ef = (a >> 23).to(tl.int32)
    return tl.where(ef > 0, ef - 127, _msb(a & _u(0x7FFFFF)) - 149)


@triton.jit
def is_pow2(a):
    return tl.where((a >> 23) == _u(0), (a & (a - _u(1))) == _u(0), (a & _u(0x7FFFFF)) == _u(0))


@triton.jit
def times_pow2(b, k):
    """float32 bits b times 2^k, sign kept (``lowprec.xscale.times_pow2`` on the magnitude)."""
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
def scale_exp(amax, RULE: tl.constexpr, EMAX: tl.constexpr, MELEM: tl.constexpr,
               RECIP: tl.constexpr):
    """Unclipped scale exponent per block (``lowprec.xscale.scale_exp``); RULE 0 floor,
    1 ceil, 2 even, 3 rceil (RECIP: the bits of fl32(1 / element max))."""
    safe = tl.where(amax > _u(0), amax, _u(0x3F800000))
    fl = floor_log2(safe)
    if RULE == 0:
        e = fl - EMAX
    elif RULE == 1:
        e = fl - EMAX + (~is_pow2(safe)).to(tl.int32)
    elif RULE == 2:
        e = ((safe + _u(1 << (23 - MELEM - 1))) >> 23).to(tl.int32) - 127 - EMAX
    else:
        p = safe.to(tl.float32, bitcast=True) * _u(RECIP).to(tl.float32, bitcast=True)
        pb = p.to(tl.uint32, bitcast=True) & _u(0x7FFFFFFF)
        pfl = floor_log2(tl.where(pb == _u(0), _u(1), pb))
        e = pfl + (~is_pow2(pb)).to(tl.int32)
        e = tl.where(pb == _u(0x7F800000), 1023, tl.where(pb == _u(0), -(1 << 20), e))
    return e


@triton.jit
def pow2_scales(amax, nan, inf, S: tl.constexpr):
    """(scale codes, clipped exponents, NaN blocks) of a power-of-two rule
    (``lowprec.xscale.pow2_scales``); S: ``_block_constants``."""
    exp = tl.where(amax > _u(0), scale_exp(amax, S[1], S[2], S[3], S[4]), S[5])
    if S[0] == 0:                                         # nonfinite == "saturate"
        exp = tl.where(inf, S[6], exp)
    if S[9] == 1:                                         # scale_overflow == "nan"
        nan = nan | (exp > S[6])
    exp = tl.minimum(tl.maximum(exp, S[5]), S[6])
    return tl.where(nan, S[7], exp + S[10]), exp, nan


@triton.jit
def te_block_scales(sb_in, s_dec, Ps: tl.constexpr, ROWS: tl.constexpr):
    """TE's block scales (``lowprec.xscale.te_block_scales``): s_b = e4m3(sb_in) nearest even,
    saturating, and the multiplier min(1 / (s_b * S_dec), FLT_MAX), float32. Returns (scale
    codes, s_b, multipliers)."""
    zero = sb_in.to(tl.uint32, bitcast=True) & _u(0)
    sc, s_b = round_bits(sb_in.to(tl.uint32, bitcast=True), zero, zero, Ps)
    s_bf = s_b.to(tl.float32, bitcast=True)
    mult = tl.minimum(tl.math.div_rn(tl.full((ROWS,), 1.0, tl.float32), s_bf * s_dec),
                      _u(0x7F7FFFFF).to(tl.float32, bitcast=True))
    return sc, s_bf, mult


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
        sc, s_bf, mult = te_block_scales(sb_in, t1, Ps, ROWS)
        s_codes = tl.where(nan, S[7], (sc & _u((1 << S[8]) - 1)).to(tl.int32))
        scaled = (xb.to(tl.float32, bitcast=True) * mult[:, None]).to(tl.uint32, bitcast=True)
    else:
        s_codes, exp, nan = pow2_scales(amax, nan, inf, S)
        scaled = times_pow2(xb, -exp[:, None])
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
        vb = times_pow2(vb, exp[:, None])
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
    from ..blocks import _bits, _blocked, _check, _tensor_scales, _torch_path_ok  # noqa: PLC0415
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
    plan = lp.plan(bf.elem, rounding, "saturate", sr_bits=sr_bits, sr_variant=sr_variant)
    check_random_source(plan.mode, 0 if generator is not None else seed, rbits)
    mode, r, P = plan.mode, plan.sr_bits, kernel_params(plan)
    Ps = kernel_params(lp.plan(bf.scale_fmt, "nearest_even", "saturate")) if (
        bf.scale_rule == "nvfp4") else P
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
    from ..blocks import QuantizedTensor  # noqa: PLC0415
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
    return cast_keeping_nan_sign(_B.unblock(vals, x.shape, axis, bf, xp=torch), x.dtype)


