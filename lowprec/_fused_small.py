"""The fused multi-term adder (docs/matrix-units.md §2) in NumPy for small products: no compiled
kernel, every output element at once, one step along K at a time.

The same steps under the same names as ``lowprec._accumulate.fused_matmul`` / ``_fused_step``
(the Numba kernels that serve large products): products exact, aligned to the largest exponent
E, each kept to F fraction bits (``_align``), summed exactly (below 2^53), scaled by 2^(E - F)
and rounded once by the array-API step (``lowprec.xstep``); an addend outside the alignment is
added exactly and rounded once (``lowprec._exact_int``). Steps whose operands or running sum
hold Inf or NaN are left to the compiled kernel (``fused_small`` returns None).
"""
from __future__ import annotations

import numpy as np

from . import xstep
from ._exact_int import ADD, arith_small

TRUNC, FLOOR, NEAREST = 0, 1, 2          # as lowprec._accumulate


def _align(p, sh, mode):
    """p * 2^sh rounded to an integer (p signed int64, |p| < 2^62): truncation toward zero,
    floor, or nearest-even; the same steps as the compiled ``_accumulate._align``: k = -sh low
    bits (none when sh >= 0, at most 62) shifted out, then a shift left by max(sh, 0)."""
    k = (-sh).clip(0, 62)
    if mode == TRUNC:                    # a negative p gains 2^k - 1: the shift truncates
        q = (p + ((p >> 63) & ((np.int64(1) << k) - 1))) >> k
    elif mode == FLOOR:
        q = p >> k
    else:
        a = np.abs(p)
        q = a >> k
        rem = a & ((np.int64(1) << k) - 1)
        half = (np.int64(1) << k) >> 1
        q = q + ((k > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1))))
        q = np.where(p < 0, -q, q)
    return q << sh.clip(0, 62)


def _exponent(x, emin):
    """max(floor(log2|x|), emin) for finite nonzero float64 x."""
    return np.maximum(np.frexp(np.abs(x))[1].astype(np.int64) - 1, emin)


def _sig_exp(x):
    """(signed integer m, e) with x = m * 2^e for finite float64 x."""
    b = x.view(np.int64)
    ew = (b >> 52) & 0x7FF
    m = (b & ((1 << 52) - 1)) | ((ew != 0).astype(np.int64) << 52)
    return np.where(b < 0, -m, m), np.maximum(ew, 1) - 1075


def _words(seed, o, j):
    """(hi, lo) of the word of rounding j of output elements o: Philox4x32-10 keyed by the
    seed at counter (o_lo, o_hi, j, 1); words 0 | 1 << 32."""
    z = np.full_like(o, j)
    w = xstep.philox(o & xstep.M32, o >> 32, z, np.ones_like(o), seed & xstep.M32, seed >> 32)
    return w[1], w[0]


def _round_value(x, plan, R):
    """x (float64) rounded once into the plan's format: (value, code)."""
    code, vb = xstep.round_bits(np, x.view(np.int64), *R, plan)
    return vb.view(np.float64), code


def _round_sum(x, y, plan, R):
    """x + y (float64) rounded once into the plan's format: (value, code)."""
    code, vb = arith_small(ADD, x.view(np.uint64), y.view(np.uint64), x.view(np.uint64), plan,
                           *R)
    return vb.view(np.float64), code


def _floored_join(p, pe, acc, F, mab, c_emin, F2, split, drop):
    """``_accumulate._floored_step`` for every output at once: p (..., L) exact products, pe
    their exponents, acc (...) the addend; the float64 value before the one rounding."""
    NONE = -(1 << 40)
    pos = np.arange(p.shape[-1]) % split
    nzp = p != 0
    Es, Ss = [], []
    for r in range(split):
        sel = nzp & (pos == r)
        Er = np.max(np.where(sel, pe, NONE), axis=-1)
        Es.append(Er)
        Ss.append(np.sum(np.where(sel, _align(p, F + pe - Er[..., None] - mab, TRUNC), 0),
                         axis=-1))
    Ed = np.max(Es, axis=0)
    Sd = sum(np.where(Er != NONE, Sr if split == 1 else _align(Sr, Er - Ed, FLOOR), 0)
             for Er, Sr in zip(Es, Ss))                      # at scale 2^(Ed - F)
    acc_nz = acc != 0
    ec = np.where(acc_nz, _exponent(np.where(acc_nz, acc, 1.0), c_emin), c_emin)
    e = np.maximum(Ed, ec)
    T = np.where(Ed != NONE, _align(Sd, Ed - F - (e - F2 - 1), FLOOR), 0)   # 2^(e - F2 - 1)
    m, ce = _sig_exp(np.where(acc_nz, acc, 0.0))
    keep = acc_nz & ~(drop & (ec < e - F - 1))
    T = T + np.where(keep, _align(m, ce - (e - F), FLOOR) << (F2 + 1 - F), 0)
    top = np.frexp(np.abs(T).astype(np.float64))[1].astype(np.int64) - 1
    sh = (np.maximum(top + e - F2 - 1, c_emin) - e + 1).clip(0, 62)
    T = np.where(T != 0, (T >> sh) << sh, 0)
    return np.ldexp(T.astype(np.float64), (e - F2 - 1).clip(-2000, 2000).astype(np.int32))


def fused_small(SA, EA, FA, SB, EB, FB, C, n_terms, F, zero_exp, align_c, mode, mab, c_emin,
                plan,
                promote, plan_pro, seed, join=(None, 1, False, False)):
    """``_accumulate.fused_matmul`` on (nb, M, K) / (nb, N, K) significands and exponents:
    (float64 outputs (nb, M, N), count of results the format cannot hold), or None where an
    Inf or NaN appears (the compiled kernel handles those). ``join``: the FusedAdder's
    (sum_bits, split, drop_small_addend, inf_products)."""
    finite = lambda f: np.all((f == 0) | (f == 3))  # noqa: E731  (finite or -0)
    if not (finite(FA) and finite(FB) and np.all(np.isfinite(C))):
        return None
    nb, M, K = SA.shape
    N = SB.shape[1]
    sa, ea, na = SA[:, :, None, :], EA[:, :, None, :], (SA < 0) | (FA == 3)
    sb, eb, nbg = SB[:, None, :, :], EB[:, None, :, :], (SB < 0) | (FB == 3)
    neg_prod = na[:, :, None, :] != nbg[:, None, :, :]
    o = np.arange(nb * M * N, dtype=np.int64).reshape(nb, M, N)
    sr = plan.stochastic                   # as the compiled kernel: words only when the
    zero_words = (np.zeros(nb * M * N, np.int64),) * 2       # accumulator itself is stochastic
    outer = C.astype(np.float64)
    acc = np.zeros_like(outer) if promote > 0 else outer.copy()
    nerr = 0
    j = 0
    none = (None, None)
    for k0 in range(0, K, n_terms):
        k1 = min(k0 + n_terms, K)
        R = tuple(w.ravel() for w in _words(seed, o, j)) if sr else none
        j += 1
        p = sa[..., k0:k1] * sb[..., k0:k1]
        pe = ea[..., k0:k1] + eb[..., k0:k1]
        if join[0] is not None:
            if join[3] and np.any(np.frexp(np.abs(p).astype(np.float64))[1] - 1 + pe - mab
                                  >= 128):
                return None                     # an Inf product: the compiled kernel's case
            v = _floored_join(p, pe, acc, F, mab, c_emin, join[0], join[1], join[2])
            val, code = _round_value(v.ravel(), plan, R)
            nerr += int(np.sum(code == xstep.NO_CODE))
            acc = val.reshape(acc.shape)
            if not np.all(np.isfinite(acc)):
                return None
            continue
        nzp = p != 0
        E = np.max(np.where(nzp, pe, -(1 << 40)), axis=-1)
        nz = np.any(nzp, axis=-1)
        acc_nz = acc != 0
        if align_c:
            E = np.where(acc_nz, np.maximum(E, _exponent(np.where(acc_nz, acc, 1.0), c_emin)),
                         E)
        if zero_exp is not None:               # a zero term: E at least zero_exponent
            zero = ~np.all(nzp, axis=-1) | (~acc_nz if align_c else False)
            E = np.where(zero, np.maximum(E, zero_exp), E)
        if align_c:
            nz = nz | acc_nz
        S = np.sum(np.where(nzp, _align(p, F + pe - E[..., None] - mab, mode), 0), axis=-1)
        if align_c:
            m, e = _sig_exp(acc)
            S = S + np.where(acc_nz, _align(m, F + e - E, mode), 0)
        v = np.ldexp(S.astype(np.float64), (E - F).clip(-2000, 2000).astype(np.int32))
        # every product a zero: the addend, or a zero that is -0 only if every term is
        neg0 = np.signbit(acc) & np.all(neg_prod[..., k0:k1], axis=-1)
        v = np.where(nz, v, np.where(acc_nz, acc, np.where(neg0, -0.0, 0.0)))
        exact_sum = nz & ~(align_c | ~acc_nz)            # the addend added after the terms
        val, code = _round_value(v.ravel(), plan, R)
        if np.any(exact_sum):
            i = exact_sum.ravel()
            val2, code2 = _round_sum(v.ravel()[i], acc.ravel()[i], plan,
                                     tuple(r[i] for r in R) if sr else none)
            val, code = val.copy(), code.copy()
            val[i], code[i] = val2, code2
        nerr += int(np.sum(code == xstep.NO_CODE))
        acc = val.reshape(acc.shape)
        if not np.all(np.isfinite(acc)):
            return None
        if promote > 0 and (k1 % promote == 0 or k1 == K):
            R = tuple(w.ravel() for w in _words(seed, o, j)) if sr else zero_words
            j += 1
            val, code = _round_sum(outer.ravel(), acc.ravel(), plan_pro, R)
            nerr += int(np.sum(code == xstep.NO_CODE))
            outer = val.reshape(outer.shape)
            acc = np.zeros_like(acc)
            if not np.all(np.isfinite(outer)):
                return None
    return (outer if promote > 0 else acc), nerr
