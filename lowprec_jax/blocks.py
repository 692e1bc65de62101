"""Block quantization in JAX: ``quantize`` (a ``QuantizedArray`` laid out as
``lp.BlockTensor``: blocked axes last, padded, ``(..., blocks, k)``), ``dequantize`` and
``fake_quantize``, bit-identical to ``lp.quantize`` / ``dequantize`` / ``lp.fake_quantize`` for
float32, float16 and bfloat16 inputs: the power-of-two rules (OCP MX ``floor``, ``ceil``,
torchao ``even``, TE/cuBLAS ``rceil``) and NVFP4 (Transformer Engine's two-level float32 rule),
1 x k blocks along any axis or tiles over the last two. Integer operations on the float32 bits
(amax, scale exponents, exact scaling by 2^-e, and NVFP4's float32 products and quotients,
IEEE-rounded in ``_f32``), so that no backend's subnormal flushing or NaN-dropping reduction can
change a bit; except that the power-of-two rules and NVFP4 (Transformer Engine's rule) with a
nearest or stochastic mode use the backend's own float32 instructions where ``native_ok``
proves them IEEE (every operand and result normal, or flushed where the rounding cannot tell),
and ask the core through a host callback where it does not (subnormal inputs, tiny amaxes):
a fraction of the compile time, the same bits. ``fake_quantize`` with a power-of-two rule on
1 x k blocks takes a third path, ``pow2_values``: every element rounded and scaled back on the
integers in x's own layout (no float32 arithmetic, no fallback; docs/blocks.md). torchao
0.18's NVFP4 rule (``nvfp4_torchao``) too; the 4over6 rule stays in the core.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.shard_alike import shard_alike

import lowprec as lp
from lowprec import blocks as _B
from lowprec import xscale
from lowprec.rounding import check_random_source
from lowprec.rounding import check_overflow  # noqa: F401  (same validation as the core)

from .cast import check_x as _check_x
from .stream import random_words as _random_words
from . import _f32 as F
from ._round import round_bits_impl, round_scaled_values, scaled_values_ok

__all__ = ["quantize", "dequantize", "fake_quantize", "QuantizedArray"]

U32 = jnp.uint32
I32 = jnp.int32
POW2_RULES = ("floor", "ceil", "even", "rceil")
TWO_LEVEL = ("nvfp4", "nvfp4_torchao")
RULES = POW2_RULES + TWO_LEVEL


def _i32(b):
    return b.astype(I32)


def _check(x, bf, axis):
    bf = _B.block_format(bf)
    x = _check_x(x)
    if bf.scale_rule not in RULES:
        raise NotImplementedError(f"lowprec_jax.blocks supports the rules {RULES}; "
                                  f"{bf.name} ({bf.scale_rule}) needs lp.quantize")
    if x.dtype.itemsize > 4:
        raise ValueError("lowprec_jax block quantization takes float32, float16 or bfloat16")
    if bf.flush_subnormal_inputs or bf.elem.min_subnormal < 2.0**-80 or not lp.holds(
            bf.elem, np.float32):
        raise NotImplementedError(f"{bf.name}'s element format or policies need the core's "
                                  "float64 path (use lp.quantize)")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension to cut into blocks")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for an input with {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    if bf.tile is not None and (axis != x.ndim - 1 or x.ndim < 2):
        raise ValueError(f"tile={bf.tile} blocks the last two axes of an input of at least "
                         "two dimensions; axis must be -1")
    return bf, x, axis


def _blocked(a, axis, bf, xp=jnp):
    """``_block`` (lowprec/blocks.py): ``a`` with the blocked axes last, padded, cut into blocks
    (..., blocks, k); tiles (r, c) in row-major tile order. ``xp``: jax.numpy or numpy."""
    a = xp.moveaxis(a, axis, -1)
    if bf.tile is None:
        padn = -a.shape[-1] % bf.k
        if padn and not bf.pad:
            raise ValueError(f"axis {axis} has length {a.shape[-1]}, not a multiple of "
                             f"k={bf.k}; use a BlockFormat with pad=True or pad the input")
        if padn:
            a = xp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, padn)])
        return a.reshape(a.shape[:-1] + (a.shape[-1] // bf.k, bf.k))
    r, c = bf.tile
    pr, pc = -a.shape[-2] % r, -a.shape[-1] % c
    if (pr or pc) and not bf.pad:
        raise ValueError(f"the last two axes {a.shape[-2:]} are not multiples of "
                         f"tile={bf.tile}; use pad=True or pad the input")
    a = xp.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, pr), (0, pc)])
    R, C = a.shape[-2:]
    a = xp.swapaxes(a.reshape(a.shape[:-2] + (R // r, r, C // c, c)), -3, -2)
    return a.reshape(a.shape[:-2] + (r * c,))


def unblocked(v, shape, axis, bf):
    """Blocked values (..., blocks, k) back to ``shape`` (``lowprec.blocks.unblock``)."""
    return _B.unblock(v, shape, axis, bf, xp=jnp)


def _amax(xb, top=None):
    """Per block: (|x| bits, NaN flag, Inf flag, largest |x| bits where the block holds no
    NaN or Inf, else 0), from one integer max over the block (NaN and Inf bits are the
    largest; ``top``: that max, if the caller has it). Every rule overrides the scale of a
    block holding Inf or NaN, so its finite amax is not needed."""
    a = xb & U32(0x7FFFFFFF)
    if top is None:
        top = jnp.max(a, axis=-1)
    return a, top > F.INF, top == F.INF, jnp.where(top >= F.INF, U32(0), top)


def once_per_block(v, top):
    """``v`` (integer lanes, one per block) unchanged, computed once per block: divided by
    ``(top >> 31) + 1``, which is 1 (``top``: uint32 magnitude bits, below 2^31) but not a
    constant. XLA copies a chain of cheap operations into every consumer, so a block's scale
    arithmetic would run again for each of its k elements; an integer division by a
    non-constant is one its fusion heuristic will not copy into a consumer that broadcasts
    it, so the chain is computed in the block amax's own pass (about 40% of a quantizer's
    time on XLA's CPU). Only speed depends on it, never a bit."""
    one = lax.add(lax.shift_right_logical(top, U32(31)), U32(1))
    return lax.div(v, one.astype(v.dtype))


def global_amax(xb, tensor_amax=None, rule="nvfp4"):
    """The bits of the global amax g the two-level tensor scale comes from: ``tensor_amax``,
    else the largest |x| that is not NaN (Inf counts; for ``nvfp4_torchao`` NaN when any
    input is NaN, as torch.max)."""
    if tensor_amax is not None:
        return lax.bitcast_convert_type(jnp.asarray(tensor_amax, jnp.float32), U32)
    a = xb & U32(0x7FFFFFFF)
    g = jnp.max(jnp.where(a > F.INF, U32(0), a))
    if rule == "nvfp4_torchao":
        g = jnp.where(jnp.max(a) > F.INF, F.QNAN, g)
    return g


def tensor_scales(g, rule="nvfp4", f=F.BitsF32):
    """The float32 tensor scales (two uint32 scalars) from the global amax bits g:
    ``xscale.te_tensor_scales`` for ``nvfp4``, ``xscale.torchao_tensor_scales`` for
    ``nvfp4_torchao``; ``f``: the float32 arithmetic (``_f32.BitsF32`` or, where
    ``native_ok``, ``_f32.NativeF32``)."""
    if rule == "nvfp4_torchao":
        return xscale.torchao_tensor_scales(f, g)
    return xscale.te_tensor_scales(f, g)


def tensor_scale(ts, bf):
    """The bits of the stored tensor scale (what dequantization multiplies by)."""
    return ts[0] if bf.scale_rule == "nvfp4_torchao" else ts[1]


def _last(v):
    return v[..., None]


def quantize_bits(xb, Rh, Rl, bf, P, ts=None, f=F.BitsF32, values_only=False, top=None,
                  expand=_last, unscaled=False):
    """The block step on float32 bits already cut into blocks (..., blocks, k): (element codes,
    scale codes, dequantized value bits). Shared by ``quantize`` / ``fake_quantize`` and the
    Pallas kernels; P: the element rounding parameters (a tuple, saturating); ts: NVFP4's
    ``tensor_scales``; f: their float32 arithmetic (``_f32.BitsF32``, or ``_f32.NativeF32``
    where ``native_ok``). ``values_only``: the codes are not wanted (None), and the elements
    are rounded by the values-only step ``round_scaled_values`` where it applies. ``top``:
    each block's largest |x| bits (``_amax``), if the caller has them. ``expand``: a block's
    values -> its elements' (``_last``, or ``block_step``'s). ``unscaled``: the two-level
    rules' values are left without their tensor scale (element x block scale: exact)."""
    a, nan, inf, amax = _amax(xb, top)
    if bf.nonfinite == "nan":
        nan = nan | inf
    if bf.scale_rule in TWO_LEVEL:
        if bf.scale_rule == "nvfp4":
            s_codes, mult, vscale = _nvfp4_scales(amax, nan, inf, bf, ts, f, values_only)
            scaled = f.scale_by(xb, expand(mult))
        else:
            s_codes, scaled, vscale, nan = _torchao_scales(xb, amax, nan, inf, bf, ts)
        t = tensor_scale(ts, bf)
        if unscaled:
            scale_value = lambda v: f.mul(v, expand(vscale))  # noqa: E731
        else:
            scale_value = lambda v: f.mul(f.mul(v, expand(vscale)), t)  # noqa: E731
    else:
        s_codes, exp, nan = _pow2_scale_codes(amax, nan, inf, bf, f)
        scaled = f.pow2_product(xb, -expand(exp))
        if bf.nonfinite == "saturate":
            emax_bits = F.const(bf.elem.max)
            scaled = jnp.where(a == U32(0x7F800000), (xb & U32(0x80000000)) | emax_bits,
                               scaled)
        scale_value = lambda v: f.pow2_product(v, expand(exp))  # noqa: E731  exact
    scaled = jnp.where(expand(nan), U32(0), scaled)
    if values_only and scaled_values_ok(P, 0):
        vb = round_scaled_values(scaled, 0, Rl, P)
        return None, s_codes, jnp.where(expand(nan), F.QNAN, scale_value(vb))
    codes, vb = round_bits_impl(scaled, Rh, Rl, P)
    elem = bf.elem
    codes = codes & U32((1 << elem.bits) - 1)
    if elem.has_nan:
        codes = jnp.where(expand(nan), U32(elem.nan_code), codes)
    vb = jnp.where(expand(nan), F.QNAN, scale_value(vb))
    return codes.astype(elem.code_dtype), s_codes, vb


def _pow2_scale_codes(amax, nan, inf, bf, f=F.BitsF32):
    """(scale codes, clipped exponents, NaN flags): ``xscale.pow2_scales`` on int32 lanes
    (rceil's float32 product by ``xscale.rceil_exp32``, in integers: ``f`` is not needed)."""
    codes, exp, nan = xscale.pow2_scales(jnp, _i32(amax), nan, inf, bf, 32)
    return codes.astype(bf.scale_fmt.code_dtype), exp, nan


def _round_scale(sf, values_only=False, native=False):
    """``xscale``'s round_scale: float32 bits -> (codes, value bits) of the scale format,
    nearest even, saturating, through the same rounding step as the elements (codes None and
    the values-only step where ``values_only`` and it applies: a scale's input is never
    negative; with ``native`` float32 arithmetic, ``NativeF32.round_nearest_even``)."""
    Ps = lp.plan(sf, "nearest_even", "saturate")

    def round_scale(v):
        if values_only and native and F.NativeF32.rounds_nearest_even(Ps):
            return None, F.NativeF32.round_nearest_even(v, Ps)
        if values_only and scaled_values_ok(Ps, 0, nonnegative=True):
            return None, round_scaled_values(v, 0, None, Ps)
        z = jnp.zeros_like(v)
        code, vb = round_bits_impl(v, z, z, Ps)
        return code & U32((1 << sf.bits) - 1), vb
    return round_scale


def _nvfp4_scales(amax, nan, inf, bf, ts, f=F.BitsF32, values_only=False):
    """TE's block scales (``xscale.te_block_scales``). Returns (scale codes, multipliers,
    s_b); the codes are None where ``values_only``."""
    sf = bf.scale_fmt
    sb_in = f.mul(jnp.where(inf, F.INF, amax), ts[0])
    code, s_b, mult = xscale.te_block_scales(f, sb_in, ts[1], _round_scale(
        sf, values_only, native=f is F.NativeF32))
    s_codes = None if code is None else jnp.where(nan, sf.nan_code, code).astype(sf.code_dtype)
    return s_codes, mult, s_b


def _torchao_scales(xb, amax, nan, inf, bf, ts):
    """torchao 0.18's nvfp4_quantize (``xscale.torchao_block_scales``). Returns (scale codes,
    scaled element bits, s, NaN blocks)."""
    sf = bf.scale_fmt
    code, s_b, mult, s_nan = xscale.torchao_block_scales(
        F.BitsF32, jnp.where(inf, F.INF, amax), ts[0], ts[1], _round_scale(sf))
    prod = F.BitsF32.clamp_abs(F.mul(xb, mult[..., None]), F.const(bf.elem.max))
    nan = nan | s_nan
    s_codes = jnp.where(nan, sf.nan_code, code)
    return s_codes.astype(sf.code_dtype), prod, s_b, nan


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """A block-quantized JAX array, laid out as ``lp.BlockTensor`` (blocked axes last, padded,
    (..., blocks, k)): element ``codes``, block ``scale_codes``, the float32 ``tensor_scale``
    (NVFP4's S_dec; 1 otherwise); ``shape``, ``axis`` and ``fmt`` are static. A pytree, so it
    passes through ``jit`` / ``vmap``; ``to_core()`` gives the ``lp.BlockTensor``."""
    codes: jax.Array
    scale_codes: jax.Array
    tensor_scale: jax.Array
    shape: tuple = dataclasses.field(metadata=dict(static=True))
    axis: int = dataclasses.field(metadata=dict(static=True))
    fmt: _B.BlockFormat = dataclasses.field(metadata=dict(static=True))

    def to_core(self) -> _B.BlockTensor:
        """The same codes as a NumPy ``lp.BlockTensor``."""
        return _B.BlockTensor(np.asarray(self.codes), np.asarray(self.scale_codes),
                              np.float32(self.tensor_scale), self.shape, self.axis, self.fmt)


def _validated(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key, tensor_amax):
    """(bf, x, axis, P): the block format, input and axis checked (``_check``), the random
    source and ``tensor_amax`` checked, and the element rounding parameters P."""
    bf, x, axis = _check(x, bf, axis)
    if sum(v is not None for v in (seed, rbits, key)) > 1:
        raise ValueError("give one of seed=, rbits=, key= for stochastic rounding")
    if sr_variant == "te":
        raise NotImplementedError("sr_variant='te' is not in lowprec_jax; use lp.quantize")
    if tensor_amax is not None and bf.scale_rule not in TWO_LEVEL:
        raise ValueError(f"tensor_amax is for the two-level rules {TWO_LEVEL}; {bf.name} uses "
                         f"scale_rule={bf.scale_rule!r}")
    P = lp.plan(bf.elem, rounding, "saturate", sr_bits=sr_bits, sr_variant=sr_variant)
    check_random_source(P.mode, 0 if key is not None else seed, rbits)
    return bf, x, axis, P


def block_bits(x, axis, bf):
    """x's float32 bits cut into blocks (..., blocks, k) along ``axis``."""
    return _blocked(lax.bitcast_convert_type(x.astype(jnp.float32), U32), axis, bf)


def prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key, tensor_amax=None,
            lazy=False):
    """Validated (bf, x, axis), x's float32 bits and random words cut into blocks, the element
    rounding parameters P and the bits of the two-level rules' global amax g
    (``global_amax``; None for the other rules). ``lazy``: a key's words come undrawn, at
    x's shape (Rh None, Rl a ``stream.Words``), and no words as None (``block_step``)."""
    bf, x, axis, P = _validated(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key,
                                tensor_amax)
    r = P.sr_bits
    xb = block_bits(x, axis, bf)
    Rh, Rl = _random_words(x.shape, 32, r, seed, rbits, key, lazy=lazy)
    if Rh is not None:
        Rh, Rl = _blocked(Rh, axis, bf), _blocked(Rl, axis, bf)
    g = global_amax(xb, tensor_amax, bf.scale_rule) if bf.scale_rule in TWO_LEVEL else None
    return bf, x, axis, xb, Rh, Rl, P, g


_NAN_EXP = 1 << 20       # pow2_values's marker of a NaN block, beyond every scale exponent


def in_place_path(bf, P):
    """Does ``pow2_values`` serve ``fake_quantize`` for ``bf`` rounded as ``P`` says? A
    power-of-two rule on 1 x k blocks whose element rounding ``round_scaled_values`` does."""
    return (bf.scale_rule in POW2_RULES and bf.tile is None
            and scaled_values_ok(P, bf.scale_fmt.emin))


def pow2_values(x, Rl, bf, P, axis):
    """``fake_quantize``'s values for a power-of-two rule (``in_place_path``) in x's layout:
    each block's amax along ``axis`` (one integer max: NaN and Inf bits are the largest),
    its scale exponent (``xscale.pow2_scales``, rceil by ``xscale.rceil_exp32``), then every
    element rounded and scaled back on the integers (``round_scaled_values``). No transposes,
    no float32 arithmetic: exact on every backend, no host fallback."""
    xb = lax.bitcast_convert_type(x.astype(jnp.float32), U32)
    n, k = x.shape[axis], bf.k
    padn = -n % k
    if padn and not bf.pad:
        raise ValueError(f"axis {axis} has length {n}, not a multiple of k={k}; use a "
                         "BlockFormat with pad=True or pad the input")
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, padn)
    shape = x.shape[:axis] + ((n + padn) // k, k) + x.shape[axis + 1:]
    xb = jnp.pad(xb, widths).reshape(shape)
    a_max = jnp.max(xb & U32(0x7FFFFFFF), axis=axis + 1, keepdims=True)
    nan, inf = a_max > F.INF, a_max == F.INF
    if bf.nonfinite == "nan":
        nan = nan | inf
    # an Inf block's scale does not depend on its finite amax (largest scale, or NaN)
    amax = jnp.where(a_max >= F.INF, U32(0), a_max)
    _, exp, nan = xscale.pow2_scales(jnp, _i32(amax), nan, inf, bf, 32)
    # one division for both (``once_per_block``; a second, for the NaN flags, made a
    # quantizer along the last axis 40% slower): a NaN block's exponent is out of every
    # scale format's range
    exp = once_per_block(jnp.where(nan, I32(_NAN_EXP), exp), a_max)
    nan = exp == _NAN_EXP
    R = None if Rl is None else jnp.pad(Rl, widths).reshape(shape)
    v = round_scaled_values(xb, exp, R, P)
    v = jnp.where(nan, F.QNAN, v).reshape(x.shape[:axis] + (n + padn,) + x.shape[axis + 1:])
    v = lax.slice_in_dim(v, 0, n, axis=axis)
    return lax.bitcast_convert_type(v, jnp.float32)


NATIVE_G_MIN = 2.0 ** -100
# Rounding modes whose result is the same for a float32 subnormal and for the signed zero it
# flushes to, when the element format's smallest step is far above 2^-126 (every element
# format here: 2^-16 at the smallest): no directed mode, and no SR variant that rounds a tiny
# remainder to odd (sr_odd).
_FLUSH_SAFE = {("nearest_even", "srff"), ("nearest_away", "srff"), ("stochastic", "srff"),
               ("stochastic", "srf"), ("stochastic", "src")}


def native_path(bf, P):
    """Can ``block_step`` use the backend's own float32 instructions for ``bf`` rounded as
    ``P`` says (where ``native_ok`` then holds)? The power-of-two rules and Transformer
    Engine's NVFP4 rule, with a flush-safe rounding mode."""
    return (bf.scale_rule in POW2_RULES + ("nvfp4",)
            and (P.mode, P.sr_variant) in _FLUSH_SAFE and P.subnormal_step_exp > -60)


def native_ok(xb, g, bf, P):
    """Do the backend's own float32 instructions (``_f32.NativeF32``) give these blocks the
    IEEE bits (``native_path``)? XLA's CPU treats subnormal operands as zero and flushes
    subnormal results to a signed zero, so: no element of x may be subnormal (a scalar test,
    one pass over x), and

    - power-of-two rules: x * 2^-e and v * 2^e are products by normal powers of two
      (``NativeF32.pow2_product``), exact where normal. A scaled x below 2^-126 flushes to a
      signed zero, which a flush-safe mode rounds as the subnormal. A dequantized v * 2^e is
      x rounded to a grid that holds 2^-126 (a power of two inside the element's range), so
      it is 0 or >= 2^-126 when x is. (rceil's product amax * fl(1 / max) is not formed in
      float32: ``xscale.rceil_exp32``.)
    - NVFP4 (TE): the global amax g is 0, Inf, or in [2^-100, FLT_MAX]. Then S_enc = min(2688 /
      g, FLT_MAX) is in [2^-116, 2^112] and S_dec = 1 / S_enc in [2^-112, 2^116]; the block
      scale s_b is 0 or in [2^-9, 448], so s_b * S_dec and its reciprocal are normal (or 0 and
      Inf, as IEEE); a dequantized value (element * s_b) * S_dec is >= 2^-10 * 2^-112. The two
      products that can fall below 2^-126, amax_b * S_enc / 6 and x * multiplier, flush to a
      signed zero and are rounded to E4M3 or E2M1 by a flush-safe mode (the same code). A
      subnormal block amax gives amax_b * S_enc / 6 < 2^-126 * 2^110, which E4M3 rounds to 0
      as the flushed product does; a subnormal element is multiplied exactly
      (``NativeF32.scale_by``). So subnormal inputs need no fallback: only g is tested.

    Where it fails (power-of-two rules: subnormal inputs; NVFP4: a tensor amax below
    2^-100, or a NaN, since ``block_step`` takes g from the block amaxes; rare in training)
    the core answers through a host callback (``_host_step``)."""
    if bf.scale_rule == "nvfp4":
        return (g == 0) | ((g >= F.const(NATIVE_G_MIN)) & (g <= F.INF))
    a = xb & U32(0x7FFFFFFF)
    return jnp.max(((a != 0) & (a < U32(0x00800000))).astype(U32)) == 0


def _keeps_subnormals():
    tiny = np.array([2.0**-140], np.float32)
    return bool((tiny * np.float32(2.0**10))[0] != 0)


@functools.cache
def _libm():
    return ctypes.CDLL(ctypes.util.find_library("m"))     # find_library runs ldconfig: once


@contextlib.contextmanager
def _ieee_subnormals():
    """The C floating-point environment's defaults (no flush-to-zero, no denormals-are-zero)
    for the duration, then the caller's back: XLA's CPU runs callbacks on its own threads,
    whose flags would change the core's float32 arithmetic (glibc's ``fesetenv(FE_DFL_ENV)``,
    FE_DFL_ENV being ``(fenv_t *) -1``)."""
    if _keeps_subnormals():
        yield
        return
    libm = _libm()
    saved = ctypes.create_string_buffer(1024)          # larger than any fenv_t
    libm.fegetenv(saved)
    libm.fesetenv(ctypes.c_void_p(-1))
    try:
        if not _keeps_subnormals():
            raise RuntimeError("lowprec_jax could not turn off flush-to-zero for the core's "
                               "host callback on this platform")
        yield
    finally:
        libm.fesetenv(saved)


def _host_step(xb, Rh, Rl, g, tensor_amax, *, bf, P, shape, axis, unscaled=False):
    """(codes, scale codes, value bits, tensor scale bits), blocked, from the core's
    ``lp.quantize`` on the host (``jax.pure_callback``) with the same random words: the exact
    answer where ``native_ok`` fails (rare: subnormal inputs, tiny amaxes), without compiling
    the bit-level float32 arithmetic into every model. The blocking is undone and redone on
    the host, so that the branch compiles to the callback alone. ``unscaled``: the values
    without the tensor scale (element x block scale, exact; NaN blocks the quiet NaN)."""
    def host(xb, rh, rl, tamax):
        with _ieee_subnormals():
            return _core(xb, rh, rl, tamax)

    def _core(xb, rh, rl, tamax):
        x, rh, rl = (_B.unblock(w, shape, axis, bf, xp=np) for w in (xb, rh, rl))
        rb = None
        if P.mode == "stochastic":    # the words as lp.quantize reads them
            rb = rl if P.sr_bits <= 32 else (rh.astype(np.uint64) << np.uint64(32)) | rl
        sr = P.mode == "stochastic"
        bt = _B.quantize(x.view(np.float32), bf, axis, P.mode,
                         sr_bits=P.sr_bits if sr else None, sr_variant=P.sr_variant, rbits=rb,
                         tensor_amax=None if tamax.size == 0 else tamax.view(np.float32)[0])
        v = bt.dequantize(np.float32, tensor_scale=not unscaled)
        v = _blocked(v.view(np.uint32), axis, bf, xp=np)
        return (np.asarray(bt.codes, bf.elem.code_dtype),
                np.asarray(bt.scale_codes, bf.scale_fmt.code_dtype), v,
                np.asarray(bt.tensor_scale, np.float32).view(np.uint32))

    shapes = (jax.ShapeDtypeStruct(xb.shape, bf.elem.code_dtype),
              jax.ShapeDtypeStruct(xb.shape[:-1], bf.scale_fmt.code_dtype),
              jax.ShapeDtypeStruct(xb.shape, U32), jax.ShapeDtypeStruct((), U32))
    tam = jnp.zeros((0,), U32) if tensor_amax is None else jnp.reshape(g, (1,))
    return jax.pure_callback(host, shapes, xb, Rh, Rl, tam, vmap_method="sequential")


def tile_in_place(bf, P, shape):
    """Does ``fake_quantize`` round ``bf``'s tiles in x's own layout (``block_step``'s
    ``in_place``)? Tiles on the native path whose last two axes are multiples of the tile."""
    return (bf.tile is not None and native_path(bf, P) and len(shape) >= 2
            and shape[-2] % bf.tile[0] == 0 and shape[-1] % bf.tile[1] == 0)


def _expand_once(top, keepdims):
    """``quantize_bits``'s ``expand`` for blocks whose largest |x| bits are ``top``: each
    block's value computed once per block (``once_per_block``), then broadcast to its
    elements (``keepdims``: the block axes are already there)."""
    def expand(v):
        w = once_per_block(v.astype(U32) if v.dtype == jnp.bool_ else v, top)
        w = (w != 0) if v.dtype == jnp.bool_ else w
        return w if keepdims else w[..., None]
    return expand


def block_step(x, xb, Rh, Rl, bf, P, g, axis, tensor_amax=None, values_only=False,
               in_place=False, unscaled=False, dtype=jnp.float32):
    """(element codes, scale codes, dequantized value bits, tensor scale bits) of ``prepare``'s
    outputs, blocked; ``values_only``: the values alone, float32. Where ``native_path`` allows, the
    float32 scale arithmetic (NVFP4's products and quotients, the power-of-two scalings) runs
    on the backend's own instructions when ``native_ok`` proves them IEEE, and the core
    answers otherwise (``lax.cond``): a fraction of the bit-level graph to compile, and the
    same bits. Every other case runs ``quantize_bits`` on the bits (``_f32.BitsF32``).
    ``in_place`` (``tile_in_place``, values only): tiles are rounded in x's layout, its last
    two axes cut into (R / r, r, C / c, c), and the values come back in x's shape; ``xb`` is
    not used, and the words ``Rh``, ``Rl`` come at x's shape. No transposed copy of x or of
    the values is written. ``unscaled`` (values only, two-level rules): (the values without
    the tensor scale, in ``dtype``, which must hold them exactly; the float32 tensor
    scale). The values leave each branch in ``dtype``: no pass over them to convert.
    ``Rh`` None: ``Rl`` is None (no stochastic rounding) or a ``stream.Words`` at x's shape,
    drawn in each branch where it is read (no array of words is written)."""
    one = F.const(1.0)
    lazy = Rh is None
    block = lambda a: _blocked(a, axis, bf)  # noqa: E731

    def words(layout, zeros=False):          # the branch's words, laid out as it reads them
        if Rl is None:                       # no stochastic rounding: read by no branch but
            z = jnp.zeros(x.shape, U32)      # the host's
            return (layout(z), layout(z)) if zeros else (None, None)
        h, lo = Rl.draw()
        return layout(h), layout(lo)

    def step(xb, Rh, Rl, g, f, top=None, expand=_last):
        ts = None if g is None else tensor_scales(g, bf.scale_rule, f)
        codes, s_codes, vb = quantize_bits(xb, Rh, Rl, bf, P, ts, f, values_only, top, expand,
                                           unscaled)
        if unscaled:
            return (lax.bitcast_convert_type(vb, jnp.float32).astype(dtype),
                    lax.bitcast_convert_type(tensor_scale(ts, bf), jnp.float32))
        if values_only:
            return lax.bitcast_convert_type(vb, jnp.float32)
        return codes, s_codes, vb, U32(one) if ts is None else tensor_scale(ts, bf)

    if not native_path(bf, P):
        if lazy:
            Rh, Rl = words(block)
        return step(xb, Rh, Rl, g, F.BitsF32)

    if in_place:
        r, c = bf.tile

        def cut(a):                              # (..., R, C) -> (..., R / r, r, C / c, c)
            return a.reshape(a.shape[:-2] + (a.shape[-2] // r, r, a.shape[-1] // c, c))
        blocks_of = lambda x: cut(lax.bitcast_convert_type(x.astype(jnp.float32), U32))  # noqa: E731
        # the tiles' maxima in two reductions, over each tile's r rows (an element-wise max
        # of rows, at memory speed) and then over its c columns: XLA's CPU reduces both axes
        # at once five times slower (1024 x 1024, 16 x 16 tiles: 0.37 -> 0.07 ms)
        rows = jnp.max(blocks_of(x) & U32(0x7FFFFFFF), axis=-3).astype(jnp.int32)
        top = jnp.max(rows, axis=-1).astype(U32)[..., None, :, None]
    else:
        blocks_of = lambda x: block_bits(x, axis, bf)  # noqa: E731
        cut = lambda a: a  # noqa: E731
        top = jnp.max(xb & U32(0x7FFFFFFF), axis=-1)
    if bf.scale_rule == "nvfp4":
        # the global amax from the block amaxes (``prepare``'s ``global_amax`` pass is then
        # dead code): a block holding NaN makes g NaN bits, which ``native_ok`` refuses, so
        # the core answers for such a tensor. An int32 max (the bits are below 2^31): XLA
        # would merge a uint32 max of the maxes into a second full pass over x
        g = (global_amax(None, tensor_amax) if tensor_amax is not None
             else jnp.max(top.astype(jnp.int32)).astype(U32))

    # the branches take x itself and cut its bits into blocks there, and return float32
    # values: no copy of x's bits (nor of the values') is written for the branch boundary
    def host(x, Rh, Rl, g, top):
        if lazy:
            Rh, Rl = words(block, zeros=True)
        elif in_place:
            Rh, Rl = block(Rh), block(Rl)
        out = _host_step(block_bits(x, axis, bf), Rh, Rl, g, tensor_amax, bf=bf, P=P,
                         shape=tuple(x.shape), axis=axis, unscaled=unscaled)
        if not values_only:
            return out
        v = lax.bitcast_convert_type(out[2], jnp.float32)
        v = unblocked(v, x.shape, axis, bf) if in_place else v
        if unscaled:
            return v.astype(dtype), lax.bitcast_convert_type(out[3], jnp.float32)
        return v

    def native(x, Rh, Rl, g, top):
        if lazy:
            Rh, Rl = words(cut if in_place else block)
        elif in_place:
            Rh, Rl = cut(Rh), cut(Rl)
        v = step(blocks_of(x), Rh, Rl, g, F.NativeF32, top,
                 _expand_once(top, keepdims=in_place))
        if unscaled:
            return (v[0].reshape(x.shape) if in_place else v[0]), v[1]
        return v.reshape(x.shape) if in_place else v

    return lax.cond(native_ok(blocks_of(x) if in_place else xb, g, bf, P), native, host, x, Rh,
                    Rl, g, top)


_block_step_jit = jax.jit(block_step, static_argnames=("bf", "P", "axis", "values_only",
                                                       "in_place", "unscaled", "dtype"))


def quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, sr_variant="srff",
             seed=None, rbits=None, key=None, tensor_amax=None) -> QuantizedArray:
    """``lp.quantize`` in JAX (OCP MX / power-of-two rules and NVFP4, 1 x k blocks or
    tiles): a ``QuantizedArray`` with the core's codes. ``seed``: the core's Philox words at
    x's flat indices; ``rbits`` broadcastable to x; ``key``: a JAX PRNG key. ``tensor_amax``:
    NVFP4's global amax (default: x's)."""
    bf, x, axis, xb, Rh, Rl, P, g = prepare(x, bf, axis, rounding, sr_bits, sr_variant, seed,
                                            rbits, key, tensor_amax, lazy=True)
    codes, s_codes, _, t = _block_step_jit(x, xb, Rh, Rl, bf, P, g, axis, tensor_amax)
    return QuantizedArray(codes, s_codes, lax.bitcast_convert_type(t, jnp.float32),
                          tuple(x.shape), axis, bf)


def dequantize(q: QuantizedArray, dtype=jnp.float32, tensor_scale=True):
    """``lp.BlockTensor.dequantize`` in JAX: element x block scale (x tensor scale, unless
    ``tensor_scale=False``), each value exact and rounded once to ``dtype``, in the original
    shape."""
    if not isinstance(tensor_scale, (bool, np.bool_)):          # as the core's
        raise TypeError(f"tensor_scale={tensor_scale!r} is not allowed: give True or False")
    bf = q.fmt
    ev = lax.bitcast_convert_type(_decode32(q.codes, bf.elem), U32)
    sv = lax.bitcast_convert_type(_decode32(q.scale_codes, bf.scale_fmt), U32)
    if bf.scale_rule in TWO_LEVEL and tensor_scale:
        t = lax.bitcast_convert_type(jnp.asarray(q.tensor_scale, jnp.float32), U32)
        vb = F.mul(F.mul(ev, sv[..., None]), t)     # the first product is exact
    else:
        vb = F.mul(ev, sv[..., None])               # exact unless it leaves float32
    v = lax.bitcast_convert_type(vb, jnp.float32)
    return unblocked(v, q.shape, q.axis, bf).astype(dtype)


def _decode32(codes, fmt):
    from .cast import decode  # noqa: PLC0415
    return decode(codes, fmt, dtype=np.float32)


def _block_values(x, bf, axis, rounding, sr_bits, sr_variant, seed, rbits, key, tensor_amax,
                  P, unscaled=False, dtype=jnp.float32):
    """``block_step``'s values in x's shape (with ``unscaled``: (values, tensor scale)),
    tiles rounded in place where ``tile_in_place`` allows, sharded as x is."""
    if tile_in_place(bf, P, x.shape):
        Rh, Rl = _random_words(x.shape, 32, P.sr_bits, seed, rbits, key, lazy=True)
        out = _block_step_jit(x, None, Rh, Rl, bf, P, None, axis, tensor_amax,
                              values_only=True, in_place=True, unscaled=unscaled, dtype=dtype)
    else:
        bf, x, axis, xb, Rh, Rl, P, g = prepare(x, bf, axis, rounding, sr_bits, sr_variant,
                                                seed, rbits, key, tensor_amax, lazy=True)
        out = _block_step_jit(x, xb, Rh, Rl, bf, P, g, axis, tensor_amax, values_only=True,
                              unscaled=unscaled, dtype=dtype)
        back = lambda v: unblocked(v, x.shape, axis, bf)  # noqa: E731
        out = (back(out[0]), out[1]) if unscaled else back(out)
    if unscaled:
        return shard_alike(x, out[0])[1], out[1]
    return shard_alike(x, out)[1]


def two_level_parts(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, rbits=None,
                    dtype=jnp.float32):
    """A two-level rule's (NVFP4's) fake quantization of float32 ``x`` in the two parts its
    GEMMs take: (every element times its block's scale, in x's shape: exact, with at most
    4 + 2 significant bits for NVFP4; the float32 tensor scale). ``fake_quantize`` gives
    their product rounded once; a product of two such operands multiplies by both tensor
    scales after the sum (``lowprec.recipes.epilogue``). No gradient (recipes' operands).
    ``dtype``: the values' type, float32 or bfloat16 (it holds NVFP4's exactly; the caller
    decides, as ``lowprec_jax.dot._bf16_exact`` does)."""
    bf_, x, ax, P = _validated(x, bf, axis, rounding, sr_bits, "srff", None, rbits, None, None)
    if bf_.scale_rule not in TWO_LEVEL:
        raise ValueError(f"two_level_parts is for the two-level rules {TWO_LEVEL}; {bf_.name} "
                         f"uses scale_rule={bf_.scale_rule!r}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype={dtype!r} is not allowed: give float32 or bfloat16 (both "
                         "hold NVFP4's element x block-scale values exactly)")
    return _block_values(x, bf_, ax, rounding, sr_bits, "srff", None, rbits, None, None, P,
                         unscaled=True, dtype=dtype)


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None,
                  sr_variant="srff", seed=None, rbits=None, key=None, tensor_amax=None,
                  grad="ste", grad_fmt=None, grad_rounding="nearest_even", grad_kw=None):
    """``lp.fake_quantize`` in JAX: every value rounded to its block's grid and returned in
    x's shape and dtype (NaN blocks NaN). Gradient: straight through (``grad="ste"``, the
    default) or zero (``"none"``); ``grad_fmt``: the incoming gradient is first
    fake-quantized to that block format (``grad_rounding``, stochastic arguments in
    ``grad_kw``), along the same axis, as MX / NVFP4 training recipes do."""
    if grad not in ("ste", "none"):
        raise ValueError(f"grad={grad!r} is not allowed; choose 'ste' or 'none'")
    x = _check_x(x)

    @jax.custom_vjp
    def f(v):
        bf_, v, ax, P = _validated(v, bf, axis, rounding, sr_bits, sr_variant, seed, rbits,
                                   key, tensor_amax)
        if in_place_path(bf_, P):
            Rl = None
            if P.mode == "stochastic":
                Rl = _random_words(v.shape, 32, P.sr_bits, seed, rbits, key)[1]
            return pow2_values(v, Rl, bf_, P, ax).astype(v.dtype)
        return _block_values(v, bf_, ax, rounding, sr_bits, sr_variant, seed, rbits, key,
                             tensor_amax, P).astype(v.dtype)

    def f_bwd(_, g):
        if grad == "none":
            return (jnp.zeros_like(g),)
        if grad_fmt is not None:
            g = fake_quantize(g, grad_fmt, axis, grad_rounding, grad="none", **(grad_kw or {}))
        return (g,)

    f.defvjp(lambda v: (f(v), None), f_bwd)
    return f(x)
