"""``quantized_dot_general``: a drop-in for ``jax.lax.dot_general`` whose three products (the
forward one, the input gradient and the weight gradient) each fake-quantize their two operands
along the contracted axis, as low-precision training recipes do (docs/blocks.md).

Canonical form: the operands are transposed to (batch, M, K) @ (batch, K, N). Forward
Y = q(X) @ q(W), X blocked along K, W along K (or tiled); input gradient dX = q(dY) @ q(W)^T,
both blocked along N; weight gradient dW = q(X)^T @ q(dY), both blocked along M (the tokens),
optionally after the 16-point random Hadamard transform along M (it cancels in the product:
``lowprec.hadamard``). Each q is a ``Quant``; a ``Recipe`` holds the six and names them.

The quantized values are multiplied by the backend's float32 ``dot_general`` (its summation
order is the backend's), or, with ``Recipe.acc`` (an ``lp.Accumulator`` or preset name) and
scalar element formats, by ``lowprec_jax.matmul`` bit for bit (``jax_enable_x64``). Where
every value both quantizers give is a bfloat16 (``_bf16_exact``: bf16 and FP8 scalars, MX
FP4 / FP6 / INT8; MX FP8 on XLA's CPU, whose float32 products treat the subnormal values
bfloat16 cannot hold as zeros anyway) and the product has a form XLA's CPU multiplies in its
fast bfloat16 matmul (the forward product, the input gradient's, and the weight gradient's,
whose X^T is written out for it), they go to ``dot_general`` as bfloat16 with float32
results: the same values, exact products, half the bytes to write and read, and on this
CPU's bfloat16 units a product two to four times as fast (docs/training.md, "What a step costs").
The RHT here is a float32 matmul with the +-1/4 matrix (sums in the backend's order), not the
core's exactly rounded ``lp.rht16``.
"""
from __future__ import annotations

import dataclasses
import operator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lowprec import blocks as _B
from lowprec.hadamard import rht16_matrix
from lowprec.recipes import Quant, Recipe, epilogue, recipe, recipes, two_level  # noqa: F401

from .stream import Words, fold

__all__ = ["Quant", "Recipe", "recipe", "recipes", "quantized_dot_general", "quantized_einsum"]


def _rht_matrix(n, k=16):
    """The RHT's float32 matrix for groups of k (a multiple of 16) along an axis of length n:
    k / 16 copies of ``lp.hadamard.rht16_matrix`` on the diagonal (the added entries are
    exact zeros), or a ValueError naming n."""
    if n % k:
        raise ValueError(f"the random Hadamard transform needs the contracted axis to be a "
                         f"multiple of {k}, got length {n}")
    return jnp.asarray(np.kron(np.eye(k // 16), rht16_matrix()), jnp.float32)


def _rht(x, axis):
    """16-point RHT along ``axis`` (float32, highest precision)."""
    n = x.shape[axis]
    h = _rht_matrix(n)
    x = jnp.moveaxis(x, axis, -1)
    y = x.reshape(x.shape[:-1] + (n // 16, 16)) @ h
    return jnp.moveaxis(y.reshape(x.shape), -1, axis)


def _rht_in_blocks(q, m):
    """Can q's operand of the weight gradient, M = m rows, be quantized in ``_rht_blocks``'s
    layout: an RHT along M and 1 x k blocks along M with k a multiple of 16 (NVFP4's 16, MX's
    32) and of m, so that each block is a whole number of the 16-point transform's groups?"""
    if q.fmt is None or not q.rht or not q.is_block:
        return False
    bf = _B.block_format(q.fmt)
    return bf.tile is None and bf.k % 16 == 0 and m % bf.k == 0


def _rht_blocks(q, x, key):
    """(values, tensor scale) of (B, M, K) x as ``_apply(q, x, -2, key, last=True)`` gives
    them (the RHT along M, then q's 1 x k blocks along M: ``_rht_in_blocks``), laid out as
    (B, M / k, K, k): the transform is one dot_general of x's k-row groups with the
    block-diagonal matrix of k / 16 copies of the 16-point one, which leaves each block's k
    outputs last, where the quantizer reads them, so that no transposed copy of x is
    written (XLA's CPU transposed and transformed 256 x 1024 in 0.6 ms more than this).
    The same words (x's, drawn in this layout) and the same values: the added terms are
    exact zeros (a sum of signed zeros alone may come out +0 where it was -0)."""
    B, M, K = x.shape
    k = _B.block_format(q.fmt).k
    h = _rht_matrix(M, k)
    groups = x.astype(jnp.float32).reshape(B, M // k, k, K)
    y = lax.dot_general(groups, h, (((2,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    words = None
    if q.rounding == "stochastic" and key is not None:      # x's words, at y's places
        words = Words.of(key, groups.shape).swap(2, 3)
    return _apply(dataclasses.replace(q, rht=False), y, -1, None, words=words)


def _apply(q, x, axis, key, last=False, words=None):
    """(values, tensor scale): x fake-quantized as ``q`` says, blocks along ``axis``, float32,
    the tensor scale None, or for two-level formats (NVFP4) the values without their tensor
    scale and that scale apart (``blocks.two_level_parts``; ``_product`` applies it after the
    sum, as NVFP4 GEMMs do). The RHT and prescale
    if q asks, then q's rounding in ``_quantize``, one jitted function per (format, rounding,
    axis, shape), which JAX traces and lowers once however many layers call it (XLA still
    compiles each call site). The stochastic words of ``key`` are x's (``key_words``: they
    depend on the key's site, a static number), given undrawn (``stream.Words``, transposed
    with x), so that the quantizer draws them where it reads them. Formats whose blocks are
    laid out along the last axis anyway (NVFP4's two-level rule) are quantized along the last
    axis of a transposed copy, so that one function serves both axes. ``last``: return the
    result with ``axis`` swapped with the last axis (callers ask where ``_moves_last``: the
    quantization moves the axis last anyway, so nothing is transposed back). ``words``: the
    words to take instead of key's at x's shape (``_rht_blocks``)."""
    x = x.astype(jnp.float32)
    axis %= x.ndim
    def t(a):                                # a (x, or its words) with axis and -1 swapped
        if a is None:
            return None
        return a.swap(axis, -1) if isinstance(a, Words) else jnp.swapaxes(a, axis, -1)
    if q.fmt is None:
        return x, None
    rbits = words
    if q.rounding == "stochastic" and key is not None and words is None:
        rbits = Words.of(key, x.shape)          # drawn where the quantizer reads them
    if last and axis != x.ndim - 1:          # quantize x^T along its last axis
        x, rbits, axis = t(x), t(rbits), x.ndim - 1
    if q.rht:
        x = _rht(x, axis)
    if q.prescale is not None:
        x = x * np.float32(q.prescale)
    q = dataclasses.replace(q, rht=False, prescale=None)
    plan = _plan(q)                          # float32 work: at most 32 random bits
    # the abstract mesh made explicit: JAX sets it for a custom_vjp's backward pass and not for
    # its forward one, and the jit cache's key holds it (one trace for both passes)
    with jax.sharding.use_abstract_mesh(jax.sharding.get_abstract_mesh()):
        if axis == x.ndim - 1 or not _transposed_anyway(q, plan):
            return _quantize(x, rbits, q, axis)
        v, scale = _quantize(t(x), t(rbits), q, x.ndim - 1)
        return t(v), scale


def _plan(q):
    """The core's rounding plan of q's (element) format."""
    import lowprec as lp  # noqa: PLC0415
    if q.is_block:
        return lp.plan(_B.block_format(q.fmt).elem, q.rounding, "saturate", sr_bits=q.sr_bits)
    return lp.plan(q.fmt, q.rounding, None, sr_bits=q.sr_bits, dtype=np.float32)


def _transposed_anyway(q, plan):
    """Does ``blocks.fake_quantize`` move q's block axis last whatever it is (1 x k blocks
    outside the in-place power-of-two path)?"""
    from . import blocks  # noqa: PLC0415
    if not q.is_block:
        return False
    bf = _B.block_format(q.fmt)
    return bf.tile is None and not blocks.in_place_path(bf, plan)


def _quantize_traced(x, rbits, q, axis):
    """(values, tensor scale or None): q's rounding of float32 x along ``axis`` (q without
    RHT or prescale), stochastic with the words ``rbits``."""
    from . import blocks  # noqa: PLC0415
    from .cast import round as _round  # noqa: PLC0415
    kw = dict(rbits=rbits, sr_bits=q.sr_bits) if q.rounding == "stochastic" else {}
    if q.is_block:
        bf = _B.block_format(q.fmt)
        ax = -1 if bf.tile else axis
        if two_level(q):           # bfloat16 out of the quantizer's lax.cond (no extra pass)
            dt = jnp.bfloat16 if _bf16_exact(q) and not bf.tile else jnp.float32
            return blocks.two_level_parts(x, bf, ax, q.rounding, dtype=dt, **kw)
        return blocks.fake_quantize(x, bf, ax, q.rounding, grad="none", **kw), None
    return _round(x, q.fmt, q.rounding, grad="none", dtype=np.float32, **kw), None


_quantize = jax.jit(_quantize_traced, static_argnames=("q", "axis"))


def _product(a, b, acc, qa=None, qb=None, ca=-1, cb=-2, groups=False):
    """The product of the ``_apply`` pairs a and b (values, tensor scale) contracting a's axis
    ``ca`` with b's axis ``cb`` (each -1 or -2 of the last two; a @ b by default; leading axes
    are batch axes) in float32 (or through the accumulator model), then ``epilogue``: times
    the tensor scales, divided by the prescale factors (the accumulator model's result
    multiplied exactly, the float32 dot's by the backend, as the dot itself). The float32
    product takes transposed operands as dot_general's contracting axes (on XLA's CPU, a
    quantizer fused with a transpose ran ten times slower), except a's first axis on XLA's
    CPU, which multiplies that form only in its slow float32 dot: there a^T is written out
    (``_swapped``) and the product takes the forward form. ``groups``: a and b are
    ``_rht_blocks`` layouts (B, M / k, K, k) and (B, M / k, N, k), contracted over M (their
    axes 1 and 3; the float32 dot only)."""
    (a, ta), (b, tb) = a, b
    # the accumulator model's result multiplied exactly (bit-level float32: 2 s of compile
    # for an nvfp4 step's 24 scalar alphas, so not on the float32 dot's path); the float32
    # dot's by the backend, as the dot itself (XLA's CPU flushes a subnormal alpha or
    # result to zero, as it flushes the dot's subnormal products)
    mul, div = ((partial(_ieee, "mul"), partial(_ieee, "div")) if acc is not None
                else (operator.mul, operator.truediv))
    if acc is None:
        n = a.ndim
        exact = _bf16_exact(qa) and _bf16_exact(qb)
        flushed = _bf16_exact(qa, flushed=True) and _bf16_exact(qb, flushed=True)

        def dot(a, b, ca, bf16):
            """The float32 product contracting a's axis ca (bfloat16 operands where bf16
            and the form is one XLA's CPU hands to its fast bfloat16 matmul: both operands
            contract their last axis, or a's last with b's first, or the groups)."""
            both_last = ca % n == n - 1 and cb % n == n - 1 and not groups
            forward_form = ca % n == n - 1 and cb % n == n - 2
            dtype = jnp.bfloat16 if bf16 and (both_last or forward_form or groups) \
                else jnp.float32
            dims = ((((1, 3), (1, 3)), ((0,), (0,))) if groups else
                    (((ca % n,), (cb % n,)), (tuple(range(n - 2)),) * 2))
            y = lax.dot_general(a.astype(dtype), b.astype(dtype), dims,
                                precision=lax.Precision.HIGHEST,
                                preferred_element_type=jnp.float32)
            # XLA's CPU folds a transpose of the result into the product by swapping its
            # operands, and fails at run time on a bfloat16 product whose first operand then
            # contracts its first axis ("Unsupported element type for DotThunk::Execute: BF16
            # x BF16 = F32"); a barrier keeps the forward form as written (both-last products
            # stay themselves when swapped)
            return lax.optimization_barrier(y) if dtype == jnp.bfloat16 and not both_last \
                else y

        # a contracting its first axis (X of the weight gradient): XLA's CPU multiplies that
        # form only in its slow float32 dot, so there a^T is written out (``_swapped``, in
        # bfloat16 where the product takes it) and the product takes the forward form
        first_axis = ca % n == n - 2 and not groups

        def on_cpu(a, b):
            if first_axis:
                return dot(_swapped(a.astype(jnp.bfloat16 if flushed else jnp.float32)), b,
                           -1, flushed)
            return dot(a, b, ca, flushed)
        # flushed: bfloat16 on XLA's CPU only, whose float32 products flush what bfloat16
        # cannot hold (``_bf16_exact``)
        if first_axis or (flushed and not exact):
            y = lax.platform_dependent(a, b, cpu=on_cpu, default=partial(dot, ca=ca, bf16=exact))
        else:
            y = dot(a, b, ca, exact)
    else:
        assert not groups, "the accumulator model takes (batch, M, K) operands"
        from .matmul import matmul  # noqa: PLC0415
        sw = (lambda t, f: jnp.swapaxes(t, -1, -2) if f else t)  # noqa: E731
        y = matmul(sw(a, ca == -2), sw(b, cb == -1), acc)
    return epilogue(y, qa, qb, ta, tb, mul=mul, div=div)


def _swapped(v):
    """v (..., R, C) as (..., C, R), written out by a computation of its own: a ``lax.cond``
    whose two branches are the same transpose, flattened (so that XLA's layout assignment
    cannot make the transpose a view whose reader does the transposing). XLA's CPU would
    otherwise fuse the transpose into v's producer (a quantizer writing its result
    transposed runs several times slower than in place) or fold it into the product's
    contracting axes (a form it multiplies only in float32). The copy costs what writing
    v once costs (256 x 1024 bfloat16: 0.03 ms)."""
    *lead, r, c = v.shape
    if v.size == 0:                   # nothing to write (and no first value to read)
        return jnp.swapaxes(v, -1, -2)

    def swap(a):
        return jnp.swapaxes(a, -1, -2).reshape(*lead, c * r)
    first = v[(0,) * v.ndim]          # the predicate must be read at run time (NaN: False)
    return lax.cond(first == first, swap, swap, v).reshape(*lead, c, r)


def _ieee(op, u, v):
    """u op v for ``op`` "mul" or "div", float32, rounded once as IEEE says (``_f32``), whatever
    the backend flushes (and XLA's CPU divides by a constant through its reciprocal)."""
    from . import _f32 as F  # noqa: PLC0415
    bits = lambda z: lax.bitcast_convert_type(jnp.asarray(z, jnp.float32), jnp.uint32)  # noqa
    u, v = jnp.broadcast_arrays(bits(u), bits(v))
    return lax.bitcast_convert_type(getattr(F, op)(u, v), jnp.float32)


def _bf16_exact(q, flushed=False):
    """Is every float32 value q's quantizer returns a bfloat16 (at most 8 significant bits,
    and every one below 2^-126 on bfloat16's subnormal grid of 2^-133)? Then the float32
    product takes q's operand as bfloat16: the same values (float32 and bfloat16 share their
    exponent range), half the bytes to write and to read, and XLA's CPU multiplies bfloat16
    operands in its fast matmul (the products of two are exact in float32). ``flushed``:
    ignore the values below 2^-126, which XLA's CPU treats as zeros in a float32 product
    anyway (FP8 elements under scales near 2^-127; tests/test_jax_dot.py checks that this
    backend does). Block formats: the power-of-two rules (an element times 2^e, e in the
    scale format's range); two-level rules (NVFP4), whose values ``_apply`` gives without
    the tensor scale: an element times its E4M3 block scale (at most 2 + 4 significant bits,
    none finer than 2^-10). Scalar formats: ``lp.holds`` (a table format's values
    enumerated)."""
    import lowprec as lp  # noqa: PLC0415
    if q is None or q.fmt is None:
        return False
    elem = _B.block_format(q.fmt).elem if q.is_block else lp.format(q.fmt)
    if isinstance(elem, lp.TableFormat):               # no geometry: its values decide
        return not q.is_block and lp.holds(elem, jnp.bfloat16)
    plan = _plan(q)
    finest = plan.subnormal_step_exp                   # the element's smallest step
    bits = plan.man_bits
    if q.is_block:
        from .blocks import POW2_RULES  # noqa: PLC0415
        bf = _B.block_format(q.fmt)
        if two_level(q):                               # element x block scale (_apply)
            sp = lp.plan(bf.scale_fmt, "nearest_even", "saturate")
            finest += sp.subnormal_step_exp
            bits += sp.man_bits + 1
        elif bf.scale_rule in POW2_RULES:
            finest += bf.scale_fmt.emin
        else:
            return False
    return bits <= 7 and (flushed or finest >= -133)


def _is_tiled(q):
    """Does q block in tiles over the last two axes?"""
    return q.fmt is not None and q.is_block and _B.block_format(q.fmt).tile is not None


def _moves_last(q):
    """Does q's quantization along an axis move that axis last (an RHT, or a format that
    ``_transposed_anyway`` quantizes on a transposed copy)? Not for tiles."""
    if q.fmt is None or _is_tiled(q):
        return False
    return q.rht or _transposed_anyway(q, _plan(q))


def _keys(key, n):
    if key is None:
        return [None] * n
    return [fold(key, i) for i in range(n)]


def _axis_free(q):
    """Is q's quantization the same whatever axis it is asked to block along (no format, a
    scalar format, or tiles: ``_apply`` tiles the last two axes either way) and the same every
    time (no random bits, no RHT)? Then the backward pass's quantized dY serves both of its
    products when they quantize it with that Quant."""
    if q.fmt is None:
        return True
    if q.rounding == "stochastic" or q.rht:
        return False
    return not q.is_block or _is_tiled(q)


def _forward(x, w, key, rc):
    kx, kw_ = _keys(key, 2)
    xq, wq = _apply(rc.fwd[0], x, -1, kx), _apply(rc.fwd[1], w, -2, kw_)
    return _product(xq, wq, rc.acc, *rc.fwd), xq, wq


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _qmm(x, w, key, rc):
    return _forward(x, w, key, rc)[0]


def _kept(q, q_bwd):
    """Does the backward pass take the forward's quantized copy of an operand (quantized as
    q, and as ``q_bwd`` by its backward product) as a residual, rather than quantizing the
    operand again? Where the two give the same bits and the quantizer is a tiled block
    format (NVFP4's 16 x 16 weight tiles serve the input gradient, as in arXiv:2509.25149):
    its two-level scale arithmetic costs more than keeping a copy. A scalar format is
    rounded again: under ``lax.scan`` a kept copy is stacked into a residual array by a slow
    fused update (a bf16 step 8.4 ms recomputed, 12.5 ms kept; nvfp4 13.1 ms kept, 14.1 ms
    recomputed; same process, d = 256, depth 8)."""
    return q == q_bwd and _is_tiled(q) and _axis_free(q)


def _qmm_fwd(x, w, key, rc):
    """Residuals: X and W, or their quantized copies where ``_kept``."""
    y, xq, wq = _forward(x, w, key, rc)
    keep_x = xq if _kept(rc.fwd[0], rc.wgrad[0]) else x
    keep_w = wq if _kept(rc.fwd[1], rc.dgrad[1]) else w
    return y, (keep_x, keep_w, key, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _qmm_bwd(rc, res, g):
    x, w, key, x_dt, w_dt = res
    k = _keys(None if key is None else fold(key, 7), 4)
    g32 = g.astype(jnp.float32)
    gd = _apply(rc.dgrad[0], g32, -1, k[0])                        # dY blocked along N
    reuse_w = _kept(rc.fwd[1], rc.dgrad[1])
    wd = w if reuse_w else _apply(rc.dgrad[1], w, -1, k[1])        # W blocked along N
    dx = _product(gd, wd, rc.acc, *rc.dgrad, cb=-1)
    # X and dY blocked along M, in place (the product writes X^T out on XLA's CPU); where
    # their quantization moves M last anyway, as X^T and dY^T
    reuse_x = _kept(rc.fwd[0], rc.wgrad[0])
    same_g = rc.dgrad[0] == rc.wgrad[1] and _axis_free(rc.dgrad[0])
    if (rc.acc is None and not reuse_x and not same_g
            and all(_rht_in_blocks(q, g.shape[-2]) for q in rc.wgrad)
            and len({_B.block_format(q.fmt).k for q in rc.wgrad}) == 1):   # X, dY in groups
        xw, gw = _rht_blocks(rc.wgrad[0], x, k[2]), _rht_blocks(rc.wgrad[1], g32, k[3])
        dw = _product(xw, gw, None, *rc.wgrad, groups=True)
        return dx.astype(x_dt.dtype), dw.astype(w_dt.dtype), None
    tx = not reuse_x and _moves_last(rc.wgrad[0])
    tg = not same_g and _moves_last(rc.wgrad[1])
    xw = x if reuse_x else _apply(rc.wgrad[0], x, -2, k[2], last=tx)
    gw = gd if same_g else _apply(rc.wgrad[1], g32, -2, k[3], last=tg)
    dw = _product(xw, gw, rc.acc, *rc.wgrad, ca=-1 if tx else -2, cb=-1 if tg else -2)
    return dx.astype(x_dt.dtype), dw.astype(w_dt.dtype), None


_qmm.defvjp(_qmm_fwd, _qmm_bwd)


def needs_key(rc):
    """Does the recipe round any operand stochastically (so that it needs a key)?"""
    rc = recipe(rc)
    return any(q.rounding == "stochastic" for pair in (rc.fwd, rc.dgrad, rc.wgrad)
               for q in pair)


def quantized_dot_general(lhs, rhs, dimension_numbers, recipe="bf16", *, key=None,
                          precision=None, preferred_element_type=None):
    """``jax.lax.dot_general`` with each of its three products (forward, input gradient,
    weight gradient) computed on operands fake-quantized by ``recipe`` (a name from
    ``recipes()`` or a ``Recipe``), see the module docstring. ``key``: a JAX PRNG key for
    stochastic rounding (required when the recipe rounds stochastically). ``precision`` is
    accepted for signature compatibility (products run at the highest precision). Returns
    dot_general's shape, in ``preferred_element_type`` or lhs's dtype."""
    rc = globals()["recipe"](recipe)
    if needs_key(rc) and key is None:
        raise ValueError(f"recipe {rc.name!r} rounds stochastically: pass key=<a JAX PRNG key>")
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    (lc, rc_dims), (lb, rb) = dimension_numbers
    lc, rc_dims, lb, rb = (tuple(int(d) % a.ndim for d in ds) for ds, a in
                           ((lc, lhs), (rc_dims, rhs), (lb, lhs), (rb, rhs)))
    lf = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
    rf = [d for d in range(rhs.ndim) if d not in rc_dims and d not in rb]
    bshape = [lhs.shape[d] for d in lb]
    if bshape != [rhs.shape[d] for d in rb] or [lhs.shape[d] for d in lc] != [
            rhs.shape[d] for d in rc_dims]:
        raise ValueError(f"dimension_numbers {dimension_numbers} do not match shapes "
                         f"{lhs.shape} and {rhs.shape}")
    size = lambda a, ds: int(np.prod([a.shape[d] for d in ds], dtype=np.int64))  # noqa: E731
    Bt, M, K, N = size(lhs, lb), size(lhs, lf), size(lhs, lc), size(rhs, rf)
    x = jnp.transpose(lhs, (*lb, *lf, *lc)).reshape(Bt, M, K)
    w = jnp.transpose(rhs, (*rb, *rc_dims, *rf)).reshape(Bt, K, N)
    out = _qmm(x, w, key, rc)
    shape = tuple(bshape) + tuple(lhs.shape[d] for d in lf) + tuple(rhs.shape[d] for d in rf)
    return out.reshape(shape).astype(preferred_element_type or lhs.dtype)


def _einsum_dims(subscripts, lhs, rhs):
    """(dimension_numbers, the letters of dot_general's output, the output's letters) of a
    two-operand einsum, or a ValueError naming what is not allowed."""
    spec = subscripts.replace(" ", "")
    allowed = ("two operands with explicit output ('bqd,bkd->bqk'), one letter per axis, each "
               "letter at most once per operand, every input letter either in both inputs or in "
               "the output")
    if "->" not in spec or "..." in spec or spec.count(",") != 1:
        raise ValueError(f"subscripts={subscripts!r} is not allowed; quantized_einsum takes "
                         f"{allowed}")
    ins, out = spec.split("->")
    a, b = ins.split(",")
    letters = a + b + out
    if not letters.isalpha() or any(len(set(t)) != len(t) for t in (a, b, out)) or (
            len(a), len(b)) != (lhs.ndim, rhs.ndim) or not set(out) <= set(a) | set(b) or any(
            c not in out and c not in (b if c in a else a) for c in a + b):
        raise ValueError(f"subscripts={subscripts!r} do not fit operands of {lhs.ndim} and "
                         f"{rhs.ndim} dimensions; quantized_einsum takes {allowed}")
    batch = [c for c in a if c in b and c in out]
    contract = [c for c in a if c in b and c not in out]
    dims = ((tuple(a.index(c) for c in contract), tuple(b.index(c) for c in contract)),
            (tuple(a.index(c) for c in batch), tuple(b.index(c) for c in batch)))
    got = "".join(batch) + "".join(c for c in a if c not in b) + "".join(
        c for c in b if c not in a)
    return dims, got, out


def quantized_einsum(subscripts, lhs, rhs, recipe="bf16", *, key=None,
                     preferred_element_type=None):
    """A two-operand ``jnp.einsum`` (attention's ``"bhqd,bhkd->bhqk"`` and ``"bhqk,bhkd->bhqd"``)
    through ``quantized_dot_general``: ``lhs`` takes the recipe's X role and ``rhs`` its W
    role, in every product, whatever order jnp.einsum would choose. Letters in both inputs
    and the output are batch axes, letters in both inputs only are contracted (blocked for
    the forward product), the rest are free. Arguments and result as
    ``quantized_dot_general``, the result's axes in the order of the output letters."""
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    dims, got, out = _einsum_dims(subscripts, lhs, rhs)
    y = quantized_dot_general(lhs, rhs, dims, recipe, key=key,
                              preferred_element_type=preferred_element_type)
    return jnp.transpose(y, tuple(got.index(c) for c in out))
