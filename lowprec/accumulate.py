"""Accumulator models and ``sum`` / ``dot`` / ``matmul`` that apply them, bit for bit.

An ``Accumulator`` says how a sum of products is formed (docs/matrix-units.md):

* ``fmt``, ``rounding`` (any mode of ``lp.round``; stochastic takes ``seed=`` at the call),
  ``overflow``: every addition is the exact sum of its two operands rounded once into ``fmt``.
* ``products``: None = products exact, so each step is a fused multiply-add; a format = every
  product is first rounded (``product_rounding``) into it, then added (separate rounding).
* ``order``: ``"sequential"`` (c, then products 0, 1, ...), ``"pairwise"`` (recursive halves,
  then c), ``"blocked"`` (sequential sums of ``block`` products, added in turn to c),
  ``"blocked_pairwise"`` (the same with each block summed by recursive halves: AMD CDNA2),
  ``"exact"`` (one rounding of the exact sum; with ``block=L``, one rounding per L products:
  s = round(s + the exact sum of the next L products), s starting at c), or an explicit
  tree: nested tuples of product indices, each node adding its children left to right (c
  last).
* ``fused=FusedAdder(n, frac_bits, align_addend, terms)``: a multi-term fused adder: each step
  takes n products and the running sum, aligns them to the largest exponent, keeps
  ``frac_bits`` bits below it (truncation, floor or nearest), adds exactly and rounds once into
  ``fmt``; steps chain along K. ``promote_every=k`` adds each k-product partial sum into a
  wider accumulator ``promote_to`` (DeepSeek-V3 §3.3.2), which starts at c.
* an ``IntFormat`` ``fmt``: P-bit integer accumulation, ``overflow="wrap"`` or ``"saturate"`` per
  addition (order matters for saturation).

``BlockTensor`` operands (``lp.quantize``; A blocked along K = its last axis, B along K = its
second-to-last axis) need a fused adder; ``block_scales`` says where the unit applies the block
scales: ``"product"`` adds the (power-of-two) scale exponents to each product's exponent before
alignment (OCP MX on B200 ``mxf8f6f4``); ``"group"`` sums each ``group`` of products exactly,
multiplies the sum by both scales exactly, and aligns those group terms (NVFP4 on B200
``mxf4nvf4``; ``fused.n`` counts products); ``"promotion"`` (with ``promote_every``) forms each
k-product partial sum from the unscaled elements and applies the scales when promoting it:
outer = round(s * partial + outer), s = round(sA * sB), both in ``promote_to``'s format
(DeepSeek-V3 §3.3.2: block scales multiplied on the CUDA cores at promotion). Tensor scales (NVFP4's second level) are applied in
the epilogue: D = round(alpha * acc + c) with alpha = float32(tA * tB), one rounding into
``fmt``, the accumulation starting from 0.

``ftz=True`` (ordered float accumulators): subnormal inputs and c read as +0, and every
product and every rounded sum below the accumulator format's smallest normal value becomes a
zero of its sign (AMD CDNA2 MFMA as MMA-Sim models it, ``ftz_mul_add``).
``positive_zero=True``: every zero result is +0 (NVIDIA units and CDNA1 as MMA-Sim models
them add +0.0 to each step's result). A NaN result (a NaN term, 0 * Inf, Inf - Inf) is
returned as the positive quiet NaN, or with
``nan="all_ones"`` as the NaN whose bits are all ones but the sign (0x7FFFFFFF in float32):
what NVIDIA and AMD matrix units return (MMA-Sim), set by every ``lp.hardware.instruction``.

Products are exact in float64 wherever the input formats' significands fit in 53 bits
together; float64 inputs have one model, the chain of IEEE float64 fused multiply-adds
(``Accumulator("float64", input_formats=("float64", "float64"))``: the f64 ``mma`` and
``v_mfma``), and any other model of them raises.

``input_formats`` name the formats of A's and B's values: a fused adder aligns on the
exponents as those formats see them (a subnormal's exponent is the format's emin), and the
values are checked to belong to them. Without it, any values float32 can hold are accepted
(every product is then exact in float64). ``addend_format``: the format of c (default
``fmt``); c must hold values of it.
"""
from __future__ import annotations

import math
import numpy as np

from . import _accumulate as _A, hardware
from .accumulator import Accumulator, FusedAdder, nan_result_bits
from .blocks import BlockTensor
from ._fused_small import fused_small
from .cast import _check_rounding_args, holds
from .plan import _build
from .formats import FloatFormat, IntFormat, format as _format
from .rounding import check_overflow, check_seed, mode_name

__all__ = ["Accumulator", "FusedAdder", "matmul", "dot", "sum", "a2q_bits", "exact_per_block",
           "program", "check_values", "check_operands", "nan_sums", "int_result_dtype", "sig_exp",
           "nan_result_bits", "group_terms", "LEAF_C", "ADD"]

LEAF_C, ADD = _A.LEAF_C, _A.ADD   # the postfix program's leaf for c and its addition

TERMS = {"truncate": _A.TRUNC, "floor": _A.FLOOR, "nearest": _A.NEAREST}
SMALL_PRODUCTS = 1 << 20   # fused adders below this many products run in NumPy (no compile)


# ---- input preparation ----------------------------------------------------------------------

def _floats(x, name):
    arr = np.asarray(x)
    if arr.dtype.name not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(f"{name} must be a float array (float16, bfloat16, float32, float64), "
                        f"got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_values(x, fmt, name):
    """x's values must belong to fmt (or, with no fmt, be float32 values)."""
    finite = np.isfinite(x)
    if fmt is None:
        with np.errstate(over="ignore"):
            ok = x.astype(np.float32).astype(np.float64) == x
        what = "float32 values (so that every product is exact in float64)"
    else:
        ok = np.asarray(fmt.is_representable(x))
        what = f"{fmt.name} values"
    bad = finite & ~ok
    if np.any(bad):
        i = tuple(int(v) for v in np.unravel_index(int(np.flatnonzero(bad)[0]), x.shape))
        raise ValueError(f"{name}{list(i)} = {float(x[i])!r} is not one of the {what}; round the "
                         f"input first, e.g. lp.round({name}, ...)")


def check_operands(A, B, C, acc):
    """``lp.matmul``'s checks of its operand values (A (..., M, K), B (..., K, N), C the
    addend broadcast to the result), raising ValueError naming the first bad element; the
    adapters call it on concrete arrays so that they refuse what the core refuses. A and B must
    hold values of the input formats (float32 values without ``input_formats``); an integer
    accumulator takes integers below 2^31 in magnitude; otherwise c holds values of the addend
    format; and a float accumulator format without NaN refuses operands whose sum is NaN
    (a NaN, 0 * Inf or Inf - Inf among the terms), as no code can hold it."""
    fa, fb = acc.input_formats
    check_values(A, fa, "A")
    check_values(B, fb, "B")
    if isinstance(acc.fmt, IntFormat):
        for arr, name in ((A, "A"), (B, "B"), (C, "c")):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or \
                    np.any(np.abs(arr) >= 2**31):
                raise ValueError(f"{name} must hold integers below 2^31 in magnitude for an "
                                 "integer accumulator")
        return
    check_values(C, acc.addend_format or acc.fmt, "c")
    if not acc.fmt.has_nan and not (np.isfinite(A).all() and np.isfinite(B).all() and
                                    np.isfinite(C).all()):
        if nan_sums(A, B, C).any():
            raise ValueError(
                f"a sum is NaN (NaN, 0 * Inf or Inf - Inf among the terms) but "
                f"{acc.fmt.name} has no NaN, so the sum cannot be written (whatever "
                "overflow=): pass inputs without NaN/Inf or an accumulator format with NaN")


def nan_sums(A, B, C, xp=np):
    """Which sums A @ B + C have NaN as their IEEE value: a NaN term, a product 0 * Inf, or
    infinite terms of both signs (counted with matmuls of 0/1 masks, exact). ``xp``: the
    array module (NumPy, or jax.numpy for ``lowprec_jax`` under jit)."""
    def mm(x, y):
        return xp.matmul(x.astype(xp.float64), y.astype(xp.float64)) > 0
    inf = xp.inf
    nan = xp.isnan(A).any(-1)[..., :, None] | xp.isnan(B).any(-2)[..., None, :] | xp.isnan(C)
    ia, ib = xp.isinf(A), xp.isinf(B)
    nan = nan | mm(A == 0, ib) | mm(ia, B == 0)
    pos = mm(A == inf, B > 0) | mm(A == -inf, B < 0) | mm(A > 0, B == inf) | \
        mm(A < 0, B == -inf) | (C == inf)
    neg = mm(A == inf, B < 0) | mm(A == -inf, B > 0) | mm(A > 0, B == -inf) | \
        mm(A < 0, B == inf) | (C == -inf)
    return nan | (pos & neg)


def sig_exp(x, fmt):
    """Signed integer significands and exponents of x as ``fmt`` sees them (value =
    sig * 2^(exp - man_bits), exp >= emin), and flags 0 finite, 1 Inf, 2 NaN, 3 -0."""
    flag = np.where(np.isnan(x), 2, np.where(np.isinf(x), 1, 0)).astype(np.int8)
    flag[(x == 0) & np.signbit(x)] = 3
    ax = np.where(np.isfinite(x), np.abs(x), 1.0)
    _, ex = np.frexp(ax)
    e = np.maximum(ex.astype(np.int64) - 1, fmt.emin)
    sig = np.ldexp(ax, (fmt.man_bits - e).astype(np.int32)).astype(np.int64)
    sig = np.where(np.isinf(x), 1, np.where(x == 0, 0, sig))
    sig = np.where(np.signbit(x), -sig, sig)
    return sig.astype(np.int64), e.astype(np.int64), flag


def _pairwise(lo, hi):
    """Postfix program of products lo..hi-1 summed by recursive halves."""
    if hi - lo == 1:
        return [lo]
    mid = (lo + hi) // 2
    return _pairwise(lo, mid) + _pairwise(mid, hi) + [_A.ADD]


def program(order, K, block):
    """Postfix program (leaf k >= 0, -1 = c, -2 = add) and its stack depth."""
    C, ADD = _A.LEAF_C, _A.ADD
    if order == "sequential":
        prog = [C] + [x for k in range(K) for x in (k, ADD)]
    elif order == "pairwise":
        prog = (_pairwise(0, K) + [C, ADD]) if K else [C]
    elif order == "blocked":
        prog = [C]
        for k0 in range(0, K, block):
            chunk = list(range(k0, min(k0 + block, K)))
            prog += [chunk[0]] + [x for k in chunk[1:] for x in (k, ADD)] + [ADD]
    elif order == "blocked_pairwise":
        prog = [C]
        for k0 in range(0, K, block):
            prog += _pairwise(k0, min(k0 + block, K)) + [ADD]
    else:
        seen = []

        def walk(node):
            if isinstance(node, (int, np.integer)) and not isinstance(node, bool):
                seen.append(int(node))
                return [int(node)]
            if not isinstance(node, tuple) or not node:
                raise ValueError(f"order tree nodes are product indices or non-empty tuples, "
                                 f"got {node!r}")
            out = walk(node[0])
            for child in node[1:]:
                out += walk(child) + [ADD]
            return out
        prog = walk(order) + [C, ADD]
        if sorted(seen) != list(range(K)):
            raise ValueError(f"order tree must use every product index 0..{K - 1} exactly once, "
                             f"got {sorted(seen)}")
    depth, top = 1, 0
    for op in prog:
        top += -1 if op == ADD else 1
        depth = max(depth, top)
    return np.array(prog, dtype=np.int64), depth


def _rplan(fmt, rounding, overflow, sr_bits, sr_variant, sr):
    """The rounding plan of an accumulator's additions (float64 work type)."""
    mode, r, variant = _check_rounding_args(fmt, rounding, sr_bits, sr_variant,
                                            0 if sr else None, None, np.float64)
    return _build(fmt, mode, check_overflow(overflow, fmt), False, r, variant, 64)


def _rparams(fmt, rounding, overflow, sr_bits, sr_variant, sr):
    """(mode, the Numba kernels' parameters) of the same plan as ``_rplan``."""
    plan = _rplan(fmt, rounding, overflow, sr_bits, sr_variant, sr)
    from ._kernels import params  # noqa: PLC0415
    return plan.mode, params(plan)


# ---- the public functions -------------------------------------------------------------------

def matmul(A, B, acc="fp32-sequential", c=None, *, seed=None, dtype=None):
    """``A @ B + c`` as the accumulator model ``acc`` forms it, bit for bit.

    ``A``: (..., M, K), ``B``: (..., K, N), float arrays of values of the input formats;
    ``c``: broadcastable to (..., M, N) (default +0). Batch dimensions broadcast as in NumPy.
    ``acc``: an ``lp.Accumulator`` or a preset name (``lp.hardware.presets()``). ``seed``: for
    stochastic accumulators: rounding j of output element o (flat C order) uses Philox4x32-10
    keyed by the seed at counter (o_lo, o_hi, j, 1). Returns float32 holding the unit's
    output bits (float64 if the format needs it; int64 for integer accumulators), or
    ``dtype``.
    """
    acc = hardware.resolve(acc)
    if isinstance(A, BlockTensor) or isinstance(B, BlockTensor):
        return _block_matmul(A, B, acc, c, seed, dtype)
    A, B = _floats(A, "A"), _floats(B, "B")
    if A.ndim < 2 or B.ndim < 2:
        raise ValueError(f"A and B need at least 2 dimensions (..., M, K) and (..., K, N); got "
                         f"shapes {A.shape} and {B.shape} (lp.dot takes vectors)")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"A's last dimension ({A.shape[-1]}) must equal B's second-to-last "
                         f"({B.shape[-2]})")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    try:
        batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        shape = batch + (M, N)
        C = np.zeros(shape) if c is None else np.broadcast_to(_floats(c, "c"), shape)
    except ValueError:
        raise ValueError(f"shapes do not broadcast: A {A.shape}, B {B.shape}, c "
                         f"{np.shape(c)}") from None
    fa, fb = acc.input_formats
    check_operands(A, B, C, acc)
    fma64 = _fma64_chain(acc)
    nb = int(np.prod(batch, dtype=np.int64))
    A3 = np.ascontiguousarray(np.broadcast_to(A, batch + (M, K))).reshape(nb, M, K)
    B3 = np.ascontiguousarray(np.swapaxes(np.broadcast_to(B, batch + (K, N)), -1, -2)
                              ).reshape(nb, N, K)
    C3 = np.ascontiguousarray(C).reshape(nb, M, N)
    out = np.empty((nb, M, N))
    errs = np.zeros(1, dtype=np.int64)
    fmt = acc.fmt
    sr = acc.stochastic
    if sr and seed is None:
        raise ValueError("a stochastic accumulator needs seed=<int> at the call")
    if not sr and seed is not None:
        raise ValueError("seed= applies to stochastic accumulators only")
    sd = np.uint64(check_seed(seed) if sr else 0)
    if isinstance(fmt, IntFormat):
        res = _int(acc, A3, B3, C3, K)
        return res.reshape(shape).astype(int_result_dtype(dtype, fmt))
    mode, P = _rparams(fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, sr)
    if acc.fused is not None:
        SA, EA, FA = sig_exp(A3, fa)
        SB, EB, FB = sig_exp(B3, fb)
        out = _run_fused(acc, SA, EA, FA, SB, EB, FB, fa.man_bits + fb.man_bits, C3, seed,
                         acc.fused.n)
        res_fmt = acc.promote_to.fmt if acc.promote_to is not None else fmt
    elif fma64:
        _A.fma64_matmul(A3, B3, C3, out)
        res_fmt = fmt
    elif acc.order == "exact":
        _A.exact_matmul(A3, B3, C3, acc.block or 0, P, sr, sd, _odd_sums(acc, K),
                        _f32_out_kind(acc) == _A.F32_RNE, out, errs)
        res_fmt = fmt
    elif acc.order == "sequential" and acc.products is None and not acc.ftz:
        _A.sequential_matmul(A3, B3, C3, P, _f32_out_kind(acc) == _A.F32_RNE,
                             not sr and fmt.man_bits <= 51, sr, sd, out, errs)
        res_fmt = fmt
    else:
        prog, depth = program(acc.order, K, acc.block)
        if acc.ftz:                        # subnormal inputs and c read as +0
            A3, B3, C3 = (np.where(np.abs(x) < 2.0 ** f.emin, 0.0, x) for x, f in (
                (A3, fa or _format("float32")), (B3, fb or _format("float32")), (C3, fmt)))
        round_prod = acc.products is not None
        Pprod = _rparams(acc.products, acc.product_rounding, None, None, "srff", False)[1] \
            if round_prod else P
        odd_ok = not sr and isinstance(fmt, FloatFormat) and fmt.man_bits <= 51
        _A.program_matmul(A3, B3, C3, prog, depth, P, Pprod, round_prod, odd_ok, sr, sd,
                          2.0 ** fmt.emin if acc.ftz else 0.0, out, errs)
        res_fmt = fmt
    if errs[0]:
        raise ValueError(f"a sum is NaN (NaN or Inf - Inf among the terms) but {res_fmt.name} "
                         "has no NaN, so the sum cannot be written (whatever overflow=): pass "
                         "inputs without NaN/Inf or an accumulator format with NaN")
    return _results(out, _out_dtype(dtype, res_fmt), acc).reshape(shape)


def _out_dtype(dtype, fmt):
    """The float dtype of a result in ``fmt``: ``dtype``, checked to hold every value of
    fmt, or float32 / float64."""
    if dtype is None:
        return np.dtype(np.float32) if holds(fmt, np.float32) else np.dtype(np.float64)
    try:
        rdt = np.dtype(dtype)
        ok = holds(fmt, rdt)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"dtype={dtype!r} cannot hold every value of {fmt.name}: pass a float "
                         "dtype that does (float32 or float64), or None")
    return rdt


def _f32_out_kind(acc):
    """How the fused kernel may round its result in one or two float operations: a float32
    result with one IEEE conversion (``_accumulate._f32_out``): nearest-even with IEEE
    overflow, toward zero with IEEE overflow (or saturation, the same there), toward zero with
    overflow to Inf; ``NARROW_RNE``: an IEEE-style format (float16, bfloat16, ...) with
    nearest-even and IEEE overflow (``_accumulate._narrow_rne``); 0: the general step."""
    f = acc.fmt
    if acc.stochastic or acc.ftz:
        return 0
    mode = mode_name(acc.rounding)
    if (f != _format("float32") and isinstance(f, FloatFormat) and f.signed and f.subnormals
            and f.inf is True and f.nan == "ieee" and f.zero and f.man_bits <= 50
            and mode == "nearest_even" and acc.overflow in (None, "inf")):
        return _A.NARROW_RNE
    if f != _format("float32"):
        return 0
    if mode == "nearest_even" and acc.overflow in (None, "inf"):
        return _A.F32_RNE
    if mode == "toward_zero" and acc.overflow in (None, "inf", "saturate"):
        return _A.F32_RZ
    if mode == "toward_zero" and acc.overflow == "inf_always":
        return _A.F32_RZ_INF
    return 0


def _odd_sums(acc, K):
    """True where ``exact_matmul`` may round each exact sum to odd with float64 TwoSums
    (``_accumulate._odd_block``): a deterministic rounding into at most 51 fraction bits, and
    n products (n = block, or K) that TwoSums add exactly: n <= 2 (one TwoSum is exact), or
    float input formats whose products lie on the grid 2^g of the smallest product, with n
    of the largest below 2^T and T - g + log2(n - 1) < 106, so that the n - 1 TwoSum errors
    (each a multiple of 2^g, at most 2^(T - 53)) add exactly in float64."""
    f = acc.fmt
    if acc.stochastic or not isinstance(f, FloatFormat) or f.man_bits > 51:
        return False
    n = acc.block or K
    if n <= 2:
        return True
    fa, fb = acc.input_formats
    if not (isinstance(fa, FloatFormat) and isinstance(fb, FloatFormat)):
        return False
    g = (fa.emin - fa.man_bits) + (fb.emin - fb.man_bits)
    T = math.ceil(math.log2(n * float(fa.max) * float(fb.max)))
    return T - g + math.log2(n - 1) < 106


def _narrow_params(f):
    """prm[11:14] of ``NARROW_RNE``: fraction bits, emin, the bits of the largest value."""
    return f.man_bits, f.emin, int(np.float64(f.max).view(np.int64))


def _fma64_chain(acc):
    """True for the float64 fused multiply-add chain (float64 inputs, the float64 accumulator,
    nearest-even, sequential); ValueError for any other model whose products do not fit in
    float64's 53 bits, which every other path needs."""
    fa, fb = acc.input_formats
    if not (isinstance(fa, FloatFormat) and isinstance(fb, FloatFormat)) or (
            fa.man_bits + fb.man_bits + 2 <= 53):
        return False
    if (acc.fmt == _format("float64") and mode_name(acc.rounding) == "nearest_even"
            and acc.order == "sequential" and acc.products is None and acc.fused is None
            and acc.overflow in (None, "inf") and (acc.addend_format or acc.fmt) == acc.fmt):
        return True
    raise ValueError(f"input_formats=({fa.name}, {fb.name}): their products need "
                     f"{fa.man_bits + fb.man_bits + 2} bits and lp.matmul forms products exactly "
                     "in float64 (53 bits), except in one model: a chain of float64 fused "
                     "multiply-adds (Accumulator('float64', input_formats=('float64', "
                     "'float64')), sequential, nearest-even). Use narrower input formats or that "
                     "model.")


def _results(v, rdt, acc):
    """v as dtype ``rdt`` with its NaN results made one NaN (``Accumulator.nan``): the
    positive quiet NaN by default (IEEE 754 leaves a NaN's sign open and x86 gives Inf - Inf
    a negative one, so lowprec fixes it in every model and path), or ``nan_result_bits``;
    and with ``positive_zero`` every zero result +0."""
    if acc.positive_zero:
        v = v + 0.0                                      # -0 + +0 = +0 (IEEE)
    isnan = np.isnan(v)
    if not isnan.any():
        return v.astype(rdt)
    out = np.where(isnan, np.nan, v).astype(rdt)
    code = nan_result_bits(acc.nan, 8 * rdt.itemsize)
    if code is not None:
        u = out.view(f"u{rdt.itemsize}")
        u[isnan] = code
    return out


def _block_matmul(A, B, acc, c, seed, dtype):
    """matmul of two BlockTensors: see the module docstring (block_scales)."""
    import dataclasses  # noqa: PLC0415
    if not (isinstance(A, BlockTensor) and isinstance(B, BlockTensor)):
        raise TypeError("lp.matmul takes two BlockTensors or two float arrays, not a mix")
    if acc.fused is None:
        raise ValueError("block-scaled operands need a fused-adder accumulator (e.g. the "
                         "b200-mxf8f6f4 or b200-mxf4nvf4 presets)")
    if len(A.shape) < 2 or len(B.shape) < 2 or A.shape[-1] != B.shape[-2]:
        raise ValueError(f"BlockTensor shapes {A.shape} and {B.shape} do not multiply")
    nd_a, nd_b = len(A.shape), len(B.shape)
    if A.fmt.tile is None and A.axis != nd_a - 1:
        raise ValueError(f"A must be blocked along its last axis (K), not axis {A.axis}")
    if B.fmt.tile is None and B.axis != nd_b - 2:
        raise ValueError(f"B must be blocked along its second-to-last axis (K), not axis "
                         f"{B.axis}: quantize it with axis=-2")
    ea, sa = A.element_and_scale_values()
    eb, sb = B.element_and_scale_values()
    alpha = np.float32(np.float32(A.tensor_scale) * np.float32(B.tensor_scale))
    plain = dataclasses.replace(acc, input_formats=(A.fmt.elem, B.fmt.elem))
    epilogue = alpha != 1
    c0 = None if epilogue else c
    if acc.block_scales == "promotion":
        res = _promoted(plain, ea, sa, eb, sb, c0, seed)
    elif acc.block_scales == "product":
        for s, name in ((sa, "A"), (sb, "B")):
            fin = s[np.isfinite(s) & (s > 0)]
            if fin.size and np.any(np.frexp(fin)[0] != 0.5):
                raise ValueError(f"{name}'s block scales are not all powers of two; "
                                 "block_scales='product' needs E8M0-style scales (use 'group')")
        res = _fused_from_parts(plain, ea, sa, eb, sb, c0, seed)
    else:
        check_group_sums_exact(A.fmt, B.fmt, acc.group)
        res = _grouped(plain, A.fmt, B.fmt, ea, sa, eb, sb, c0, seed)
    if epilogue:
        from .arith import fma  # noqa: PLC0415
        cc = np.zeros(res.shape) if c is None else _floats(c, "c")
        res = fma(np.float64(alpha), res, cc, acc.fmt, acc.rounding, acc.overflow)
    return _results(res, _out_dtype(dtype, acc.fmt), acc)


def _fused_from_parts(acc, ea, sa, eb, sb, c, seed):
    """Fused steps on element values whose exponents are shifted by log2 of their scales."""
    fa, fb = acc.input_formats
    M, K, N = ea.shape[-2], ea.shape[-1], eb.shape[-1]
    batch = np.broadcast_shapes(ea.shape[:-2], eb.shape[:-2])
    nb = int(np.prod(batch, dtype=np.int64))
    shape = batch + (M, N)
    C = np.zeros(shape) if c is None else np.broadcast_to(_floats(c, "c"), shape)
    check_values(C, acc.addend_format or acc.fmt, "c")

    SA, EA, FA = scaled_parts(ea, sa, fa, batch + (M, K), False)
    SB, EB, FB = scaled_parts(eb, sb, fb, batch + (K, N), True)
    return _run_fused(acc, SA, EA, FA, SB, EB, FB, fa.man_bits + fb.man_bits,
                      np.ascontiguousarray(C).reshape(nb, M, N), seed, acc.fused.n
                      ).reshape(shape)


def scaled_parts(e, s, fmt, bshape, swap):
    """(significands, exponents, flags) of block elements ``e`` (values of ``fmt``) with
    power-of-two block scales ``s`` folded into the exponents, as (nb, rows, K) arrays (B
    transposed with ``swap``); a non-finite or non-positive scale flags its elements NaN.
    Shared with the adapters' fused-adder kernels."""
    e = np.broadcast_to(e, bshape)
    s = np.broadcast_to(s, bshape)
    if swap:
        e, s = np.swapaxes(e, -1, -2), np.swapaxes(s, -1, -2)
    nb = int(np.prod(e.shape[:-2], dtype=np.int64))
    SX, EX, FX = sig_exp(np.ascontiguousarray(e).reshape((nb,) + e.shape[-2:]), fmt)
    s = np.ascontiguousarray(s).reshape(SX.shape)
    bad_scale = ~np.isfinite(s) | (s <= 0)
    FX = np.where(bad_scale, 2, FX).astype(np.int8)
    EX = EX + np.where(bad_scale, 0, np.frexp(np.where(bad_scale, 1.0, s))[1] - 1)
    return SX, EX.astype(np.int64), FX


def _promoted(acc, ea, sa, eb, sb, c, seed):
    """Partial sums of unscaled elements per promotion interval, scaled when promoted."""
    import dataclasses  # noqa: PLC0415
    from .arith import fma, mul  # noqa: PLC0415
    k = acc.promote_every
    if k is None:
        raise ValueError("block_scales='promotion' needs promote_every=<k>")
    K = ea.shape[-1]
    pro = acc.promote_to
    inner = dataclasses.replace(acc, promote_every=None, promote_to=None,
                                block_scales="product")
    shape = np.broadcast_shapes(ea.shape[:-2], eb.shape[:-2]) + (ea.shape[-2], eb.shape[-1])
    outer = np.zeros(shape) if c is None else np.broadcast_to(_floats(c, "c"), shape)
    check_values(outer, pro.fmt, "c")
    for k0 in range(0, K, k):
        a_s, b_s = sa[..., :, k0:k0 + k], sb[..., k0:k0 + k, :]
        same = lambda t, t0: np.all((t == t0) | (np.isnan(t) & np.isnan(t0)))  # noqa: E731
        if not (same(a_s, a_s[..., :1]) and same(b_s, b_s[..., :1, :])):
            raise ValueError(f"block scales must be constant over each {k}-long promotion "
                             f"interval along K (interval at {k0} is not)")
        ones_a, ones_b = np.ones(a_s.shape), np.ones(b_s.shape)
        part = _fused_from_parts(inner, ea[..., :, k0:k0 + k], ones_a, eb[..., k0:k0 + k, :],
                                 ones_b, None, seed)
        scale = mul(a_s[..., :, :1], b_s[..., :1, :], pro.fmt, pro.rounding)
        outer = fma(scale, part, outer, pro.fmt, pro.rounding, pro.overflow)
    return outer


def _span_bits(bf):
    """Bits an element times its (constant) block scale can occupy: from the element's
    smallest step to its largest value's top bit, plus the scale's significand bits."""
    e = bf.elem
    if isinstance(e, IntFormat):
        top, low = max(abs(e.min_int), e.max_int).bit_length(), 0
    else:
        top, low = math.floor(math.log2(e.max)) + 1, e.emin - e.man_bits
    return top - low + bf.scale_fmt.man_bits + 1


def check_group_sums_exact(bf_a, bf_b, g):
    """block_scales='group' sums each group of g scaled products exactly (in float64, then as
    int64 terms the group step aligns): exact only while the terms' bits together fit 40 bits
    (true for FP4 and FP6 elements, whatever the values); else ValueError, decided by the
    formats alone so that every backend refuses the same operands."""
    need = _span_bits(bf_a) + _span_bits(bf_b) + math.ceil(math.log2(g))
    if need > 40:
        raise ValueError(f"groups of {g} products of {bf_a.elem.name} and {bf_b.elem.name} "
                         f"elements need {need:g} bits to sum exactly, more than the group "
                         "step's 40; block_scales='group' is for FP4 / FP6 elements (use "
                         "'product')")


def _group_sums(ga, gb):
    """T[..., m, n, G] = sum_k ga[..., m, G, k] * gb[..., n, G, k], as one batched BLAS
    product per group (exact here: sums of few-bit products)."""
    a = np.moveaxis(ga, -2, -3)                                  # (..., G, M, g)
    b = np.swapaxes(np.moveaxis(gb, -2, -3), -1, -2)             # (..., G, g, N)
    return np.moveaxis(np.matmul(a, b), -3, -1)                  # (..., M, N, G)


def group_terms(acc, fmt_a, fmt_b, ea, sa, eb, sb):
    """The terms of block_scales='group' (``lowprec.group_step``) for element values ea / eb
    and per-element scales sa / sb (A (..., M, K), B (..., K, N)): (m, sig, label, bad,
    mab, shape) with (outputs, G) int64 arrays m (exact group sums in units of the smallest
    element product), sig (both scales' integer significands multiplied), label (sum of the
    scales' exponents, or E_ZERO), bad (a NaN scale), the exponent offset mab (term = m * sig
    * 2^(label - mab)) and the outputs' shape (..., M, N). Shared with the Triton kernel."""
    from .group_step import E_ZERO  # noqa: PLC0415
    g = acc.group
    M, K, N = ea.shape[-2], ea.shape[-1], eb.shape[-1]
    if K % g or acc.fused.n % g:
        raise ValueError(f"K={K} and the fused adder's n={acc.fused.n} must be multiples of "
                         f"group={g}")
    G = K // g
    for s, name, ax in ((sa, "A", -1), (sb, "B", -2)):
        t = np.moveaxis(s, ax, -1)
        t = t.reshape(t.shape[:-1] + (G, g))
        if not np.all((t == t[..., :1]) | np.isnan(t)):
            raise ValueError(f"{name}'s block scales change inside a group of {g} along K")
    ga = ea.reshape(ea.shape[:-1] + (G, g))                             # (..., M, G, g)
    gb = np.moveaxis(eb.reshape(eb.shape[:-2] + (G, g, N)), -1, -3)     # (..., N, G, g)
    T = _group_sums(ga, gb)                   # exact: few-bit element products, 16 a sum
    count = _group_sums((ga != 0).astype(np.float64), (gb != 0).astype(np.float64))
    q = (fmt_a.elem.emin - fmt_a.elem.man_bits) + (fmt_b.elem.emin - fmt_b.elem.man_bits)
    m = np.ldexp(T, -q)                                   # in units of the smallest product
    if not np.all(m == np.round(m)) or np.any(np.abs(m) >= 2.0**40):
        raise ValueError("block_scales='group' is for FP4 / FP6 elements (use 'product')")
    sfa, sfb = fmt_a.scale_fmt, fmt_b.scale_fmt
    sga = sa.reshape(sa.shape[:-1] + (G, g))[..., 0]                    # (..., M, G)
    sgb = np.swapaxes(sb.reshape(sb.shape[:-2] + (G, g, N))[..., 0, :], -1, -2)  # (..., N, G)
    SA, XA, FA = sig_exp(np.where(np.isnan(sga), 0.0, sga), sfa)
    SB, XB, FB = sig_exp(np.where(np.isnan(sgb), 0.0, sgb), sfb)
    sig = SA[..., :, None, :] * SB[..., None, :, :]                     # (..., M, N, G)
    label = XA[..., :, None, :] + XB[..., None, :, :]
    label = np.where((count == 0) | (sig == 0), E_ZERO, label)
    bad = np.isnan(sga)[..., :, None, :] | np.isnan(sgb)[..., None, :, :]
    shape = T.shape[:-3] + (M, N)
    m, sig, label, bad = (np.broadcast_to(v, shape + (G,)).reshape(-1, G) for v in (
        m.astype(np.int64), sig, label, bad))
    return m, sig, label, bad, sfa.man_bits + sfb.man_bits - q, shape


GROUP_CHUNK = 1 << 20      # group terms formed at a time by block_scales='group' (rows of A)


def _grouped(acc, fmt_a, fmt_b, ea, sa, eb, sb, c, seed):
    """block_scales='group' (``lowprec.group_step``): per step of n / group groups along K,
    the exact group sums times both scales aligned on the scales' exponents, truncated to F
    bits, summed exactly and rounded once; steps chain along K. Rows of A are taken
    ``GROUP_CHUNK`` group terms at a time, so the terms stay in cache and memory stays small
    (a 512 x 512 x 512 product would otherwise hold six arrays of 8.4M terms)."""
    M, K, N = ea.shape[-2], ea.shape[-1], eb.shape[-1]
    shape = np.broadcast_shapes(ea.shape[:-2], eb.shape[:-2]) + (M, N)
    C = np.zeros(shape) if c is None else np.broadcast_to(_floats(c, "c"), shape)
    check_values(C, acc.addend_format or acc.fmt, "c")
    if acc.stochastic and seed is None:
        raise ValueError("a stochastic accumulator needs seed=<int> at the call")
    sd = check_seed(seed) if acc.stochastic else 0
    nb = int(np.prod(shape[:-2], dtype=np.int64))
    o = np.arange(nb * M * N, dtype=np.int64).reshape(shape)     # output numbers (SR words)
    rows = max(1, GROUP_CHUNK // max(1, N * (K // acc.group)))
    parts = [_grouped_rows(acc, fmt_a, fmt_b, ea[..., r:r + rows, :], sa[..., r:r + rows, :],
                           eb, sb, C[..., r:r + rows, :], sd, o[..., r:r + rows, :])
             for r in range(0, max(M, 1), rows)]
    return np.concatenate(parts, axis=-2) if len(parts) > 1 else parts[0]


def _grouped_rows(acc, fmt_a, fmt_b, ea, sa, eb, sb, C, sd, o):
    """``_grouped`` for some rows of A: C and the output numbers ``o`` of those rows."""
    from ._fused_small import _exponent, _round_value, _sig_exp, _words  # noqa: PLC0415
    from .cast import round as _round  # noqa: PLC0415
    from .group_step import E_ZERO, group_step  # noqa: PLC0415
    from . import xstep  # noqa: PLC0415
    m, sig, label, bad, mab, shape = group_terms(acc, fmt_a, fmt_b, ea, sa, eb, sb)
    G, g = m.shape[1], acc.group
    cf = acc.addend_format or acc.fmt
    plan = _rplan(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant,
                  acc.stochastic)
    o = np.broadcast_to(o, shape).reshape(-1)
    acc_v = np.ascontiguousarray(np.broadcast_to(C, shape), dtype=np.float64).reshape(-1).copy()
    per = acc.fused.n // g
    nerr = 0
    for j, k0 in enumerate(range(0, G, per)):
        sl = slice(k0, k0 + per)
        fin = np.isfinite(acc_v)
        a0 = np.where(fin, acc_v, 0.0)
        cm, ce = _sig_exp(a0)
        c_label = np.where(a0 != 0, _exponent(np.where(a0 != 0, a0, 1.0), cf.emin), E_ZERO)
        S, E = group_step(m[:, sl], sig[:, sl], label[:, sl], cm, ce, c_label,
                          acc.fused.frac_bits, mab)
        v = np.ldexp(S.astype(np.float64), (E - acc.fused.frac_bits).astype(np.int32))
        v = np.where(np.any(bad[:, sl], axis=-1) | np.isnan(acc_v), np.nan,
                     np.where(fin, v, acc_v))
        if acc.stochastic or (not acc.fmt.has_nan and np.isnan(v).any()):
            R = _words(sd, o, j) if acc.stochastic else (None, None)
            val, code = _round_value(v, plan, R)
            nerr += int(np.sum(code == xstep.NO_CODE))
        else:                              # the same step, compiled (lp.round)
            val = _round(v, acc.fmt, acc.rounding, acc.overflow, dtype=np.float64)
        acc_v = val
    if nerr:
        raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN, so it cannot be written "
                         "(whatever overflow=): pass inputs without NaN/Inf")
    return acc_v.reshape(shape)


def _run_fused(acc, SA, EA, FA, SB, EB, FB, mab, C3, seed, n_terms):
    """The fused kernel on prepared significands/exponents; float64 values (nb, M, N)."""
    sr = acc.stochastic
    if sr and seed is None:
        raise ValueError("a stochastic accumulator needs seed=<int> at the call")
    _, P = _rparams(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, sr)
    fz = acc.fused
    cf = acc.addend_format or acc.fmt
    kind = _f32_out_kind(acc)
    prm = np.array([fz.frac_bits, int(fz.align_addend), TERMS[fz.terms], mab, cf.emin,
                    -1 if fz.sum_bits is None else fz.sum_bits, fz.split,
                    int(fz.drop_small_addend), int(fz.inf_products),
                    _A.NO_EXP if fz.zero_exponent is None else fz.zero_exponent,
                    kind] + list(_narrow_params(acc.fmt) if kind == _A.NARROW_RNE else
                                 (0, 0, 0)), dtype=np.int64)
    pro = acc.promote_to
    Ppro = P if pro is None else _rparams(pro.fmt, pro.rounding, pro.overflow, pro.sr_bits,
                                          pro.sr_variant, pro.stochastic)[1]
    if SA.size * SB.shape[1] < SMALL_PRODUCTS:     # NumPy, no compiled kernel
        plan = _rplan(acc.fmt, acc.rounding, acc.overflow, acc.sr_bits, acc.sr_variant, sr)
        plan_pro = None if pro is None else _rplan(pro.fmt, pro.rounding, pro.overflow,
                                                   pro.sr_bits, pro.sr_variant, pro.stochastic)
        small = fused_small(SA, EA, FA, SB, EB, FB, C3, n_terms, fz.frac_bits, fz.zero_exponent,
                            bool(fz.align_addend), TERMS[fz.terms], mab, cf.emin, plan,
                            acc.promote_every or 0, plan_pro or plan,
                            check_seed(seed) if sr else 0,
                            (fz.sum_bits, fz.split, fz.drop_small_addend, fz.inf_products))
        if small is not None:
            if small[1]:
                raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN")
            return small[0]
    out = np.empty(C3.shape)
    errs = np.zeros(1, dtype=np.int64)
    bada = np.any((FA == 1) | (FA == 2), axis=-1)
    badb = np.any((FB == 1) | (FB == 2), axis=-1)
    _A.fused_matmul(SA, EA, SB, EB, FA, FB, bada, badb, C3, n_terms, prm, P,
                    acc.promote_every or 0, Ppro, sr, np.uint64(check_seed(seed) if sr else 0),
                    out, errs)
    if errs[0]:
        raise ValueError(f"a sum is NaN but {acc.fmt.name} has no NaN")
    return out


def int_result_dtype(dtype, fmt):
    """The dtype of an integer accumulator's results: int64, or ``dtype`` if it holds every
    value of ``fmt`` (an integer dtype wide enough, or a float dtype that is exact on them)."""
    if dtype is None:
        return np.dtype(np.int64)
    try:
        rdt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype={dtype!r} is not a NumPy dtype") from None
    lo, hi = int(fmt.min_int), int(fmt.max_int)
    ok = (rdt.kind in "iu" and np.iinfo(rdt).min <= lo and hi <= np.iinfo(rdt).max) or (
        rdt.kind == "f" and max(-lo, hi).bit_length() <= np.finfo(rdt).nmant + 1)
    if not ok:
        raise ValueError(f"dtype={rdt} cannot hold every value of {fmt.name} ({lo} .. {hi}): "
                         "pass a wider integer dtype, or None (int64)")
    return rdt


def _int(acc, A3, B3, C3, K):
    fmt = acc.fmt
    prog, depth = program(acc.order, K, acc.block)
    out = np.empty(C3.shape, dtype=np.int64)
    _A.int_matmul(A3.astype(np.int64), B3.astype(np.int64), C3.astype(np.int64), prog, depth,
                  int(fmt.min_int), int(fmt.max_int), acc.overflow == "saturate", out)
    return out


def dot(a, b, acc="fp32-sequential", c=None, *, seed=None, dtype=None):
    """sum_k a[..., k] * b[..., k] + c as ``acc`` forms it (``matmul`` on vectors; batch
    dimensions broadcast)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError("a and b need at least one dimension (..., K)")
    cc = None if c is None else np.asarray(c)[..., None, None]
    r = matmul(a[..., None, :], b[..., :, None], acc, cc, seed=seed, dtype=dtype)
    return r[..., 0, 0]


def sum(x, acc="fp32-sequential", axis=-1, c=None, *, seed=None, dtype=None):
    """The sum of x along ``axis`` (plus c) as ``acc`` forms it: a dot product with ones."""
    x = np.moveaxis(np.asarray(x), axis, -1)
    ones = np.ones(x.shape[-1], dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    return dot(x, ones, acc, c, seed=seed, dtype=dtype)


def exact_per_block(fmt_a, fmt_b, block=32, fmt="float32"):
    """The accumulator of a software block-scaled GEMM (e.g. an MX kernel that forms each
    block's dot product exactly): every ``block`` consecutive products along K, each scaled
    by its blocks' power-of-two scales, are summed exactly, and that sum is added to the
    running sum (which starts at c) with one nearest-even rounding into ``fmt``. Expressed as
    a fused adder of ``block`` terms, its addend outside the alignment, with enough fraction
    bits that no product loses a bit: F = emax_a + emax_b - emin_a - emin_b + man_a + man_b
    (34 for E4M3 x E4M3, 6 for E2M1 x E2M1). Formats whose products span more than 40 bits
    (E5M2) raise ValueError."""
    fa, fb = _format(fmt_a), _format(fmt_b)
    for f, name in ((fa, "fmt_a"), (fb, "fmt_b")):
        if not isinstance(f, FloatFormat):
            raise ValueError(f"{name}={f.name} is not allowed: exact_per_block takes float "
                             "element formats")
    F = fa.emax + fb.emax - fa.emin - fb.emin + fa.man_bits + fb.man_bits
    if F > 40:
        raise ValueError(f"products of {fa.name} and {fb.name} span {F} bits; exact_per_block "
                         "models at most 40 (FP4, FP6 and E4M3 elements)")
    return Accumulator(fmt, "nearest_even", fused=FusedAdder(block, F, align_addend=False),
                       input_formats=(fa, fb), addend_format=fmt, block_scales="product",
                       name=f"exact-per-block({fa.name}, {fb.name}, {block})")


def a2q_bits(K, n_bits, m_bits, signed_x=True):
    """Accumulator bits P that no order of K products of an n_bits-bit input and an
    m_bits-bit weight can overflow (A2Q, Colbert et al. 2023, docs/matrix-units.md):
    P = ceil(alpha + log2(1 + 2^-alpha) + 1), alpha = log2(K) + n_bits + m_bits - 1 - signed_x."""
    for name, v in (("K", K), ("n_bits", n_bits), ("m_bits", m_bits)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    alpha = math.log2(K) + n_bits + m_bits - 1 - int(bool(signed_x))
    return math.ceil(alpha + math.log2(1 + 2.0 ** -alpha) + 1)
