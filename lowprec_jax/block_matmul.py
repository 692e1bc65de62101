"""``matmul`` of two ``QuantizedArray`` operands: ``block_scales`` "product" (power-of-two scale
exponents join each product's exponent), "group" (exact float64 sums of 16 scaled products, then
fused steps of group terms) and "promotion" (scales applied when each partial sum is promoted),
NVFP4 tensor scales in the epilogue D = round(alpha * acc + c), as ``lp.matmul``."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

import lowprec as lp
from lowprec import accumulate as _acc

from .blocks import TWO_LEVEL, QuantizedArray, _decode32, unblocked
from .fused import _finish, _float_operands, _fused, _outer, _product, _view
from .sums import FIN, I64, NAN, U32, U64, _f64_bits, _parts, _Rounder, _sum


def fused_operands(A, B, acc):
    """Views (signed significand, exponent, flag) of A (nb, M, K) and B (nb, N, K) as a fused
    adder sees them, float arrays of its input formats or ``QuantizedArray`` operands with
    power-of-two scales (each product's exponent includes both scale exponents), and
    (batch, M, K, N, significand bits of a product). Shared with ``lowprec_jax.pallas``."""
    if isinstance(A, QuantizedArray) or isinstance(B, QuantizedArray):
        ea, sa, eb, sb, batch, M, K, N = block_operands(A, B, acc)
        _check_pow2_scales(A, B)
        fa, fb = A.fmt.elem, B.fmt.elem
        ta = _to3(_scaled_views(ea, sa, fa), batch, M, K, False)
        tb = _to3(_scaled_views(eb, sb, fb), batch, K, N, True)
    else:
        ab, bb, batch, M, K, N = _float_operands(A, B)
        fa, fb = acc.input_formats
        ta, tb = _view(ab, fa), _view(bb, fb)
    return ta, tb, batch, M, K, N, fa.man_bits + fb.man_bits


def _check_pow2_scales(A, B):
    for q, name in ((A, "A"), (B, "B")):
        if q.fmt.scale_fmt.man_bits:
            raise ValueError(f"{name}'s block scales are not all powers of two "
                             f"({q.fmt.scale_fmt.name}); block_scales='product' needs "
                             "E8M0-style scales (use 'group')")


def _element_views(q):
    """(element values' float64 bits, per-element scale bits as float64) in q's shape."""
    bf = q.fmt
    ev = _decode32(q.codes, bf.elem)
    sv = jnp.broadcast_to(_decode32(q.scale_codes, bf.scale_fmt)[..., None], ev.shape)
    return (_f64_bits(unblocked(ev, q.shape, q.axis, bf)),
            _f64_bits(unblocked(sv, q.shape, q.axis, bf)))


def _scaled_views(ebits, sbits, elem):
    """Views of the elements with each power-of-two scale's exponent added to the exponent; a
    NaN (or non-positive) scale makes the term NaN (``_fused_from_parts`` (lowprec/accumulate.py))."""
    sig, ex, flag = _view(ebits, elem)
    m, e, f = _parts(sbits)
    bad = (f != FIN) | (m <= 0)
    return sig, ex + jnp.where(bad, I64(0), e + 52), jnp.where(bad, jnp.int8(NAN), flag)


def _to3(views, batch, rows, cols, swap):
    """(..., rows, cols) view arrays broadcast to the batch and flattened to (nb, ., .)
    (B transposed so that K is last)."""
    nb = int(np.prod(batch, dtype=np.int64))
    out = []
    for t in views:
        t = jnp.broadcast_to(t, batch + (rows, cols))
        t = jnp.swapaxes(t, -1, -2) if swap else t
        out.append(t.reshape((nb,) + t.shape[-2:]))
    return out


def block_operands(A, B, acc):
    """Two validated ``QuantizedArray`` operands (A blocked along K = its last axis, B along
    K = its second-to-last, or tiles) as (element bits, scale bits) of A and of B, each
    float64 bits in the operand's shape, and (batch, M, K, N)."""
    if not (isinstance(A, QuantizedArray) and isinstance(B, QuantizedArray)):
        raise TypeError("lowprec_jax.matmul takes two QuantizedArrays or two float arrays, "
                        "not a mix")
    if acc.fused is None:
        raise ValueError("block-scaled operands need a fused-adder accumulator (e.g. the "
                         "b200-mxf8f6f4 or b200-mxf4nvf4 presets)")
    na, nb_ = len(A.shape), len(B.shape)
    if na < 2 or nb_ < 2 or A.shape[-1] != B.shape[-2]:
        raise ValueError(f"QuantizedArray shapes {A.shape} and {B.shape} do not multiply")
    if A.fmt.tile is None and A.axis != na - 1:
        raise ValueError(f"A must be blocked along its last axis (K), not axis {A.axis}")
    if B.fmt.tile is None and B.axis != nb_ - 2:
        raise ValueError(f"B must be blocked along its second-to-last axis (K), not axis "
                         f"{B.axis}: quantize it with axis=-2")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    batch = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    ea, sa = _element_views(A)
    eb, sb = _element_views(B)
    return ea, sa, eb, sb, batch, M, K, N


def _block_matmul(A, B, acc, c, seed, dtype):
    """``_block_matmul`` (lowprec/accumulate.py) in JAX: ``block_scales`` "product" (power-of-two
    scales added to each product's exponent) and "group" (exact group sums times both
    scales); NVFP4's tensor scales in the epilogue D = round(alpha * acc + c)."""
    if acc.block_scales == "product":
        ta, tb, batch, M, K, N, mab = fused_operands(A, B, acc)
    else:
        ea, sa, eb, sb, batch, M, K, N = block_operands(A, B, acc)
    two_level = A.fmt.scale_rule in TWO_LEVEL or B.fmt.scale_rule in TWO_LEVEL
    if two_level and (acc.stochastic or not lp.holds(acc.fmt, np.float32)):
        raise NotImplementedError("the tensor-scale epilogue is modelled here for "
                                  "non-stochastic accumulators float32 holds; use lp.matmul")
    shape = batch + (M, N)
    n_out = int(np.prod(shape, dtype=np.int64))
    cb = jnp.zeros(shape, U64) if c is None else jnp.broadcast_to(
        _f64_bits(jnp.asarray(c)), shape)
    alpha = None
    if two_level:
        from . import _f32  # noqa: PLC0415
        t = [lax.bitcast_convert_type(jnp.asarray(q.tensor_scale, jnp.float32), U32)
             for q in (A, B)]
        alpha = _f32.mul(t[0], t[1])
    c_acc = cb if alpha is None else jnp.where(alpha == U32(0x3F800000), cb, U64(0))
    rnd = _Rounder(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, seed,
                   n_out)
    if acc.block_scales == "product":
        out = _fused(acc, ta, tb, c_acc.reshape(n_out), rnd, acc.fused.n, mab)
    elif acc.block_scales == "promotion":
        out = _promoted(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd)
    else:
        out = _grouped(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd)
    if alpha is not None:
        erb = _Rounder(acc.fmt, acc.rounding, acc.overflow, None, "srff", None, n_out)
        va = _view(_f64_bits(lax.bitcast_convert_type(alpha, jnp.float32)), None)
        vr = _view(out, None)
        d = erb(_sum(_product(*va, *vr), cb.reshape(n_out), erb.down), 0)[0]
        out = jnp.where(alpha == U32(0x3F800000), out, d)
    return _finish(out, shape, acc.fmt, dtype, acc)


def _promoted(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd):
    """``_promoted`` (lowprec/accumulate.py): each ``promote_every``-long interval's partial sum
    from the unscaled elements (the inner fused steps, from 0), then outer = round(s * partial
    + outer) with s = round(sA * sB), both in ``promote_to``'s format; outer starts at c."""
    import dataclasses  # noqa: PLC0415
    k, pro = acc.promote_every, acc.promote_to
    if k is None:
        raise ValueError("block_scales='promotion' needs promote_every=<k>")
    for q, name, along_k in ((A, "A", 1), (B, "B", 0)):
        run = q.fmt.k if q.fmt.tile is None else q.fmt.tile[along_k]
        if run % k and K > k:
            raise ValueError(f"block scales must be constant over each {k}-long promotion "
                             f"interval along K ({name}'s blocks are {run} long)")
    if pro.stochastic or not (lp.holds(pro.fmt, np.float32) and lp.holds(acc.fmt,
                                                                                np.float32)):
        raise NotImplementedError("promotion with block scales is modelled here for "
                                  "non-stochastic float32-held formats; use lp.matmul")
    inner = dataclasses.replace(acc, promote_every=None, promote_to=None,
                                block_scales="product")
    fa, fb = A.fmt.elem, B.fmt.elem
    ta = _to3(_view(ea, fa), batch, M, K, False)
    tb = _to3(_view(eb, fb), batch, K, N, True)
    sa3 = _to3((sa,), batch, M, K, False)[0]                       # (nb, M, K) scale bits
    sb3 = _to3((sb,), batch, K, N, True)[0]                        # (nb, N, K)
    prnd = _Rounder(pro.fmt, pro.rounding, pro.overflow, None, "srff", None, 1)
    outer = c_acc.reshape(-1)
    for k0 in range(0, K, k):
        part = _fused(inner, [t[..., k0:k0 + k] for t in ta], [t[..., k0:k0 + k] for t in tb],
                      jnp.zeros_like(outer), rnd, acc.fused.n, fa.man_bits + fb.man_bits)
        s1, s2 = _outer(sa3[..., k0:k0 + 1], sb3[..., k0:k0 + 1])
        scale = prnd(_product(*_view(s1[:, 0], None), *_view(s2[:, 0], None)), 0)[0]
        outer = prnd(_sum(_product(*_view(scale, None), *_view(part, None)), outer,
                          prnd.down), 0)[0]
    return outer


def _grouped(acc, A, B, ea, sa, eb, sb, batch, M, K, N, c_acc, rnd):
    """``_grouped`` (lowprec/accumulate.py): per step of n / group groups along K, the exact
    group sums times both scales aligned on the scales' exponents (``group_step``,
    lowprec/group_step.py, run here on jax.numpy), truncated to F bits, summed exactly and
    rounded once; steps chain along K."""
    from lowprec.group_step import E_ZERO, group_step  # noqa: PLC0415
    from ._clz import clz  # noqa: PLC0415
    from .sums import INF, QNAN, _align, _bits_odd  # noqa: PLC0415
    g = acc.group
    _acc.check_group_sums_exact(A.fmt, B.fmt, g)
    if K % g or acc.fused.n % g:
        raise ValueError(f"K={K} and the fused adder's n={acc.fused.n} must be multiples of "
                         f"group={g}")
    for q, name, along_k in ((A, "A", 1), (B, "B", 0)):
        run = q.fmt.k if q.fmt.tile is None else q.fmt.tile[along_k]
        if run % g:
            raise ValueError(f"{name}'s blocks ({run} along K) do not hold whole groups of {g}")
    G = K // g
    f64 = lambda b: lax.bitcast_convert_type(b, jnp.float64)  # noqa: E731
    ga = f64(ea).reshape(ea.shape[:-1] + (G, g))                             # (..., M, G, g)
    gb = jnp.moveaxis(f64(eb).reshape(eb.shape[:-2] + (G, g, N)), -1, -3)   # (..., N, G, g)
    T = jnp.einsum("...mgk,...ngk->...mng", ga, gb, precision="highest")   # exact sums
    count = jnp.einsum("...mgk,...ngk->...mng", (ga != 0).astype(jnp.float64),
                       (gb != 0).astype(jnp.float64), precision="highest")
    fa, fb = A.fmt.elem, B.fmt.elem
    q = (fa.emin - fa.man_bits) + (fb.emin - fb.man_bits)
    m = jnp.round(T * 2.0 ** -q).astype(I64)              # in units of the smallest product
    sfa, sfb = A.fmt.scale_fmt, B.fmt.scale_fmt
    SA, XA, FA = _view(sa.reshape(sa.shape[:-1] + (G, g))[..., 0], sfa)        # (..., M, G)
    SB, XB, FB = _view(jnp.swapaxes(sb.reshape(sb.shape[:-2] + (G, g, N))[..., 0, :], -1, -2),
                       sfb)                                                     # (..., N, G)
    sig = SA[..., :, None, :] * SB[..., None, :, :]
    label = XA[..., :, None, :] + XB[..., None, :, :]
    label = jnp.where((count == 0) | (sig == 0), I64(E_ZERO), label)
    bad = (FA == NAN)[..., :, None, :] | (FB == NAN)[..., None, :, :]
    full = batch + (M, N, G)
    m, sig, label, bad = (jnp.broadcast_to(v, full).reshape(-1, G) for v in (m, sig, label,
                                                                            bad))
    mab = sfa.man_bits + sfb.man_bits - q
    F = acc.fused.frac_bits
    cf = acc.addend_format or acc.fmt
    accv = c_acc.reshape(-1)
    per = acc.fused.n // g
    for j, k0 in enumerate(range(0, G, per)):
        sl = slice(k0, k0 + per)
        am, ae, af = _parts(accv)
        fin = (af != INF) & (af != NAN)
        cm = jnp.where(fin, am, I64(0))
        msb = 63 - clz(jnp.where(cm == 0, U64(1), jnp.abs(cm).astype(U64))).astype(I64)
        c_label = jnp.where(cm != 0, jnp.maximum(msb + ae, cf.emin), I64(E_ZERO))
        S, E = group_step(m[:, sl], sig[:, sl], label[:, sl], cm, ae, c_label, F, mab,
                          xp=jnp, align=_align)
        v = jnp.where(S == 0, U64(0), _bits_odd(S < 0, jnp.abs(S), E - F))   # exact
        v = jnp.where(jnp.any(bad[:, sl], axis=-1) | (af == NAN), QNAN, jnp.where(fin, v, accv))
        accv = rnd(v, j)[0]
    return accv
