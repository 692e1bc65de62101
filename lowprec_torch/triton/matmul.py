"""``matmul`` as a Triton kernel: the fused multi-term adder, one output tile per program."""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

import lowprec as lp
from lowprec import blocks as _B

from ..cast import cast_keeping_nan_sign, to_numpy
from .cast import _need
from .step import _u, kernel_params, msb64, round_bits, round_int

__all__ = ["matmul", "TILE"]

# ---- matmul: fused adders -----------------------------------------------------------------------

TILE = 16             # output rows and columns per program (matmul)


@triton.jit
def _align(p, sh, MODE: tl.constexpr):
    """p * 2^sh to an integer (p int64): truncation (0), floor (1) or nearest even (2)
    (``_align`` (lowprec/_accumulate.py))."""
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
def _floored_join(p, pe, nzp, kk, am, ae, acc_nz, F: tl.constexpr, F2: tl.constexpr,
                  SPLIT: tl.constexpr, DROP: tl.constexpr, MAB: tl.constexpr,
                  CEMIN: tl.constexpr, P: tl.constexpr):
    """(code, bits) of one ``_floored_step`` (lowprec/_accumulate.py, FusedAdder.sum_bits):
    the products at step positions i mod SPLIT truncated below their own largest exponent
    and summed, those sums floored to F bits below the joint largest Ed, joined with c
    through floors below e = max(Ed, exponent of c), normalised, floored to F2 bits,
    rounded once."""
    NONE: tl.constexpr = -(1 << 30)
    sel0 = nzp & ((kk % SPLIT) == 0)[None, None, :]
    E0 = tl.max(tl.where(sel0, pe, NONE), axis=2)
    S0 = tl.sum(tl.where(sel0, _align(p, F + pe - E0[:, :, None] - MAB, 0), 0), axis=2)
    Ed = E0
    Sd = S0
    if SPLIT == 2:
        sel1 = nzp & ((kk % SPLIT) == 1)[None, None, :]
        E1 = tl.max(tl.where(sel1, pe, NONE), axis=2)
        S1 = tl.sum(tl.where(sel1, _align(p, F + pe - E1[:, :, None] - MAB, 0), 0), axis=2)
        Ed = tl.maximum(E0, E1)
        Sd = tl.where(E0 != NONE, _align(S0, E0 - Ed, 1), 0) + tl.where(
            E1 != NONE, _align(S1, E1 - Ed, 1), 0)
    msb_c = msb64(tl.abs(am).to(tl.uint64))
    ec = tl.where(acc_nz, tl.maximum(msb_c + ae, CEMIN), CEMIN)
    e = tl.maximum(Ed, ec)
    T = tl.where(Ed != NONE, _align(Sd, Ed - F - (e - F2 - 1), 1), 0)
    keep = acc_nz
    if DROP:
        keep = keep & (ec >= e - F - 1)
    T = T + tl.where(keep, _align(am, ae - (e - F), 1) << (F2 + 1 - F), 0)
    top = msb64(tl.abs(T).to(tl.uint64))
    sh = tl.minimum(tl.maximum(tl.maximum(top + e - F2 - 1, CEMIN) - e + 1, 0), 62)
    T = (T >> sh.to(tl.int64)) << sh.to(tl.int64)
    code, vb = round_int(T < 0, tl.abs(T).to(tl.uint64), e - F2 - 1, P)
    zero = T * 0
    zc, zv = round_bits(zero.to(tl.uint32), zero.to(tl.uint32), zero.to(tl.uint32), P)
    return tl.where(T == 0, zc, code), tl.where(T == 0, zv, vb)


@triton.jit
def _special_or(sp, use_sp, code, vb, err, P: tl.constexpr):
    """(bits, errors) of a step: the special value sp (float32 bits) rounded where use_sp,
    else the step's (code, vb); a code the format cannot hold counts as an error."""
    spc, spv = round_bits(sp, sp & _u(0), sp & _u(0), P)
    code = tl.where(use_sp, spc, code)
    return tl.where(use_sp, spv, vb), err | (code == _u(0xFFFFFFFF)).to(tl.int32)


@triton.jit
def _matmul_kernel(sa_ptr, ea_ptr, fa_ptr, sb_ptr, eb_ptr, fb_ptr, c_ptr, out_ptr, err_ptr,
                   M, N, K, Kp, P: tl.constexpr, F: tl.constexpr, NT: tl.constexpr,
                   ALIGN: tl.constexpr, TERMS: tl.constexpr, MAB: tl.constexpr,
                   CEMIN: tl.constexpr, DOWN_MODE: tl.constexpr, ZE: tl.constexpr,
                   F2: tl.constexpr, SPLIT: tl.constexpr, DROP: tl.constexpr,
                   INFP: tl.constexpr, TILE: tl.constexpr):
    """One (TILE, TILE) output tile of batch b: the running sums start at c and take NT
    products per fused step (``_fused_step`` (lowprec/_accumulate.py) / ``_special_step``).
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
        if ZE > -(1 << 30):                       # FusedAdder.zero_exponent: a zero term
            zero = tl.max((valid & ~nzp).to(tl.int32), axis=2) > 0
            if ALIGN:
                zero = zero | ~acc_nz
            E = tl.where(zero, tl.maximum(E, ZE), E)
        if F2 >= 0:                               # FusedAdder.sum_bits: the floored join
            code, vb = _floored_join(p, pe, nzp, kk, am, ae, acc_nz, F, F2, SPLIT, DROP, MAB,
                                     CEMIN, P)
            nz = nz | True
        elif ALIGN:
            S = tl.sum(tl.where(nzp, _align(p, F + pe - E[:, :, None] - MAB, TERMS), 0), axis=2)
            S = S + tl.where(acc_nz, _align(am, F + ae - E, TERMS), 0)
            code, vb = round_int(S < 0, tl.abs(S).to(tl.uint64), E - F, P)
            zc, zv = round_bits(acc & _u(0), acc & _u(0), acc & _u(0), P)   # +0: S cancels
            code = tl.where(S == 0, zc, code)
            vb = tl.where(S == 0, zv, vb)
        else:
            S = tl.sum(tl.where(nzp, _align(p, F + pe - E[:, :, None] - MAB, TERMS), 0), axis=2)
            code, vb = _sum_round(S, E - F, tl.where(acc_nz, acc, _u(0)), P, DOWN_MODE)
        # no non-zero product: the addend alone, or a signed zero (-0 only if all terms are)
        neg_p = ((sa < 0) | (fa == 3)) != ((sb < 0) | (fb == 3))
        all_neg = (tl.max((~neg_p & valid).to(tl.int32), axis=2) == 0) & (
            acc == _u(0x80000000))
        # Inf and NaN (IEEE): a NaN operand, 0 * Inf or Inf - Inf give NaN
        nan_t = valid & ((fa == 2) | (fb == 2) | ((fa == 1) & (sb == 0)) | ((fb == 1) & (sa == 0)))
        inf_t = valid & ~nan_t & ((fa == 1) | (fb == 1))
        if INFP:                                  # inf_products: |p| >= 2^128 is +-Inf
            inf_t = inf_t | (nzp & (msb64(tl.abs(p).to(tl.uint64)) + pe - MAB >= 128))
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
        acc, err = _special_or(sp, use_sp, code, vb, err, P)
    tl.store(out_ptr + oo, acc.to(tl.int32, bitcast=True), mask=om)
    tl.store(err_ptr + oo, err, mask=om)


@triton.jit
def _group_kernel(m_ptr, sig_ptr, label_ptr, bad_ptr, c_ptr, out_ptr, err_ptr, R, G,
                  P: tl.constexpr, F: tl.constexpr, MAB: tl.constexpr, PER: tl.constexpr,
                  CEMIN: tl.constexpr, EZ: tl.constexpr, ROWS: tl.constexpr):
    """``_grouped`` (lowprec/accumulate.py) for ROWS outputs: steps of PER group terms
    m * sig * 2^(label - MAB) and the running sum, aligned on the largest label
    (``group_step``, lowprec/group_step.py), truncated to F bits, summed, rounded once."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    rm = rows < R
    kk = tl.arange(0, PER)
    acc = tl.load(c_ptr + rows, mask=rm, other=0).to(tl.uint32, bitcast=True)
    err = rows * 0
    for s in range(0, G // PER):
        o = rows[:, None] * G + s * PER + kk[None, :]
        m = tl.load(m_ptr + o, mask=rm[:, None], other=0)
        sg = tl.load(sig_ptr + o, mask=rm[:, None], other=0)
        lb = tl.load(label_ptr + o, mask=rm[:, None], other=EZ)
        bd = tl.load(bad_ptr + o, mask=rm[:, None], other=0)
        am, ae = _f32_parts(acc)
        a_abs = acc & _u(0x7FFFFFFF)
        cm = tl.where(a_abs < _u(0x7F800000), am, 0)
        c_label = tl.where(cm != 0, tl.maximum(msb64(tl.abs(cm).to(tl.uint64)) + ae, CEMIN),
                           EZ)
        E = tl.maximum(tl.max(lb, axis=1), c_label)
        S = tl.sum(_align(m * sg, lb - MAB - E[:, None] + F, 0), axis=1) + _align(
            cm, ae - E + F, 0)
        code, vb = round_int(S < 0, tl.abs(S).to(tl.uint64), E - F, P)
        zc, zv = round_bits(acc & _u(0), acc & _u(0), acc & _u(0), P)   # +0: S is zero
        code = tl.where(S == 0, zc, code)
        vb = tl.where(S == 0, zv, vb)
        nan = (tl.max(bd, axis=1) > 0) | (a_abs > _u(0x7F800000))
        sp = tl.where(nan, _u(0x7FC00000), acc)       # NaN, or the infinite running sum
        use_sp = nan | (a_abs == _u(0x7F800000))
        acc, err = _special_or(sp, use_sp, code, vb, err, P)
    tl.store(out_ptr + rows, acc.to(tl.int32, bitcast=True), mask=rm)
    tl.store(err_ptr + rows, err, mask=rm)


def _group_matmul(A, B, acc, c, dev):
    """block_scales='group' (b200-mxf4nvf4): the group terms prepared by the core
    (``lp.accumulate.group_terms``, host), the steps in ``_group_kernel``; NVFP4 tensor
    scales in the epilogue D = round(alpha * acc + c) (``lp.fma``, host). float32 results
    as a (..., M, N) numpy array."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    from ..blocks import QuantizedTensor  # noqa: PLC0415
    if not (isinstance(A, QuantizedTensor) and isinstance(B, QuantizedTensor)):
        raise TypeError("block_scales='group' takes two QuantizedTensors")
    ca, cb = A.to_core(), B.to_core()
    if len(ca.shape) < 2 or len(cb.shape) < 2 or ca.shape[-1] != cb.shape[-2] or (
            ca.axis != len(ca.shape) - 1 or cb.axis != len(cb.shape) - 2):
        raise ValueError(f"A {ca.shape} must be blocked along K (its last axis) and B "
                         f"{cb.shape} along K (axis -2), and their K must agree")
    ea, sa = ca.element_and_scale_values()
    eb, sb = cb.element_and_scale_values()
    _acc.check_group_sums_exact(ca.fmt, cb.fmt, acc.group)
    m, sig, label, bad, mab, shape = _acc.group_terms(acc, ca.fmt, cb.fmt, ea, sa, eb, sb)
    alpha = np.float32(np.float32(ca.tensor_scale) * np.float32(cb.tensor_scale))
    cf = acc.addend_format or acc.fmt
    cv = np.zeros(shape) if c is None or alpha != 1 else np.broadcast_to(
        np.asarray(c.detach().cpu() if isinstance(c, torch.Tensor) else c, np.float64), shape)
    _acc.check_values(cv, cf, "c")
    R, G = m.shape
    t = lambda a, d: torch.from_numpy(np.ascontiguousarray(a, d)).to(dev)  # noqa: E731
    out = torch.empty(R, dtype=torch.int32, device=dev)
    err = torch.empty(R, dtype=torch.int32, device=dev)
    consts = group_constants(acc, mab)
    _group_kernel[(triton.cdiv(R, consts["ROWS"]),)](
        t(m, np.int64), t(sig, np.int64), t(label, np.int32), t(bad, np.int32),
        t(cv.astype(np.float32).view(np.int32), np.int32), out, err, R, G, **consts)
    if bool(err.any()):
        raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN")
    res = out.cpu().numpy().view(np.float32).reshape(shape)
    if alpha != 1:
        cc = np.zeros(shape) if c is None else np.asarray(
            c.detach().cpu() if isinstance(c, torch.Tensor) else c, np.float64)
        res = lp.fma(np.float64(alpha), res.astype(np.float64), cc, acc.fmt, acc.rounding,
                     acc.overflow, dtype=np.float32)
    return res


def group_constants(acc, mab):
    """The constexpr arguments of ``_group_kernel`` (``mab``: the terms' exponent offset,
    ``lp.accumulate.group_terms``)."""
    from lowprec.group_step import E_ZERO  # noqa: PLC0415
    return dict(P=kernel_params(lp.plan(acc.fmt, acc.rounding, acc.overflow)),
                F=acc.fused.frac_bits, MAB=int(mab), PER=acc.fused.n // acc.group,
                CEMIN=(acc.addend_format or acc.fmt).emin, EZ=E_ZERO, ROWS=32)


def kernel_constants(acc, fa, fb):
    """The constexpr arguments of ``_matmul_kernel`` for the accumulator ``acc`` with input
    formats fa, fb (shared by the launch and by ``compile_kernels``)."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    fz = acc.fused
    return dict(P=kernel_params(lp.plan(acc.fmt, acc.rounding, acc.overflow)), F=fz.frac_bits,
                NT=fz.n, ALIGN=bool(fz.align_addend), TERMS=_acc.TERMS[fz.terms],
                MAB=fa.man_bits + fb.man_bits, CEMIN=(acc.addend_format or acc.fmt).emin,
                DOWN_MODE=acc.rounding == "down",
                ZE=-(1 << 30) if fz.zero_exponent is None else fz.zero_exponent,
                F2=-1 if fz.sum_bits is None else fz.sum_bits, SPLIT=fz.split,
                DROP=bool(fz.drop_small_addend), INFP=bool(fz.inf_products), TILE=TILE)


def _views(X, fmt, name, swap):
    """(sig int64, exp int32, flag int32) views (nb, rows, K) of a float tensor of ``fmt``
    values or an MX ``QuantizedTensor`` (scales folded into the exponents), via the core's
    helpers on a CPU copy; and the batch shape and the two matrix sizes."""
    from lowprec import accumulate as _acc  # noqa: PLC0415

    from ..blocks import QuantizedTensor  # noqa: PLC0415
    from ..cast import to_numpy  # noqa: PLC0415
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
        _acc.check_values(x, fmt, name)
        shape = x.shape
        if swap:
            x = np.swapaxes(x, -1, -2)
        nb = int(np.prod(x.shape[:-2], dtype=np.int64))
        sx, ex, fx = _acc.sig_exp(np.ascontiguousarray(x).reshape((nb,) + x.shape[-2:]), fmt)
    if len(shape) < 2:
        raise ValueError(f"{name} needs at least 2 dimensions")
    return (sx, ex.astype(np.int32), fx.astype(np.int32)), tuple(shape[:-2]), shape[-2:], fmt


def matmul(A, B, acc, c=None, *, dtype=None):
    """``lowprec_torch.matmul`` as a Triton kernel for fused-adder accumulators without
    stochastic rounding or promotion and with power-of-two block scales (every such
    ``lp.hardware`` preset, e.g. ``h100-fp8``, ``b200-fp8``, ``b200-mxf8f6f4``, the
    ``mi300-*`` floored join, and ``lp.exact_per_block``) or the group rule of
    ``b200-mxf4nvf4`` (``_group_kernel``), into formats float32 holds: one (TILE, TILE)
    output tile per program, the fused adder's steps along K (integer sums of the aligned products, one
    rounding per step). A, B: float tensors of the input formats (same batch shape) or MX
    ``QuantizedTensor``s (A blocked along K, B along axis -2); c: values of the addend
    format. The operand views are prepared by the core on the CPU (a host round trip)."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    acc = lp.hardware.resolve(acc)
    dev = (A.codes if hasattr(A, "codes") else A).device
    _need(torch.empty(0, device=dev))
    fz = acc.fused
    if fz is None or acc.stochastic or acc.promote_every is not None or (
            acc.block_scales == "promotion"):
        raise NotImplementedError(f"the Triton matmul models fused adders with power-of-two "
                                  f"or group block scales, no stochastic rounding and no "
                                  f"promotion; {acc} needs lowprec_torch.matmul")
    if acc.block_scales == "group":
        res = torch.from_numpy(_group_matmul(A, B, acc, c, dev)).to(dev)
        return _results(res, acc, dtype)
    cf = acc.addend_format or acc.fmt
    if not (lp.holds(acc.fmt, np.float32) and lp.holds(cf, np.float32)):
        raise NotImplementedError(f"the Triton matmul rounds into formats float32 holds, not "
                                  f"{acc.fmt.name}")
    if (fz.n + 2) * 2.0 ** (fz.frac_bits + 3) >= 2.0**53:
        raise NotImplementedError("this fused adder's sums exceed 53 bits; use "
                                  "lowprec_torch.matmul")
    fa, fb = acc.input_formats
    if isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor) and not acc.fmt.has_nan:
        a64, b64 = to_numpy(A).astype(np.float64), to_numpy(B).astype(np.float64)
        shape = np.broadcast_shapes(a64.shape[:-2], b64.shape[:-2]) + (a64.shape[-2],
                                                                        b64.shape[-1])
        c64 = np.zeros(shape) if c is None else np.broadcast_to(np.asarray(
            c.detach().cpu() if isinstance(c, torch.Tensor) else c, np.float64), shape)
        _acc.check_operands(a64, b64, c64, acc)    # NaN sums: the core's refusal, same text
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
    _acc.check_values(cv, cf, "c")
    cb = torch.from_numpy(np.ascontiguousarray(cv.astype(np.float32)).view(np.int32)).to(dev)
    out = torch.empty((nb, M, N), dtype=torch.int32, device=dev)
    err = torch.empty((nb, M, N), dtype=torch.int32, device=dev)
    grid = (nb, triton.cdiv(M, TILE), triton.cdiv(N, TILE))
    _matmul_kernel[grid](t(sa), t(ea), t(fla), t(sb), t(eb), t(flb), cb, out, err, M, N, K, Kp,
                         **kernel_constants(acc, fa, fb))
    if bool(err.any()):
        raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN")
    return _results(out.view(torch.float32).reshape(ba + (M, N)), acc, dtype)


def _results(res, acc, dtype):
    """float32 results as the core returns them: one NaN (``Accumulator.nan``), +0 under
    ``positive_zero``, cast to ``dtype``."""
    from lowprec import accumulate as _acc  # noqa: PLC0415
    isnan = torch.isnan(res)
    res = torch.where(isnan, float("nan"), res)                     # the positive quiet NaN
    if acc.positive_zero:
        res = res + 0.0                                             # -0 + +0 = +0
    res = res if dtype is None else cast_keeping_nan_sign(res, dtype)
    code = _acc.nan_result_bits(acc.nan, 8 * res.element_size())    # or the unit's own NaN
    if code is None:
        return res
    it = {2: torch.int16, 4: torch.int32, 8: torch.int64}[res.element_size()]
    return torch.where(isnan, torch.tensor(code, dtype=it, device=res.device).view(res.dtype),
                       res)
