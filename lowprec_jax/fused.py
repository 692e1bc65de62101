"""The fused multi-term adder (docs/matrix-units.md §2) and the sequential float accumulator in
JAX: the same steps as the core's ``_fused_step`` / ``fused_matmul`` (lowprec/_accumulate.py and,
for small products, lowprec/_fused_small.py), run with ``lax.scan`` along K."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

import lowprec as lp
from lowprec import accumulate as _acc

from ._clz import clz
from .sums import (
    FLOOR,
    TRUNC,
    _INF,
    FIN,
    I64,
    INF,
    NAN,
    NEGZERO,
    QNAN,
    U32,
    U64,
    _align,
    _bits_odd,
    _f32_from_f64_bits,
    _f64_bits,
    _parts,
    _Rounder,
    _sum,
    _sum_odd,
    _zero,
)


def _any(t):
    """Any along the last axis, as a max of 0/1 integers (Triton has no boolean reductions)."""
    return jnp.max(t.astype(jnp.int32), axis=-1) > 0


def _fused_step(ta, tb, acc, fz, mab, c_emin, rnd, j, valid):
    """``_fused_step`` (lowprec/_accumulate.py) and ``_special_step`` on (..., n) product terms
    (views: signed significand, exponent, flag) and the running sums acc (...,)."""
    (sa, ea, fa), (sb, eb, fb) = ta, tb
    F, mode = fz.frac_bits, _acc.TERMS[fz.terms]
    p = jnp.where(valid & (fa == FIN) & (fb == FIN), sa * sb, I64(0))
    pe = ea + eb
    nzp = p != 0
    E = jnp.max(jnp.where(nzp, pe, I64(-(1 << 40))), axis=-1)
    am, ae, af = _parts(acc)
    acc_nz = am != 0
    if fz.sum_bits is not None:
        v = _floored_join(p, pe, nzp, am, ae, acc_nz, fz, mab, c_emin)
        nz = True
    elif fz.align_addend:
        accE = jnp.maximum(63 - clz(jnp.abs(am).astype(U64)).astype(I64) + ae, c_emin)
        E = jnp.where(acc_nz, jnp.maximum(E, accE), E)
    if fz.zero_exponent is not None and fz.sum_bits is None:   # a zero term: E >= it
        zero = _any(valid & ~nzp) | (~acc_nz if fz.align_addend else False)
        E = jnp.where(zero, jnp.maximum(E, I64(fz.zero_exponent)), E)
    if fz.sum_bits is None:
        nz = _any(nzp) | (acc_nz if fz.align_addend else False)
        S = jnp.sum(jnp.where(nzp, _align(p, F + pe - E[..., None] - mab, mode), I64(0)),
                    axis=-1)
        if fz.align_addend:
            S = S + jnp.where(acc_nz, _align(am, F + ae - E, mode), I64(0))
        v = jnp.where(S == 0, U64(0), _bits_odd(S < 0, jnp.abs(S), E - F))      # exact
        if not fz.align_addend:
            v = jnp.where(acc_nz, _sum_odd(v, acc, rnd.down), v)
        # no non-zero term: the addend alone, or a signed zero (-0 only if every term is -0)
        neg_p = ((sa < 0) | (fa == NEGZERO)) != ((sb < 0) | (fb == NEGZERO))
        all_neg = ~_any(~neg_p & valid) & (af == NEGZERO)
        v = jnp.where(nz, v, jnp.where(acc_nz, acc, _zero(all_neg)))
    # Inf and NaN (IEEE): NaN operand, 0 * Inf, or Inf - Inf give NaN
    nan_t = valid & ((fa == NAN) | (fb == NAN) | ((fa == INF) & (sb == 0)) |
                     ((fb == INF) & (sa == 0)))
    inf_t = valid & ~nan_t & ((fa == INF) | (fb == INF))
    if fz.inf_products:                                  # |p| >= 2^128 is +-Inf (CDNA3)
        msb = 63 - clz(jnp.where(nzp, jnp.abs(p), I64(1)).astype(U64)).astype(I64)
        inf_t = inf_t | (nzp & (msb + pe - mab >= 128))
    inf_pos = _any(inf_t & ((sa < 0) == (sb < 0)))
    inf_neg = _any(inf_t & ((sa < 0) != (sb < 0)))
    acc_inf = af == INF
    nan = _any(nan_t) | (inf_pos & inf_neg) | (af == NAN) | (
        acc_inf & (((am > 0) & inf_neg) | ((am < 0) & inf_pos)))
    v = jnp.where(inf_pos | inf_neg | acc_inf, jnp.where(
        acc_inf, acc, _INF | ((~inf_pos).astype(U64) << 63)), v)   # no constant >= 2^63:
    # Triton's lowering cannot hold one
    v = jnp.where(nan, QNAN, v)
    return rnd(v, j)


def _floored_join(p, pe, nzp, am, ae, acc_nz, fz, mab, c_emin):
    """``_floored_step`` (lowprec/_accumulate.py, ``FusedAdder.sum_bits``): the float64 bits
    of the products' sum and the addend am * 2^ae joined through floors (exact; the one
    rounding follows)."""
    F, F2, split = fz.frac_bits, fz.sum_bits, fz.split
    NONE = I64(-(1 << 40))
    pos = jnp.arange(p.shape[-1]) % split
    parts = []
    for r in range(split):
        sel = nzp & (pos == r)
        Er = jnp.max(jnp.where(sel, pe, NONE), axis=-1)
        parts.append((Er, jnp.sum(jnp.where(sel, _align(p, F + pe - Er[..., None] - mab, TRUNC),
                                            I64(0)), axis=-1)))
    Ed = parts[0][0]
    for Er, _ in parts[1:]:
        Ed = jnp.maximum(Ed, Er)
    Sd = I64(0)                                           # at scale 2^(Ed - F)
    for Er, Sr in parts:
        Sd = Sd + jnp.where(Er != NONE, Sr if split == 1 else _align(Sr, Er - Ed, FLOOR),
                            I64(0))
    msb = 63 - clz(jnp.where(acc_nz, jnp.abs(am), I64(1)).astype(U64)).astype(I64)
    ec = jnp.where(acc_nz, jnp.maximum(msb + ae, c_emin), I64(c_emin))
    e = jnp.maximum(Ed, ec)
    T = jnp.where(Ed != NONE, _align(Sd, Ed - F - (e - F2 - 1), FLOOR), I64(0))
    keep = acc_nz & ~(ec < e - F - 1) if fz.drop_small_addend else acc_nz
    T = T + jnp.where(keep, _align(am, ae - (e - F), FLOOR) << (F2 + 1 - F), I64(0))
    top = 63 - clz(jnp.where(T == 0, U64(1), jnp.abs(T).astype(U64))).astype(I64)
    sh = jnp.clip(jnp.maximum(top + e - F2 - 1, c_emin) - e + 1, 0, 62)
    T = (T >> sh) << sh
    return jnp.where(T == 0, U64(0), _bits_odd(T < 0, jnp.abs(T), e - F2 - 1))


def _view(b, fmt):
    """(signed significand, exponent, flag) of float64 bits as ``fmt`` sees them (value =
    sig * 2^(exp - man_bits), exp >= emin: ``lp.accumulate.sig_exp``), or the float32 view
    (24-bit significands) when fmt is None."""
    m, e, flag = _parts(b)
    a = jnp.abs(m)
    msb = 63 - clz(jnp.where(a == 0, U64(1), a.astype(U64))).astype(I64)
    E = msb + e                                           # floor(log2 |x|)
    man, emin = (23, -126) if fmt is None else (fmt.man_bits, fmt.emin)
    ex = jnp.maximum(E, emin)
    sh = (ex - man) - e                                   # sig = a >> sh (exact for members)
    sig = jnp.where(sh >= 0, a >> jnp.clip(sh, 0, 63), a << jnp.clip(-sh, 0, 63))
    sig = jnp.where(flag == INF, I64(1), jnp.where(a == 0, I64(0), sig))
    return jnp.where(m < 0, -sig, sig), ex, flag


def members(b, fmt):
    """Which float64 bit patterns ``b`` hold values of ``fmt`` (a FloatFormat; float32 where
    fmt is None): no bits below the format's last place at its exponent, within its range and
    sign. Inf and NaN pass, as ``lp.accumulate.check_values`` checks finite values only."""
    m, e, flag = _parts(b)
    a = jnp.abs(m)
    msb = 63 - clz(jnp.where(a == 0, U64(1), a.astype(U64))).astype(I64)
    man, emin = (23, -126) if fmt is None else (fmt.man_bits, fmt.emin)
    top = float(np.finfo(np.float32).max) if fmt is None else float(fmt.max)
    sh = (jnp.maximum(msb + e, emin) - man) - e          # bits of a below the last place
    low = a & ((I64(1) << jnp.clip(sh, 0, 62)) - 1)
    exact = (a == 0) | (sh <= 0) | ((sh < 63) & (low == 0))
    mag = jnp.abs(lax.bitcast_convert_type(b, jnp.float64))
    ok = exact & (mag <= top)
    if fmt is not None and not fmt.signed:
        ok = ok & (m >= 0)
    if fmt is not None and not fmt.has_neg_zero:         # fnuz, unsigned: no -0
        ok = ok & (flag != NEGZERO)
    if fmt is not None and not fmt.zero:
        ok = ok & (a != 0)
    return (flag == INF) | (flag == NAN) | ok


def _float_operands(A, B):
    """Validated float operands as float64 bits, A (nb, M, K) and B transposed (nb, N, K),
    and (batch, M, K, N)."""
    A, B = jnp.asarray(A), jnp.asarray(B)
    for x, name in ((A, "A"), (B, "B")):
        if x.dtype.name not in ("float16", "bfloat16", "float32", "float64"):
            raise TypeError(f"{name} must be a float array, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"{name} needs at least 2 dimensions, got shape {x.shape}")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"A's last dimension ({A.shape[-1]}) must equal B's second-to-last "
                         f"({B.shape[-2]})")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    batch = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
    nb = int(np.prod(batch, dtype=np.int64))
    A3 = jnp.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
    B3 = jnp.swapaxes(jnp.broadcast_to(B, batch + (K, N)), -1, -2).reshape(nb, N, K)
    return _f64_bits(A3), _f64_bits(B3), batch, M, K, N


def _finish(out, shape, res_fmt, dtype, acc=None):
    """float64 bits as float32 or float64 (or ``dtype``), every NaN made the core's NaN
    result (``lp.accumulate.nan_result_bits``: the positive quiet NaN, or all ones), every
    zero +0 under ``acc.positive_zero``."""
    nan = "quiet" if acc is None else acc.nan
    if acc is not None and acc.positive_zero:
        out = jnp.where((out & U64(0x7FFFFFFFFFFFFFFF)) == 0, U64(0), out)
    rdt = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if lp.holds(res_fmt, np.float32) else np.dtype(np.float64))
    if not lp.holds(res_fmt, rdt):
        raise ValueError(f"dtype={rdt} cannot hold every value of {res_fmt.name}")
    isnan = ((out & U64(0x7FFFFFFFFFFFFFFF)) > _INF).reshape(shape)
    out = jnp.where(isnan, QNAN, out.reshape(shape))
    if rdt == np.float64:
        res = lax.bitcast_convert_type(out, jnp.float64)
    else:
        res = lax.bitcast_convert_type(_f32_from_f64_bits(out), jnp.float32).astype(rdt)
    code = _acc.nan_result_bits(nan, 8 * rdt.itemsize)
    if code is None:
        return res
    ut = jnp.dtype(f"uint{8 * rdt.itemsize}")
    return lax.bitcast_convert_type(jnp.where(isnan, ut.type(code),
                                              lax.bitcast_convert_type(res, ut)), rdt)


def _outer(ta, tb):
    """Per-output operands: (nb, M, ...) and (nb, N, ...) term arrays broadcast to
    (nb * M * N, ...), formed one step at a time so that no (M, N, K) array exists."""
    nb, M, N = ta.shape[0], ta.shape[1], tb.shape[1]
    rest = ta.shape[2:]
    full = (nb, M, N) + rest
    return (jnp.broadcast_to(ta[:, :, None], full).reshape((nb * M * N,) + rest),
            jnp.broadcast_to(tb[:, None, :], full).reshape((nb * M * N,) + rest))


def _product(sa, ea, fa, sb, eb, fb):
    """float64 bits of the exact product of two float32 views (``_view(., None)``: 24-bit
    significands, so the product has at most 48 bits), IEEE signs, Inf and NaN (the positive
    quiet one)."""
    pm = sa * sb
    neg = (pm < 0) | ((pm == 0) & (((sa < 0) | (fa == NEGZERO)) != ((sb < 0) | (fb == NEGZERO))))
    p = jnp.where(pm == 0, _zero(neg), _bits_odd(neg, jnp.abs(pm), ea + eb - 46))
    fin = ((fa == FIN) | (fa == NEGZERO)) & ((fb == FIN) | (fb == NEGZERO))
    nan_p = ((fa == INF) & (sb == 0)) | ((fb == INF) & (sa == 0)) | (fa == NAN) | (fb == NAN)
    return jnp.where(fin, p, jnp.where(nan_p, QNAN, _INF | ((pm < 0).astype(U64) << 63)))


def _sequential(ab, bb, cb, rnd):
    """c, then each exact product added with one rounding (an FMA per step)."""
    along_k = lambda t: jnp.moveaxis(t, -1, 0)                    # noqa: E731  (K, nb, .)
    xs = [along_k(t) for t in (*_view(ab, None), *_view(bb, None))]

    def step(s, x):
        (sa, sb), (ea, eb), (fak, fbk) = (_outer(x[i], x[i + 3]) for i in range(3))
        vb, _ = rnd(_sum(s, _product(sa, ea, fak, sb, eb, fbk), rnd.down), x[6])
        return vb, None

    out, _ = lax.scan(step, cb, (*xs, jnp.arange(ab.shape[-1], dtype=U32)))
    return out


def _fused(acc, ta, tb, cb, rnd, n, mab):
    """Chained fused steps of n terms (``lowprec._accumulate.fused_matmul``) on the views ta
    (nb, M, K) and tb (nb, N, K) (significands of at most ``mab`` bits together)."""
    fz = acc.fused
    if (n + 2) * 2.0 ** (fz.frac_bits + 3) >= 2.0**53:
        raise NotImplementedError("this fused adder's sums exceed 53 bits; use lp.matmul")
    cf = acc.addend_format or acc.fmt
    if not fz.align_addend:
        rnd.check_odd_sum("an addend outside the alignment")
    K = ta[0].shape[-1]
    steps = max(1, math.ceil(K / n))
    pad = steps * n - K

    def to_steps(t):                                      # (nb, M, K) -> (steps, nb, M, n)
        t = jnp.pad(t, ((0, 0), (0, 0), (0, pad)))
        return jnp.moveaxis(t.reshape(t.shape[:2] + (steps, n)), 2, 0)
    ta = [to_steps(t) for t in ta]
    tb = [to_steps(t) for t in tb]
    valid = (jnp.arange(steps * n) < K).reshape(steps, 1, n)
    promote = acc.promote_every or 0
    k1 = np.minimum((np.arange(steps) + 1) * n, K)
    is_pro = (promote > 0) & ((k1 % max(promote, 1) == 0) | (k1 == K))
    j_step = np.arange(steps) + np.concatenate([[0], np.cumsum(is_pro)[:-1]])
    pro = acc.promote_to
    prnd = None
    if promote:
        if pro.stochastic:
            raise NotImplementedError("stochastic promotion needs lp.matmul")
        prnd = _Rounder(pro.fmt, pro.rounding, pro.overflow, pro.sr_bits, pro.sr_variant, None,
                        cb.shape[0])

    def step(carry, xs):
        accv, outer = carry
        terms = [_outer(xs[i], xs[i + 3]) for i in range(3)]
        vd, j, ip = xs[6:]
        accv, _ = _fused_step(tuple(t[0] for t in terms), tuple(t[1] for t in terms), accv,
                              fz, mab, cf.emin, rnd, j, vd)
        if promote:
            new_outer, _ = prnd(_sum(outer, accv, prnd.down), 0)
            outer = jnp.where(ip, new_outer, outer)
            accv = jnp.where(ip, U64(0), accv)
        return (accv, outer), None

    acc0 = jnp.zeros_like(cb) if promote else cb
    xs = (*ta, *tb, valid, jnp.asarray(j_step, U32), jnp.asarray(is_pro))
    (accv, outer), _ = lax.scan(step, (acc0, cb), xs)
    return outer if promote else accv
