"""Numba kernels behind ``lp.matmul``: one output element = one dot product of a row of A with
a column of B (both float64 arrays of values whose significands have at most 26 bits, so
every product a*b is exact in float64), plus the addend c.

* ``program_matmul``: a floating-point accumulator that adds in a fixed order, given as a
  postfix program (leaf k = product k, -1 = c, -2 = add the top two); every addition is the
  exact sum rounded once into the accumulator format (``_round_sum``).
* ``fused_matmul``: a fused multi-term adder (docs/matrix-units.md) chained along K, with optional
  promotion of each k-product partial sum into a wider accumulator.
* ``exact_matmul``: the exact sum of all products and c (a long fixed-point accumulator),
  rounded once, or once per ``block`` products (AMD CDNA1 MFMA).
* ``fma64_matmul``: float64 inputs (products of up to 106 bits): a chain of IEEE float64
  fused multiply-adds, the one case where products are not exact in float64.
* ``int_matmul``: P-bit integer accumulation that wraps or saturates per addition.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from numba.extending import intrinsic

from ._exact import _ONE, _fma, _normal, _round_exact, _round_special
from ._fast import _as, _fast, _general
from ._kernels import CODE_BASE, ERR, I64, KIND, KIND_SIGNMAG, U64, philox4x32, _round_bits

_CALL = dict(nogil=True, cache=True)
_INLINE = dict(nogil=True, cache=True, inline="always")
U32 = np.uint32
LEAF_C, ADD = -1, -2
TRUNC, FLOOR, NEAREST = 0, 1, 2
NO_EXP = -(1 << 40)          # FusedAdder.zero_exponent=None in the parameter array


TILE = 16             # outputs are computed in TILE x TILE tiles: a tile's rows of A and
                      # columns of B stay in cache while its outputs are formed


@nb.njit(**_INLINE)
def _n_tiles(nb_, M, N):
    """The number of output tiles of an (nb_, M, N) result."""
    return nb_ * ((M + TILE - 1) // TILE) * ((N + TILE - 1) // TILE)


@nb.njit(**_INLINE)
def _tile(t, M, N):
    """(b, m0, m1, n0, n1): tile t's batch index and its output rows m0..m1-1, columns
    n0..n1-1 (output o = (b * M + m) * N + n keeps its number, and so its random words)."""
    tm, tn = (M + TILE - 1) // TILE, (N + TILE - 1) // TILE
    b, r = t // (tm * tn), t % (tm * tn)
    m0, n0 = (r // tn) * TILE, (r % tn) * TILE
    return b, m0, min(m0 + TILE, M), n0, min(n0 + TILE, N)


@nb.njit(**_CALL)
def _word(seed, o, j):
    """Random word of rounding ``j`` of output element ``o``: Philox4x32-10 keyed by the seed
    at counter (o_lo, o_hi, j, 1); words 0 | 1 << 32."""
    w0, w1, _, _ = philox4x32(U32(o), U32(U64(o) >> U64(32)), U32(j), U32(1),
                              U32(seed), U32(U64(seed) >> U64(32)))
    return U64(w0) | (U64(w1) << U64(32))


@nb.njit(**_CALL)
def _round_value(x, rw, P):
    """x (float64) rounded once into P's format; (value, code). Signed float formats with a
    zero take the branch-light ``_fast._fast`` where it applies (as ``lp.round`` does)."""
    b = _as(x, U64(0))
    if P[KIND] == KIND_SIGNMAG and P[CODE_BASE] == 0 and not _general(b, P, U64):
        vb, c = _fast(b, rw, P, np.float64, U64)
        return _as(vb, np.float64(0)), I64(c)
    code, vb = _round_bits(_as(x, I64(0)), rw, P)
    return _as(vb, np.float64(0)), code


@nb.njit(**_INLINE)
def _two_sum(x, y):
    """(s, err): s = x + y rounded to nearest-even and err = x + y - s exactly, for finite
    float64 x, y whose sum does not overflow (Knuth's TwoSum; exact with subnormals too)."""
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


@nb.njit(**_INLINE)
def _to_odd(s, err):
    """s + err rounded to odd at float64's 53 bits, where s + err lies strictly between s and
    s's neighbour on err's side (as for s the nearest rounding of s + err): s when err is 0,
    else the one of s and that neighbour whose last bit is odd."""
    if err == 0:
        return s
    sb = _as(s, I64(0))
    if (err < 0) != (s < 0):                         # |s| > |s + err|: one code toward zero
        sb -= 1
    return _as(sb | I64(1), np.float64(0))


@nb.njit(**_CALL)
def _round_sum(x, y, rw, P, odd_ok):
    """x + y (float64) rounded once into P's format. ``odd_ok`` (deterministic modes, formats
    of at most 51 mantissa bits): the float64 sum rounded to odd carries every bit the final
    rounding needs (Boldo & Melquiond 2008), so two float operations replace the exact path."""
    s = x + y
    if odd_ok and s != 0 and math.isfinite(s):
        s, err = _two_sum(x, y)
        return _round_value(_to_odd(s, err), rw, P)
    r = _fma(_as(x, I64(0)), _ONE, _as(y, I64(0)), True, P)
    special, bits, sg, H, L, st, T = r
    if special:
        code, vb = _round_special(bits, rw, P)
    else:
        code, vb = _round_exact(sg, H, L, st, T, rw, P)
    return _as(vb, np.float64(0)), code


@nb.njit(cache=True, parallel=True)
def program_matmul(A, Bt, C, prog, depth, P, Pprod, round_prod, odd_ok, sr, seed, tiny, out,
                   errs):
    """out[b, m, n] = the program's sum of A[b, m, k] * Bt[b, n, k] and C[b, m, n]. ``tiny``
    > 0 (``Accumulator.ftz``): every product and every sum of magnitude below it becomes a
    zero of its sign."""
    nb_, M, K = A.shape
    N = Bt.shape[1]
    nerr = 0
    for o in nb.prange(nb_ * M * N):
        b, rest = o // (M * N), o % (M * N)
        m, n = rest // N, rest % N
        stack = np.empty(depth, dtype=np.float64)
        top = 0
        j = 0
        bad = 0
        for op in prog:
            if op == ADD:
                rw = _word(seed, o, j) if sr else U64(0)
                j += 1
                v, code = _round_sum(stack[top - 2], stack[top - 1], rw, P, odd_ok)
                if abs(v) < tiny:
                    v = math.copysign(0.0, v)
                bad += code == ERR
                top -= 1
                stack[top - 1] = v
            else:
                if op == LEAF_C:
                    v = C[b, m, n]
                else:
                    v = A[b, m, op] * Bt[b, n, op]
                    if round_prod:
                        rw = _word(seed, o, j) if sr else U64(0)
                        j += 1
                        v, code = _round_value(v, rw, Pprod)
                        bad += code == ERR
                    if abs(v) < tiny:
                        v = math.copysign(0.0, v)
                stack[top] = v
                top += 1
        out[b, m, n] = stack[0]
        nerr += bad
    errs[0] = nerr


@nb.njit(cache=True, parallel=True)
def sequential_matmul(A, Bt, C, P, f32_rne, odd_ok, sr, seed, out, errs):
    """``program_matmul`` for the sequential order with exact products (an FMA per step),
    without the interpreter. ``f32_rne``: the IEEE float32 accumulator with nearest-even,
    where the float64 sum rounded to odd then converted to float32 is the one rounding."""
    nb_, M, K = A.shape
    N = Bt.shape[1]
    nerr = 0
    for o in nb.prange(nb_ * M * N):
        b, rest = o // (M * N), o % (M * N)
        m, n = rest // N, rest % N
        a, bt = A[b, m], Bt[b, n]
        s = C[b, m, n]
        bad = 0
        if f32_rne:
            for k in range(K):
                s = _f32_add(s, a[k] * bt[k])
        else:
            for k in range(K):
                rw = _word(seed, o, k) if sr else U64(0)
                s, code = _round_sum(s, a[k] * bt[k], rw, P, odd_ok)
                bad += code == ERR
        out[b, m, n] = s
        nerr += bad
    errs[0] = nerr


@intrinsic
def _fma64(typingctx, x, y, z):
    """x * y + z rounded once to nearest-even float64: LLVM's ``llvm.fma.f64`` (the FMA
    instruction, or the C library's correctly rounded fma where the CPU has none)."""
    from numba.core import types  # noqa: PLC0415
    if not all(t == types.float64 for t in (x, y, z)):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@nb.njit(cache=True, parallel=True)
def fma64_matmul(A, Bt, C, out):
    """out[b, m, n] = c, then c = fma(A[b, m, k], Bt[b, n, k], c) for k = 0, 1, ...: the
    float64 matrix instructions (NVIDIA ``mma`` f64, AMD ``v_mfma`` f64) as MMA-Sim models
    them (``arithmetic/fma.py``)."""
    nb_, M, K = A.shape
    N = Bt.shape[1]
    for o in nb.prange(nb_ * M * N):
        b, rest = o // (M * N), o % (M * N)
        m, n = rest // N, rest % N
        s = C[b, m, n]
        for k in range(K):
            s = _fma64(A[b, m, k], Bt[b, n, k], s)
        out[b, m, n] = s


@nb.njit(nogil=True, cache=True, inline="always")
def _f32_add(x, y):
    """float32(x + y) rounded once to nearest-even: TwoSum, round to odd in float64, then one
    float64 -> float32 conversion (exact sums and specials pass straight through)."""
    s = x + y
    if s != 0 and math.isfinite(s):
        s, err = _two_sum(x, y)
        s = _to_odd(s, err)
    elif s == 0 and x == 0 and y == 0:
        s = x + y                                       # IEEE signed-zero sum
    return np.float64(np.float32(s))


F32_RNE, F32_RZ, F32_RZ_INF = 1, 2, 3    # prm[10]: a float32 output one conversion rounds
NARROW_RNE = 4                           # prm[10]: an IEEE-style output (_narrow_rne)


@nb.njit(**_INLINE)
def _f32_out(v, how):
    """An exact float64 v rounded once to float32: ``F32_RNE`` the IEEE conversion itself;
    ``F32_RZ`` toward zero: the conversion, stepped one code toward zero where it went past v
    (RNE's result lies within one code of RZ's; from Inf the step gives the largest finite
    value, IEEE's RZ overflow); ``F32_RZ_INF``: the same, but |v| >= 2^128 (an overflow of the
    truncated result) gives Inf (``overflow="inf_always"``)."""
    f = np.float32(v)
    if how == F32_RNE:
        return np.float64(f)
    if how == F32_RZ_INF and abs(v) >= 2.0 ** 128:
        return np.inf if v > 0 else -np.inf
    past = np.int32(abs(np.float64(f)) > abs(v))     # no branch: RNE passes v half the time
    return np.float64(_as(np.int32(_as(f, np.int32(0)) - past), np.float32(0)))


@nb.njit(**_INLINE)
def _narrow_rne(v, man, emin, vmax):
    """An exact float64 v (|v| < 2^1000) rounded once to nearest-even into an IEEE-style format
    of ``man`` fraction bits, exponents >= ``emin``, largest value ``vmax`` (beyond: Inf). The
    quantum is Q = 2^(max(e, emin) - man) for e = floor(log2|v|); v + 1.5 * 2^52 * Q lies in a
    binade whose spacing is Q, so that one float64 addition rounds v to a multiple of Q (ties to
    even) and the subtraction is exact. A result of zero takes v's sign."""
    e = _exponent(v, emin) if v != 0 else emin
    c = _as((e - man + 52 + 1023) << 52 | (I64(1) << 51), np.float64(0))
    r = abs((v + c) - c)
    return math.copysign(r if r <= vmax else np.inf, v)


@nb.njit(**_INLINE)
def _align(p, sh, mode):
    """p * 2^sh rounded to an integer (p signed, |p| < 2^62): truncation toward zero, floor, or
    nearest-even, as a fused adder keeps F fraction bits. The k = -sh low bits (none when
    sh >= 0) are shifted out, the result shifted left by max(sh, 0); without branches for
    truncation (a negative p first gains 2^k - 1, so the arithmetic shift rounds toward zero)
    and floor (the arithmetic shift itself). k is capped at 62, past every |p|."""
    k = min(max(-sh, 0), 62)
    if mode == TRUNC:
        q = (p + ((p >> 63) & ((I64(1) << k) - 1))) >> k
    elif mode == FLOOR:
        q = p >> k
    else:
        a = -p if p < 0 else p
        q = a >> k
        rem = a & ((I64(1) << k) - 1)
        half = (I64(1) << k) >> 1
        if k > 0 and (rem > half or (rem == half and (q & 1) == 1)):
            q += 1
        q = -q if p < 0 else q
    return q << max(sh, 0)


@nb.njit(**_INLINE)
def _exponent(x, emin):
    """max(floor(log2|x|), emin) for a finite nonzero float64 x."""
    e = ((_as(x, I64(0)) >> 52) & 0x7FF) - 1023
    if e == -1023:                                   # float64 subnormal
        e = I64(math.frexp(x)[1]) - 1
    return max(e, emin)


@nb.njit(**_INLINE)
def _sig_exp(x):
    """(signed integer m, e) with x = m * 2^e for a finite float64 x."""
    b = _as(x, I64(0))
    ew = (b >> 52) & 0x7FF
    m = (b & ((I64(1) << 52) - 1)) | (I64(ew != 0) << 52)
    e = max(ew, I64(1)) - 1075
    return (-m if b < 0 else m), e


@nb.njit(**_INLINE)
def _fused_step(SA, EA, SB, EB, SPA, SPB, k0, k1, acc, prm, P, rw):
    """One fused dot-add step over products k0..k1-1 with addend ``acc``: products exact,
    aligned to the largest exponent E (products' e_a + e_b, and acc's when it joins the
    alignment), each kept to F fraction bits below E, summed exactly, normalised and rounded
    once into P's format (the addend added exactly first when it is not aligned)."""
    F, align_c, mode, mab, c_emin = prm[0], prm[1], prm[2], prm[3], prm[4]
    E = I64(-(1 << 40))
    nz = False
    zero = align_c and acc == 0                       # a zero term in the alignment
    for k in range(k0, k1):
        if SA[k] != 0 and SB[k] != 0:
            E = max(E, EA[k] + EB[k])
            nz = True
        else:
            zero = True
    if align_c and acc != 0:
        E = max(E, _exponent(acc, c_emin))
        nz = True
    if zero:                                          # zero_exponent (NO_EXP: none)
        E = max(E, prm[9])
    if not nz:                                        # every product is a zero
        if acc != 0:
            return _round_value(acc, rw, P)
        neg = math.copysign(1.0, acc) < 0             # -0 only if every term is -0
        for k in range(k0, k1):
            neg = neg and ((SA[k] < 0 or SPA[k] == 3) != (SB[k] < 0 or SPB[k] == 3))
        return _round_value(-0.0 if neg else 0.0, rw, P)
    S = I64(0)
    for k in range(k0, k1):
        p = SA[k] * SB[k]
        if p != 0:
            S += _align(p, F + EA[k] + EB[k] - E - mab, mode)
    if align_c and acc != 0:
        m, e = _sig_exp(acc)
        S += _align(m, F + e - E, mode)
    x = E - F                                         # v exact: |S| < 2^53
    if -1022 <= x <= 1023:
        v = np.float64(S) * _as((x + 1023) << 52, np.float64(0))
    else:
        v = math.ldexp(np.float64(S), x)
    if align_c or acc == 0:
        if prm[10] == NARROW_RNE and abs(v) < 2.0 ** 1000:
            return _narrow_rne(v, prm[11], prm[12], _as(prm[13], np.float64(0))), I64(0)
        if 0 < prm[10] < NARROW_RNE:    # float32: one IEEE conversion of v (_f32_out)
            return _f32_out(v, prm[10]), I64(0)
        return _round_value(v, rw, P)
    return _round_sum(v, acc, rw, P, False)


@nb.njit(**_INLINE)
def _msb(p):
    """floor(log2 |p|) of a nonzero int64 below 2^53 in magnitude (exact through float64)."""
    a = -p if p < 0 else p
    return ((_as(np.float64(a), I64(0)) >> 52) & 0x7FF) - 1023


@nb.njit(**_INLINE)
def _floored_step(SA, EA, SB, EB, k0, k1, acc, prm, P, rw):
    """``FusedAdder(sum_bits=...)``: the products at step positions i mod ``split`` truncated to
    F bits below their own largest exponent and summed; those sums floored to F bits below
    their joint largest E; with e = max(E, exponent of c): the products' sum floored to
    F2 + 1 fraction bits below e, c floored to F bits below e (zero when ``drop`` and c lies
    more than F + 1 binades below e), both added exactly, normalised (exponent >= c's emin),
    floored to F2 fraction bits and rounded once (MMA-Sim's CDNA3 ``tr_fdpa`` /
    ``gtr_fdpa``)."""
    F, mab, c_emin, F2, split, drop = prm[0], prm[3], prm[4], prm[5], prm[6], prm[7]
    NONE = I64(-(1 << 40))
    E0, E1, S0, S1 = NONE, NONE, I64(0), I64(0)       # split <= 2: no allocation per step
    if split == 1:
        for k in range(k0, k1):
            if SA[k] != 0 and SB[k] != 0:
                E0 = max(E0, EA[k] + EB[k])
        for k in range(k0, k1):
            p = SA[k] * SB[k]
            if p != 0:
                S0 += _align(p, F + EA[k] + EB[k] - E0 - mab, TRUNC)
    else:                                             # split == 2: even and odd positions
        for k in range(k0, k1):
            if SA[k] != 0 and SB[k] != 0:
                if (k - k0) & 1 == 0:
                    E0 = max(E0, EA[k] + EB[k])
                else:
                    E1 = max(E1, EA[k] + EB[k])
        for k in range(k0, k1):
            p = SA[k] * SB[k]
            if p != 0:
                if (k - k0) & 1 == 0:
                    S0 += _align(p, F + EA[k] + EB[k] - E0 - mab, TRUNC)
                else:
                    S1 += _align(p, F + EA[k] + EB[k] - E1 - mab, TRUNC)
    if prm[8] and max(E0, E1) >= 127:                 # inf_products: |p| >= 2^128 is +-Inf
        inf_pos, inf_neg = False, False
        for k in range(k0, k1):
            p = SA[k] * SB[k]
            if p != 0 and _msb(p) + EA[k] + EB[k] - mab >= 128:
                if p > 0:
                    inf_pos = True
                else:
                    inf_neg = True
        if inf_pos or inf_neg:
            return _round_value(np.nan if inf_pos and inf_neg else
                                np.inf if inf_pos else -np.inf, rw, P)
    Ed = max(E0, E1)
    Sd = S0                                           # at scale 2^(Ed - F)
    if split > 1:
        Sd = _align(S0, E0 - Ed, FLOOR) if E0 != NONE else I64(0)
        if E1 != NONE:
            Sd += _align(S1, E1 - Ed, FLOOR)
    ec = c_emin if acc == 0 else _exponent(acc, c_emin)
    e = max(Ed, ec)
    T = I64(0)                                        # at scale 2^(e - F2 - 1)
    if Ed != NONE:
        T = _align(Sd, Ed - F - (e - F2 - 1), FLOOR)
    if acc != 0 and not (drop and ec < e - F - 1):
        m, ce = _sig_exp(acc)
        T += _align(m, ce - (e - F), FLOOR) << (F2 + 1 - F)
    if T == 0:
        return _round_value(0.0, rw, P)
    es = max(_msb(T) + e - F2 - 1, c_emin)
    sh = es - e + 1                                   # floor to F2 bits below es
    if sh > 0:
        T = (T >> sh) << sh
    x = e - F2 - 1
    if -1022 <= x <= 1023:
        v = np.float64(T) * _as((x + 1023) << 52, np.float64(0))
    else:
        v = math.ldexp(np.float64(T), x)
    if prm[10] == NARROW_RNE and abs(v) < 2.0 ** 1000:
        return _narrow_rne(v, prm[11], prm[12], _as(prm[13], np.float64(0))), I64(0)
    if 0 < prm[10] < NARROW_RNE:        # float32: the IEEE conversion rounds v (exact,
        return _f32_out(v, prm[10]), I64(0)            # |T| < 2^53) once (_f32_out)
    return _round_value(v, rw, P)


@nb.njit(**_CALL)
def _special_step(sa, ea, sb, eb, spa, spb, k0, k1, acc, prm, P, rw):
    """A step whose products or addend hold Inf or NaN: (the IEEE sum (NaN for 0 * Inf, a NaN
    operand, or Inf - Inf; else the infinity), code, True); (0, 0, False) when the step holds
    neither and the ordinary step applies."""
    inf_pos, inf_neg, nan = False, False, False
    for k in range(k0, k1):
        fa, fb = spa[k], spb[k]
        if fa == 2 or fb == 2 or (fa == 1 and sb[k] == 0) or (fb == 1 and sa[k] == 0):
            nan = True
        elif fa == 1 or fb == 1 or (prm[8] and sa[k] != 0 and sb[k] != 0 and
                                    _msb(sa[k] * sb[k]) + ea[k] + eb[k] - prm[3] >= 128):
            if (sa[k] < 0) != (sb[k] < 0):              # an Inf, or a product past float32
                inf_neg = True                           # under inf_products
            else:
                inf_pos = True
    if nan or (inf_pos and inf_neg) or math.isnan(acc) or (
            math.isinf(acc) and ((acc > 0 and inf_neg) or (acc < 0 and inf_pos))):
        v, code = _round_value(np.nan, rw, P)
        return v, code, True
    if inf_pos or inf_neg or math.isinf(acc):
        v, code = _round_value(acc if math.isinf(acc) else (np.inf if inf_pos else -np.inf),
                               rw, P)
        return v, code, True
    return 0.0, I64(0), False


@nb.njit(cache=True, parallel=True)
def fused_matmul(SA, EA, SB, EB, SPA, SPB, BADA, BADB, C, n_terms, prm, P, promote, Ppro, sr,
                 seed, out, errs):
    """Chained fused dot-add steps of ``n_terms`` products (``_fused_step``). SA/EA: signed
    integer significands and exponents of A (b, m, k) as the input format sees them (value =
    SA * 2^(EA - Ma)); SB/EB the same for B transposed; SPA/SPB: 0 finite, 1 Inf, 2 NaN,
    3 negative zero; BADA/BADB: rows of A / columns of B holding an Inf or NaN.
    ``promote`` > 0: every ``promote`` products the partial sum is added into a wider
    accumulator (format Ppro, starting at c) and restarts from zero."""
    nb_, M, K = SA.shape
    N = SB.shape[1]
    nerr = 0
    for t in nb.prange(_n_tiles(nb_, M, N)):
        b, m0, m1, n0, n1 = _tile(t, M, N)
        for m in range(m0, m1):
            for n in range(n0, n1):
                v, bad = _fused_dot(SA[b, m], EA[b, m], SB[b, n], EB[b, n], SPA[b, m],
                                    SPB[b, n], not (BADA[b, m] or BADB[b, n]), C[b, m, n],
                                    n_terms, prm, P, promote, Ppro, sr, seed,
                                    (b * M + m) * N + n)
                out[b, m, n] = v
                nerr += bad
    errs[0] = nerr


@nb.njit(**_CALL)
def _fused_dot(sa, ea, sb, eb, spa, spb, clean, c, n_terms, prm, P, promote, Ppro, sr, seed,
               o):
    """One output of ``fused_matmul``: (value, count of errors). The ordinary step is inlined
    here, once (one call per output rather than per step; one copy, since each inlined copy
    costs compile time)."""
    K = sa.shape[0]
    outer = c
    acc = 0.0 if promote > 0 else c
    j = 0
    bad = 0
    for k0 in range(0, K, n_terms):
        k1 = min(k0 + n_terms, K)
        rw = _word(seed, o, j) if sr else U64(0)
        j += 1
        v, code, done = 0.0, I64(0), False
        if not (clean and math.isfinite(acc)):
            v, code, done = _special_step(sa, ea, sb, eb, spa, spb, k0, k1, acc, prm, P, rw)
        if done:
            acc = v
        elif prm[5] >= 0:
            acc, code = _floored_step(sa, ea, sb, eb, k0, k1, acc, prm, P, rw)
        else:
            acc, code = _fused_step(sa, ea, sb, eb, spa, spb, k0, k1, acc, prm, P, rw)
        bad += code == ERR
        if promote > 0 and (k1 % promote == 0 or k1 == K):
            rw = _word(seed, o, j) if sr else U64(0)
            j += 1
            outer, code = _round_sum(outer, acc, rw, Ppro, not sr)
            bad += code == ERR
            acc = 0.0
    return (outer if promote > 0 else acc), bad


LIMB = 32
XMIN = -1120          # limb 0's lowest bit: below float64's 2^-1074 (products of inputs in
NLIMB = 72            # float32's range lie in [2^-298, 2^256]); the top limb ends at 2^1184


@nb.njit(**_CALL)
def _limb_add(L, m, e):
    """Add the signed integer m * 2^e (|m| < 2^53) into the long accumulator L (32-bit limbs
    in int64 slots: carries wait until ``_limb_round``)."""
    sh = e - XMIN
    i, r = sh // LIMB, sh % LIMB
    a = U64(-m if m < 0 else m)
    m32 = U64(0xFFFFFFFF)
    lo = (a << U64(r)) & m32
    mid = ((a << U64(r)) >> U64(32)) & m32
    hi = a >> U64(64 - r) if r > 0 else U64(0)
    sgn = I64(-1) if m < 0 else I64(1)
    L[i] += sgn * I64(lo)
    L[i + 1] += sgn * I64(mid)
    L[i + 2] += sgn * I64(hi)


@nb.njit(**_CALL)
def _limb_round(L, rw, P, all_neg_zero):
    """Round the exact sum held in L once into P's format; (value, code)."""
    carry = I64(0)
    for i in range(NLIMB):
        v = L[i] + carry
        L[i] = v & 0xFFFFFFFF
        carry = v >> 32                               # arithmetic: floor division
    neg = carry < 0
    if neg:                                           # magnitude of a negative total
        borrow = I64(1)
        for i in range(NLIMB):
            v = (~L[i] & 0xFFFFFFFF) + borrow
            L[i] = v & 0xFFFFFFFF
            borrow = v >> 32
    top = -1
    for i in range(NLIMB - 1, -1, -1):
        if L[i] != 0:
            top = i
            break
    if top < 0:
        return _round_value(-0.0 if all_neg_zero else 0.0, rw, P)
    H = U64(0)
    Lo = U64(0)
    st = False
    lo_i = top - 3                                     # 4 limbs = 128 bits
    for i in range(top, lo_i - 1, -1):
        w = U64(L[i]) if i >= 0 else U64(0)
        H = (H << U64(32)) | (Lo >> U64(32))
        Lo = (Lo << U64(32)) | w
    for i in range(0, max(lo_i, 0)):
        st = st or L[i] != 0
    H, Lo, st, T = _normal(H, Lo, st, XMIN + LIMB * lo_i)
    code, vb = _round_exact(I64(1) if neg else I64(0), H, Lo, st, T, rw, P)
    return _as(vb, np.float64(0)), code


@nb.njit(**_CALL)
def _exact_dot(a, bt, c, P, rw):
    """round(sum_k a[k] * bt[k] + c) with the exact sum (IEEE rules for Inf/NaN/zero signs)."""
    L = np.zeros(NLIMB, dtype=np.int64)
    special = 0.0
    has_special = False
    neg_zero = c == 0 and math.copysign(1.0, c) < 0          # -0 only if every term is -0
    if not math.isfinite(c):
        special, has_special = c, True
    elif c != 0:
        mc, ec = _sig_exp(c)
        _limb_add(L, mc, ec)
    for k in range(a.shape[0]):
        p = a[k] * bt[k]
        if not math.isfinite(p):
            if not has_special:
                special, has_special = p, True
            elif special != p:
                special = np.nan
        elif p != 0:
            neg_zero = False
            mp, ep = _sig_exp(p)
            _limb_add(L, mp, ep)
        elif math.copysign(1.0, p) > 0:
            neg_zero = False
    if has_special:
        return _round_value(special, rw, P)
    return _limb_round(L, rw, P, neg_zero)


@nb.njit(**_INLINE)
def _odd_block(a, bt, k0, k1, c):
    """c + sum a[k] * bt[k] over k0 <= k < k1, rounded to odd at float64's 53 bits, where the
    TwoSums below are exact (``exact_matmul``'s ``odd_sums``); NaN when a term is Inf or NaN.
    (s, lo): the products' exact sum (TwoSums, their errors added exactly), normalised so that
    s is its nearest rounding; (h, l) = TwoSum(c, s); (t, u) = TwoSum(l, lo); (z, r) =
    TwoSum(h, t). Then c + the products = z + r + u exactly, and z + (r + u) lies strictly
    between z and its neighbour on the side of r (of u where r is 0): either l = 0 (so u = 0
    and r is the error of z) or c + s was inexact, which (Sterbenz) makes |t| < 2 ulp(h) so
    that r, a multiple of ulp(t), outweighs |u| <= ulp(t) / 2. docs/matrix-units.md."""
    s, lo = a[k0] * bt[k0], 0.0
    for k in range(k0 + 1, k1):
        s, e = _two_sum(s, a[k] * bt[k])
        lo += e
    s, lo = _two_sum(s, lo)
    h, l = _two_sum(c, s)
    t, u = _two_sum(l, lo)
    z, r = _two_sum(h, t)
    return _to_odd(z, r if r != 0 else u)


@nb.njit(cache=True, parallel=True)
def exact_matmul(A, Bt, C, block, P, sr, seed, odd_sums, f32_rne, out, errs):
    """out[b, m, n] = the exact sum_k A*B + C rounded once (``_exact_dot``); with ``block``
    > 0, once per ``block`` products: s = round(s + the exact sum of the next block), s
    starting at C (rounding j takes word j). ``odd_sums`` (deterministic modes into at most
    51 fraction bits, products whose TwoSums add exactly): each exact sum is first rounded to
    odd at 53 bits by TwoSums (``_odd_block``), which carries every bit the one rounding needs
    (Boldo & Melquiond 2008); a zero or non-finite sum takes the long accumulator, which owns
    the signs of zeros and the IEEE specials. ``f32_rne``: that rounding is float32's
    nearest-even, one IEEE conversion."""
    nb_, M, K = A.shape
    N = Bt.shape[1]
    L = K if block <= 0 else block
    nerr = 0
    for t in nb.prange(_n_tiles(nb_, M, N)):
        b, m0, m1, n0, n1 = _tile(t, M, N)
        for m in range(m0, m1):
            for n in range(n0, n1):
                o = (b * M + m) * N + n
                a, bt = A[b, m], Bt[b, n]
                v = C[b, m, n]
                j = 0
                for k0 in range(0, max(K, 1), max(L, 1)):
                    k1 = min(k0 + L, K)
                    rw = _word(seed, o, j) if sr else U64(0)
                    j += 1
                    ro = _odd_block(a, bt, k0, k1, v) if odd_sums and k1 > k0 else 0.0
                    if math.isfinite(ro) and abs(ro) >= 2.0 ** -960:   # 53 bits, not 0
                        if f32_rne:
                            v = np.float64(np.float32(ro))
                        else:
                            v, code = _round_value(ro, rw, P)
                            nerr += code == ERR
                    else:
                        v, code = _exact_dot(a[k0:k1], bt[k0:k1], v, P, rw)
                        nerr += code == ERR
                out[b, m, n] = v
    errs[0] = nerr


@nb.njit(cache=True, parallel=True)
def int_matmul(A, Bt, C, prog, depth, lo, hi, saturate, out):
    """Integer accumulation in the program's order; each addition wraps modulo 2^P into
    [lo, hi] or saturates to it. A, Bt, C: int64."""
    nb_, M, K = A.shape
    N = Bt.shape[1]
    span = hi - lo + 1
    for o in nb.prange(nb_ * M * N):
        b, rest = o // (M * N), o % (M * N)
        m, n = rest // N, rest % N
        stack = np.empty(depth, dtype=np.int64)
        top = 0
        for op in prog:
            if op == ADD:
                v = stack[top - 2] + stack[top - 1]
                if v < lo or v > hi:
                    if saturate:
                        v = lo if v < lo else hi
                    else:
                        v = (v - lo) % span + lo
                top -= 1
                stack[top - 1] = v
            else:
                stack[top] = C[b, m, n] if op == LEAF_C else A[b, m, op] * Bt[b, n, op]
                top += 1
        out[b, m, n] = stack[0]
