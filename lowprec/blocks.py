"""Block-scaled formats: OCP MX, NVIDIA NVFP4, block floating point (docs/blocks.md).

A ``BlockFormat`` says how a tensor is cut into blocks (``k`` consecutive elements along one
axis, or ``tile = (rows, cols)`` tiles over the last two axes), how each block's scale is chosen
(``scale_rule``) and stored (``scale_fmt``), and what happens on each point where public
implementations disagree. ``quantize`` returns a ``BlockTensor`` of element codes, scale codes
and the tensor scale; ``dequantize`` and ``fake_quantize`` give values back.

Power-of-two scales (MX, block floating point) divide exactly, so every element is rounded
once. NVFP4 follows Transformer Engine's float32 operation order literally (that order *is* the
format's definition, docs/blocks.md), so its element inputs are float32 products, rounded once
into E2M1.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from . import cast, xscale
from .formats import BLOCK_NAMES, FloatFormat, IntFormat, format as _format
from .plan import rounding_args
from .rounding import check_random_source, check_seed, mode_name, random_bits

__all__ = ["BlockFormat", "BlockTensor", "quantize", "fake_quantize", "block_format",
           "block_formats"]

SCALE_RULES = ("floor", "ceil", "even", "rceil", "nvfp4", "nvfp4_torchao", "4over6")
TWO_LEVEL = ("nvfp4", "nvfp4_torchao", "4over6")           # E4M3 block scales x a tensor scale


@dataclasses.dataclass(frozen=True)
class BlockFormat:
    """A block-scaled format.

    elem: element format (name or object). k: block length along the quantized axis; or
    tile=(rows, cols): 2-D tiles over the last two axes (then k is rows * cols). scale_fmt:
    format of the stored block scales. scale_rule: "floor" (OCP MX: 2^(floor(log2 amax) -
    emax_elem)), "ceil" (+1 unless amax is a power of two), "even" (torchao: round amax's
    mantissa to emax_elem's precision, ties away, then floor), "rceil" (TE/cuBLAS MXFP8:
    round amax * fl32(1/max_elem) up to a power of two), "nvfp4" (TE's two-level float32 rule),
    "nvfp4_torchao" (torchao 0.18's: tensor scale amax/2688, block scale clamped to [2^-6,
    448], elements x * ((1/P) / s)),
    "4over6" (TE's rule with tensor bound 256 and, per block, the x1.5 "map to 4" scale when it
    gives the smaller squared error; arXiv:2512.02010).
    scale_overflow: "nan" (the block becomes NaN) or "saturate" (largest scale) when a rule asks
    for a scale above 2^127. nonfinite: "nan" (a block holding Inf becomes NaN, OCP reference
    and torchao) or "saturate" (largest scale, Inf elements saturated, TE); a NaN always makes
    its block's scale NaN (its elements get the element NaN code, or 0 in formats without
    NaN). pad: zero-pad a quantized axis that is not a multiple of the block (the shape is
    remembered) instead of raising.
    flush_subnormal_inputs: treat float32-subnormal inputs as zero (some GPU kernels do).
    """
    elem: object
    k: int = 32
    scale_fmt: object = "float8_e8m0fnu"
    scale_rule: str = "floor"
    tile: tuple | None = None
    scale_overflow: str = "nan"
    nonfinite: str = "nan"
    pad: bool = True
    flush_subnormal_inputs: bool = False
    name: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "elem", _format(self.elem))
        object.__setattr__(self, "scale_fmt", _format(self.scale_fmt))
        if self.tile is not None:
            if (not isinstance(self.tile, tuple) or len(self.tile) != 2
                    or not all(isinstance(t, int) and t >= 1 for t in self.tile)):
                raise ValueError(f"tile={self.tile!r} must be a pair of positive ints (rows, "
                                 "cols)")
            object.__setattr__(self, "k", self.tile[0] * self.tile[1])
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k={self.k!r} must be a positive int (elements per block)")
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"scale_rule={self.scale_rule!r} is not allowed; choose one of "
                             f"{list(SCALE_RULES)}")
        if self.scale_overflow not in ("nan", "saturate"):
            raise ValueError(f"scale_overflow={self.scale_overflow!r}: allowed 'nan', "
                             "'saturate'")
        if self.nonfinite not in ("nan", "saturate"):
            raise ValueError(f"nonfinite={self.nonfinite!r}: allowed 'nan', 'saturate'")
        if not isinstance(self.elem, (FloatFormat, IntFormat)) or not self.elem.signed:
            raise ValueError(f"elem={self.elem.name} must be a signed FloatFormat or IntFormat")
        if self.scale_rule in TWO_LEVEL:
            if self.scale_fmt.name not in ("ue4m3", "float8_e4m3fn"):
                raise ValueError(f"scale_rule={self.scale_rule!r} stores E4M3 block scales: "
                                 "scale_fmt must be 'float8_e4m3fn' or 'ue4m3'")
        elif not _is_power_of_two_format(self.scale_fmt):
            raise ValueError(f"scale_rule={self.scale_rule!r} makes power-of-two scales: "
                             f"scale_fmt must be E8M0-like (exp_bits only), got "
                             f"{self.scale_fmt.name}")
        if self.name is None:
            object.__setattr__(self, "name", f"block({self.elem.name}, k={self.k}, "
                                             f"{self.scale_rule})")

    @property
    def emax_elem(self) -> int:
        """floor(log2(largest element)): 8 for E4M3, 2 for E2M1, 0 for MXINT8 (OCP MX)."""
        return math.frexp(self.elem.max)[1] - 1

    @property
    def bits_per_element(self) -> float:
        """Storage cost: element bits plus the block scale's share (a scale takes a byte even
        where its format has 7 bits, as UE4M3 does)."""
        return self.elem.bits + 8 * np.dtype(self.scale_fmt.code_dtype).itemsize / self.k

    def __repr__(self):
        blk = f"tile={self.tile}" if self.tile else f"k={self.k}"
        return (f"BlockFormat({self.name!r}: elem={self.elem.name}, {blk}, "
                f"scale={self.scale_fmt.name}/{self.scale_rule})")


def _is_power_of_two_format(fmt):
    return isinstance(fmt, FloatFormat) and fmt.man_bits == 0 and not fmt.signed


# ---- presets ----------------------------------------------------------------------------

_PRESETS: dict[str, BlockFormat] = {}


def _preset(name, **kw):
    _PRESETS[name] = BlockFormat(name=name, **kw)
    BLOCK_NAMES[name] = _PRESETS[name].elem.name      # lp.round(x, name) points here


for _n, _e in [("mxfp8_e4m3", "float8_e4m3fn"), ("mxfp8_e5m2", "float8_e5m2"),
               ("mxfp6_e3m2", "float6_e3m2fn"), ("mxfp6_e2m3", "float6_e2m3fn"),
               ("mxfp4", "float4_e2m1fn"), ("mxint8", "mxint8_element")]:
    _preset(_n, elem=_e)                                         # OCP MX v1.0
for _n, _e in [("mxfp8_e4m3_rceil", "float8_e4m3fn"), ("mxfp8_e5m2_rceil", "float8_e5m2"),
               ("mxfp4_rceil", "float4_e2m1fn")]:
    _preset(_n, elem=_e, scale_rule="rceil", scale_overflow="saturate", nonfinite="saturate")
_preset("nvfp4", elem="float4_e2m1fn", k=16, scale_fmt="ue4m3", scale_rule="nvfp4",
        nonfinite="saturate")
_preset("nvfp4_2d", elem="float4_e2m1fn", tile=(16, 16), scale_fmt="ue4m3",
        scale_rule="nvfp4", nonfinite="saturate")
_preset("nvfp4_torchao", elem="float4_e2m1fn", k=16, scale_fmt="float8_e4m3fn",
        scale_rule="nvfp4_torchao", nonfinite="nan", pad=False)
_preset("nvfp4_4over6", elem="float4_e2m1fn", k=16, scale_fmt="ue4m3", scale_rule="4over6",
        nonfinite="saturate")
_preset("bfp16", elem=IntFormat(8, True, frac_bits=6, symmetric=True, name="bfp16_element"),
        k=16)                                                    # MSFP-style: 8-bit sign-mag.


def block_format(name) -> BlockFormat:
    """The preset ``name`` (``block_formats()`` lists them), or a BlockFormat unchanged."""
    if isinstance(name, BlockFormat):
        return name
    if name not in _PRESETS:
        import difflib  # noqa: PLC0415
        close = difflib.get_close_matches(str(name), list(_PRESETS), n=3)
        raise ValueError(f"unknown block format {name!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else "")
                         + f" Known: {', '.join(_PRESETS)}")
    return _PRESETS[name]


def block_formats() -> list[str]:
    """Names of the block-format presets."""
    return list(_PRESETS)


# ---- the quantized tensor -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BlockTensor:
    """Element codes (shape of the padded blocked tensor, blocked axis last), block scale codes
    (one per block), the float32 tensor scale (1.0 unless the rule has one), and what is needed
    to undo the blocking: the original shape and axis, and the format."""
    codes: np.ndarray
    scale_codes: np.ndarray
    tensor_scale: np.float32
    shape: tuple
    axis: int
    fmt: BlockFormat

    def __post_init__(self):
        bf = self.fmt
        if not isinstance(bf, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(bf).__name__}")
        cast._check_codes(self.codes, bf.elem)
        cast._check_codes(self.scale_codes, bf.scale_fmt)
        if self.codes.shape[-1] != bf.k or self.codes.shape[:-1] != self.scale_codes.shape:
            raise ValueError(f"codes {self.codes.shape} must be (..., blocks, {bf.k}) with "
                             f"one scale code per block; scale_codes has shape "
                             f"{self.scale_codes.shape}")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if shape is None or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
            raise TypeError(f"shape must be a tuple of sizes, got {self.shape!r}")
        if isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer)) or \
                not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"axis={self.axis!r} must be the blocked axis of shape {shape}: "
                             f"an int in [{-len(shape)}, {len(shape)})")
        object.__setattr__(self, "axis", int(self.axis) % len(shape))
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        want = blocked_shape(shape, self.axis, bf)
        if self.codes.shape != want:
            raise ValueError(f"codes have shape {self.codes.shape}, but a tensor of shape "
                             f"{shape} blocked along axis {self.axis} in {bf.name} has codes "
                             f"of shape {want}")

    def dequantize(self, dtype=np.float32, tensor_scale=True) -> np.ndarray:
        """Values element x block scale (x tensor scale), in the original shape. Each value is
        computed exactly and rounded once to ``dtype``; NaNs are the positive quiet NaN.
        ``tensor_scale=False``: without the tensor scale, as NVFP4 GEMMs take their operands
        (they apply both tensor scales to the result: ``lowprec.recipes.epilogue``)."""
        if not isinstance(tensor_scale, (bool, np.bool_)):
            raise TypeError(f"tensor_scale={tensor_scale!r} is not allowed: give True or False")
        bf = self.fmt
        elem = cast.decode(self.codes, bf.elem, dtype=np.float64)
        scale = cast.decode(self.scale_codes, bf.scale_fmt, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            v = elem * scale[..., None]                  # exact: 4 + 24 or fewer bits
            if bf.scale_rule in TWO_LEVEL and tensor_scale:
                v = _times_exactly(v, np.float64(self.tensor_scale), dtype)
            else:
                v = v.astype(dtype)
        if np.isnan(v).any():              # the positive quiet NaN (x86's 0 x Inf is negative)
            v = np.where(np.isnan(v), np.array(np.nan, v.dtype), v)
        return unblock(v, self.shape, self.axis, bf)

    def element_and_scale_values(self):
        """(element values, block-scale values), float64, each in the original shape: every
        element beside the scale of its block (the tensor scale is ``tensor_scale``)."""
        bf = self.fmt
        elem = cast.decode(self.codes, bf.elem, dtype=np.float64)
        scale = cast.decode(self.scale_codes, bf.scale_fmt, dtype=np.float64)
        scale = np.broadcast_to(scale[..., None], elem.shape)
        return (unblock(elem, self.shape, self.axis, bf),
                unblock(np.ascontiguousarray(scale), self.shape, self.axis, bf))


def _times_exactly(v, s, dtype):
    """v * s rounded once to ``dtype`` (v has at most 7 significant bits, s 24, so the
    float64 product is exact unless it leaves float64's range, far beyond ``dtype``)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return (v * s).astype(dtype)


# ---- blocking -------------------------------------------------------------------------------

def _block(x, axis, bf):
    """x moved so the blocked axes are last and cut into blocks: (..., nblocks, k)."""
    if bf.tile is None:
        n = x.shape[axis]
        padn = -n % bf.k
        if padn and not bf.pad:
            raise ValueError(f"axis {axis} has length {n}, not a multiple of k={bf.k}; "
                             "use a BlockFormat with pad=True or pad the input")
        x = _moved_padded(x, axis, padn, x.dtype)
        return x.reshape(x.shape[:-1] + (x.shape[-1] // bf.k, bf.k))
    x = np.moveaxis(x, axis, -1)
    if x.ndim < 2:
        raise ValueError(f"tile={bf.tile} needs an input of at least 2 dimensions, got "
                         f"shape {x.shape}")
    r, c = bf.tile
    R, C = x.shape[-2:]
    pr, pc = -R % r, -C % c
    if pr or pc:
        if not bf.pad:
            raise ValueError(f"the last two axes {x.shape[-2:]} are not multiples of "
                             f"tile={bf.tile}; use pad=True or pad the input")
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, pr), (0, pc)])
    R, C = x.shape[-2:]
    x = x.reshape(x.shape[:-2] + (R // r, r, C // c, c))
    x = np.swapaxes(x, -3, -2)                         # (..., R/r, C/c, r, c)
    return x.reshape(x.shape[:-2] + (r * c,))


def blocked_shape(shape, axis, bf):
    """The shape ``_block`` gives a tensor of ``shape`` blocked along ``axis``: (..., blocks,
    k), padding included (computed from the sizes alone)."""
    moved = list(shape)
    moved.append(moved.pop(axis))
    if bf.tile is None:
        return tuple(moved[:-1]) + (-(-moved[-1] // bf.k), bf.k)
    r, c = bf.tile
    return tuple(moved[:-2]) + (-(-moved[-2] // r), -(-moved[-1] // c), r * c)


def unblock(v, shape, axis, bf, xp=np):
    """Blocked values (..., blocks, k) back to ``shape`` (padding dropped, axis restored);
    ``xp``: the array module (NumPy, or ``jax.numpy`` for ``lowprec_jax``)."""
    moved = list(shape)
    moved.append(moved.pop(axis))
    if bf.tile is None:
        v = v.reshape(v.shape[:-2] + (-1,))[..., :moved[-1]]
    else:
        r, c = bf.tile
        v = v.reshape(v.shape[:-1] + (r, c))            # (..., R/r, C/c, r, c)
        v = xp.swapaxes(v, -3, -2)
        v = v.reshape(v.shape[:-4] + (v.shape[-4] * r, v.shape[-2] * c))
        v = v[..., :moved[-2], :moved[-1]]
    return xp.moveaxis(v, -1, axis)


def check_axis(x, axis, bf):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for an input with {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    if bf.tile is not None and axis != x.ndim - 1:
        raise ValueError(f"tile={bf.tile} blocks the last two axes; axis must be -1")
    return axis


# ---- scales ---------------------------------------------------------------------------------

def _amax(blocks):
    """(amax as float64, block has NaN, block has Inf) per block."""
    a = np.abs(blocks.astype(np.float64))
    nan = np.isnan(a).any(axis=-1)
    inf = np.isinf(a).any(axis=-1)
    fin = np.where(np.isfinite(a), a, 0.0)
    return fin.max(axis=-1, initial=0.0), nan, inf


def _float_bits(v, w):
    """Magnitude bits of the float values ``v`` (exact in float``w``) as int64."""
    ft, ut = (np.float32, np.uint32) if w == 32 else (np.float64, np.uint64)
    return (np.abs(np.asarray(v, ft)).view(ut) & ut((1 << (w - 1)) - 1)).astype(np.int64)


def _mul_bits(w):
    """The float``w`` product's bits of magnitude bits ``a`` and a constant (rceil)."""
    ft, ut = (np.float32, np.uint32) if w == 32 else (np.float64, np.uint64)

    def mul(a, c):
        with np.errstate(over="ignore", under="ignore"):
            return (a.astype(ut).view(ft) * ft(c)).view(ut).astype(np.int64)
    return mul


# ---- quantize -------------------------------------------------------------------------------

def quantize(x, bf, axis=-1, rounding="nearest_even", *, sr_bits=None, sr_variant="srff",
             seed=None, rbits=None, tensor_amax=None, _want_values=False) -> BlockTensor:
    """Quantize ``x`` to the block format ``bf`` (a BlockFormat or preset name) along ``axis``.

    Scale per block by ``bf.scale_rule`` (docs/blocks.md); elements x / scale rounded once to
    ``bf.elem`` with ``rounding`` (all modes of ``lp.round``; stochastic takes ``seed`` / ``rbits``
    as there, with ``rbits`` shaped like x and the seeded counter the flat index in x) and
    saturated to the element range. ``sr_variant="te"``: Transformer Engine's emulation of
    Blackwell's FP4 stochastic rounding, t = fma(R/256, step(|v|), |v|) in float32 with R the
    low 8 bits of the element's random word, then t truncated to the element grid (docs/rounding.md).
    ``tensor_amax``: for the two-level rules, the amax the tensor scale is computed from
    (calibrated or delayed scaling); default: this tensor's. Returns a ``BlockTensor``.
    """
    bf = block_format(bf)
    arr, _ = cast._as_float_array(x)
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension to cut into blocks")
    axis = check_axis(arr, axis, bf)
    in_dtype = arr.dtype
    if sr_variant == "te" and (mode_name(rounding) != "stochastic" or in_dtype.itemsize > 4
                               or sr_bits not in (None, 8)):
        raise ValueError("sr_variant='te' is TE's 8-bit float32 stochastic rounding: it needs "
                         "rounding='stochastic', sr_bits=None or 8, and an input of at most "
                         "32 bits")
    check_random_source(mode_name(rounding), seed, rbits)      # as lp.round checks them
    rounding_args(rounding, sr_bits, sr_variant if sr_variant != "te" else "srff",
                  in_dtype.itemsize > 4)
    if rbits is not None and np.shape(rbits) != arr.shape:
        raise ValueError(f"rbits must have x's shape {arr.shape}, got {np.shape(rbits)}")
    if tensor_amax is not None and bf.scale_rule not in TWO_LEVEL:
        raise ValueError(f"tensor_amax is for the two-level rules {TWO_LEVEL}; "
                         f"{bf.name} uses scale_rule={bf.scale_rule!r}")
    if tensor_amax is not None and (np.ndim(tensor_amax) != 0 or isinstance(tensor_amax, bool)
                                    or np.asarray(tensor_amax).dtype.kind not in "uif"):
        raise ValueError(f"tensor_amax must be one number (the tensor's amax), got "
                         f"{np.asarray(tensor_amax).dtype} of shape {np.shape(tensor_amax)}")
    if tensor_amax is not None and not np.float64(tensor_amax) >= 0:
        raise ValueError(f"tensor_amax={tensor_amax!r} must be a number >= 0 (Inf allowed)")
    fast = _fast_quantize(arr, axis, bf, rounding, sr_bits, sr_variant, seed, rbits,
                          tensor_amax, _want_values)
    if fast is not None:
        return fast
    x32 = arr.astype(np.float64 if in_dtype.itemsize > 4 else np.float32, copy=False)
    if bf.flush_subnormal_inputs:
        tiny = np.finfo(np.float32).tiny
        x32 = np.where(np.abs(x32) < tiny, np.copysign(0.0, x32), x32).astype(x32.dtype)
    blocks = _block(x32, axis, bf)
    rb = None
    chunk_seed = None                         # a seed whose words each chunk draws itself
    if mode_name(rounding) == "stochastic":
        r = sr_bits if sr_bits is not None else 64 if in_dtype.itemsize > 4 else 32
        if seed is not None and axis == arr.ndim - 1 and bf.tile is None and \
                arr.shape[-1] % bf.k == 0:
            chunk_seed = (seed, r > 32)       # block j holds flat elements j*k .. j*k + k - 1
        elif seed is not None:
            rbits = random_bits(seed, arr.shape, wide=r > 32)     # as lp.round reads them
        if chunk_seed is None:
            rb = _block(np.asarray(rbits), axis, bf)
        seed = None
        if sr_bits is None and in_dtype.itemsize <= 4 and sr_variant != "te":
            sr_bits, sr_variant = 32, "srff"    # exact SR of a <= 32-bit input: the 32-bit
                                                # word, as lp.round uses it
    kw = dict(sr_bits=sr_bits, sr_variant=sr_variant)
    lead, k = blocks.shape[:-1], blocks.shape[-1]
    flat = blocks.reshape(-1, k)
    rbf = None if rb is None else rb.reshape(-1, k)
    n = flat.shape[0]
    stats = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)   # per block: amax, NaN, Inf
    for s in range(0, n, CHUNK_BLOCKS):
        for dst, src in zip(stats, _amax(flat[s:s + CHUNK_BLOCKS])):
            dst[s:s + CHUNK_BLOCKS] = src
    if bf.scale_rule in TWO_LEVEL:                    # the scales of every block at once
        scales = _two_level_scales(stats, tensor_amax, bf)
    else:
        scales = _scales_of_pow2_blocks(stats, bf, in_dtype)
    codes = np.empty(flat.shape, bf.elem.code_dtype)
    for s in range(0, n, CHUNK_BLOCKS):               # the elements chunk by chunk: blocks
        e = min(s + CHUNK_BLOCKS, n)                  # are independent, temporaries bounded
        ckw = dict(kw, rbits=None if rbf is None else rbf[s:e])
        if chunk_seed is not None:            # the same words random_bits(seed, x.shape) gives
            ckw["rbits"] = random_bits(chunk_seed[0], (e - s, k), chunk_seed[1], offset=s * k)
        part = tuple(a[s:e] if isinstance(a, np.ndarray) and a.ndim else a for a in scales)
        if bf.scale_rule in TWO_LEVEL:
            codes[s:e], scales[0][s:e] = _two_level_elements(flat[s:e], part, bf, rounding, ckw)
        else:
            codes[s:e] = _pow2_elements(flat[s:e], part, bf, rounding, ckw)
    t_scale = scales[-1] if bf.scale_rule in TWO_LEVEL else np.float32(1.0)
    return BlockTensor(codes.reshape(lead + (k,)), scales[0].reshape(lead),
                       np.float32(t_scale), arr.shape, axis, bf)


CHUNK_BLOCKS = 4096     # blocks whose elements are encoded at once on the NumPy path


def _scales_of_pow2_blocks(stats, bf, in_dtype):
    """(scale codes, clipped scale exponents, NaN-block flags) of every block under a
    power-of-two rule, from its (amax, has NaN, has Inf)."""
    amax, nan, inf = stats
    if bf.nonfinite == "nan":
        nan = nan | inf
    return _mx_scales(amax, nan, inf, bf, in_dtype)


def _pow2_elements(blocks, scales, bf, rounding, kw):
    """Element codes of (n, k) blocks under a power-of-two rule, given their scales."""
    _, exp, nan = scales
    scaled = _ldexp_sticky(blocks.astype(np.float64), -exp[..., None])
    if bf.nonfinite == "saturate":
        scaled = np.where(np.isinf(scaled), np.copysign(np.float64(bf.elem.max), scaled),
                          scaled)
    scaled = np.where(nan[..., None], 0.0, scaled)     # NaN blocks: the scale says NaN
    return _mark_nan_blocks(_encode_elements(scaled, bf.elem, rounding, kw), nan, bf.elem)


def _mx_scales(amax, nan, inf, bf, in_dtype):
    """(scale codes, clipped scale exponents, NaN-block flags) of the power-of-two rules
    (``xscale.pow2_scales``), on the bits of amax in the input's float type."""
    w = 64 if np.dtype(in_dtype).itemsize > 4 else 32
    codes, exp, nan = xscale.pow2_scales(np, _float_bits(amax, w), nan, inf, bf, w,
                                         _mul_bits(w))
    return codes.astype(bf.scale_fmt.code_dtype), exp, nan


FAST_MIN_SIZE = cast.SMALL      # smaller inputs take the NumPy path, no compile (tests lower this)


def _fast_quantize(arr, axis, bf, rounding, sr_bits, sr_variant, seed, rbits, tensor_amax,
                   want_values):
    """The fused kernels of ``_blockfast`` for float32 / float16 / bfloat16 input blocked along
    one axis (other axes and padding through one contiguous copy; with ``seed`` only the last
    axis without padding, where the kernel's element index is x's flat index), for the OCP MX
    rules and TE's NVFP4; None elsewhere. Same scale code as the NumPy path, same element
    rounding kernel, so the same bits (tests/test_blocks_paths.py checks the two)."""
    # float32 work type: x * 2^-exp is exact in float32 unless it falls below 2^-126. If the
    # element grid's smallest step is >= 2^-80 (every MX element: E5M2's 2^-16 is the
    # smallest), such a value is under 2^-46 of a step: nearest modes give 0, directed and odd
    # modes see only its sign and that it is not zero (which the kernel keeps), and stochastic
    # rounding with up to 33 random bits gives floor(d 2^33) = 0 either way. Other element
    # formats take the NumPy path (exact in float64).
    n = arr.shape[axis]
    padn = -n % bf.k
    if (arr.dtype.itemsize > 4 or bf.tile is not None or (padn and not bf.pad)
            or (seed is not None and (axis != arr.ndim - 1 or padn))
            or bf.elem.min_subnormal < 2.0**-80 or not cast.holds(bf.elem, np.float32)
            or bf.flush_subnormal_inputs or sr_variant == "te" or arr.size < FAST_MIN_SIZE
            or bf.scale_rule not in ("floor", "ceil", "even", "rceil", "nvfp4")):
        return None
    from . import _blockfast as BK  # noqa: PLC0415
    moved = _moved_padded(arr, axis, padn, np.float32)
    xf = moved.reshape(-1)
    nbk = xf.shape[0] // bf.k
    amax_bits, flags = np.empty(nbk, np.uint32), np.empty(nbk, np.int64)
    BK.block_amax(xf.view(np.uint32).reshape(nbk, bf.k), amax_bits, flags)
    sshape = moved.shape[:-1] + (moved.shape[-1] // bf.k,)
    amax32 = amax_bits.view(np.float32).reshape(sshape)
    mode, r, variant = cast._check_rounding_args(bf.elem, rounding, sr_bits, sr_variant, seed,
                                                 rbits, np.float32)
    rsrc, rb, sd = 0, np.zeros(1, np.uint64), 0
    if rbits is not None:
        rb = cast._prepare_rbits(rbits, arr.shape, r).reshape(arr.shape)
        rsrc, rb = 1, _moved_padded(rb, axis, padn, np.uint64).reshape(-1)
    elif seed is not None:
        rsrc, sd = 2, check_seed(seed)
    general = not (isinstance(bf.elem, FloatFormat) and bf.elem.signed and bf.elem.zero)
    codes = np.empty(1 if want_values else xf.shape, bf.elem.code_dtype)
    values = np.empty(xf.shape if want_values else 1, np.float32)
    if bf.scale_rule == "nvfp4":                # scales in one Numba pass (TE's float32 order)
        g = np.float32(np.inf) if (flags & 2).any() else amax32.max(initial=np.float32(0.0))
        if tensor_amax is not None:
            g = np.float32(tensor_amax)
        sb_mult, s_dec = _te_scale_inputs(g, bf)
        t_scale = s_dec
        s_codes = np.empty(nbk, bf.scale_fmt.code_dtype)
        s_enc_b, s_val, nanv = np.empty(nbk, np.float32), np.empty(nbk), np.empty(nbk, bool)
        Ps = cast._params(bf.scale_fmt, 32, "nearest_even", "saturate", False, 0, "srff")
        BK.te_scales(amax_bits, flags, bf.nonfinite == "nan", np.float32(sb_mult), s_dec,
                     np.float64(t_scale), Ps, bf.scale_fmt.nan_code, s_codes, s_enc_b, s_val,
                     nanv)
        s_codes = s_codes.reshape(sshape)
        P = cast._params(bf.elem, 32, mode, "saturate", False, r, variant)
        BK.scaled_elements(xf, s_enc_b, s_val, nanv, rb, np.uint64(sd), codes,
                           values, P, rsrc, bf.k, general, want_values)
    else:
        nan = (flags & 1).astype(bool).reshape(sshape)
        inf = (flags & 2).astype(bool).reshape(sshape)
        if bf.nonfinite == "nan":
            nan = nan | inf
        s_codes, exp, nan = _mx_scales(amax32.astype(np.float64), nan, inf, bf, np.float32)
        t_scale = np.float32(1.0)
        P = cast._params(bf.elem, 32, mode, "saturate", False, r, variant)
        nan_code = bf.elem.nan_code if bf.elem.has_nan else 0
        BK.pow2_elements(xf, exp.ravel().astype(np.int64), nan.ravel(),
                         bf.nonfinite == "saturate", bf.elem.max, nan_code, rb, np.uint64(sd),
                         codes, values, P, rsrc, bf.k, general, want_values)
    if want_values:
        return np.moveaxis(values.reshape(moved.shape)[..., :n], -1, axis)
    return BlockTensor(codes.reshape(sshape + (bf.k,)), s_codes, np.float32(t_scale), arr.shape,
                       axis, bf)


def _moved_padded(a, axis, padn, dtype):
    """``a`` with ``axis`` moved last, zero-padded by ``padn`` there, contiguous ``dtype`` (a
    view when nothing needs to change)."""
    a = np.ascontiguousarray(np.moveaxis(a, axis, -1), dtype=dtype)
    if padn:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (padn,), dtype)], axis=-1)
    return a


def _encode_elements(v, elem, rounding, kw):
    """Element codes of the scaled values ``v``, saturating; ``sr_variant="te"`` is TE's
    float32 emulation of FP4 stochastic rounding, any other variant is ``lp.encode``'s."""
    if kw["sr_variant"] != "te" or mode_name(rounding) != "stochastic":
        return cast.encode(v, elem, rounding, "saturate", **kw)
    a = np.abs(v).astype(np.float64)
    _, e = np.frexp(np.where(a > 0, a, 1.0))
    step = np.ldexp(1.0, np.clip(e - 1, elem.emin, elem.emax) - elem.man_bits)
    u = (np.asarray(kw["rbits"]).astype(np.uint64) & np.uint64(0xFF)).astype(np.float64)
    t = _add_to_f32(a, u / 256.0 * step)                # fma: one rounding to float32
    return cast.encode(np.copysign(t, v), elem, "toward_zero", "saturate")


def _add_to_f32(a, b):
    """a + b rounded once to float32, for float64 a, b: the float64 sum made round-to-odd with
    the exact error of TwoSum, then rounded to float32 (53 >= 24 + 2 bits, so exact)."""
    s = a + b
    bv = s - a
    err = (a - (s - bv)) + (b - bv)
    odd = s.view(np.uint64) & np.uint64(1)
    fix = (err != 0) & (odd == 0)
    s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    with np.errstate(over="ignore"):
        return s.astype(np.float32)


def _mark_nan_blocks(codes, nan, elem):
    """Elements of a NaN block: the element NaN code where the element format has one (as
    torchao and the OCP reference library leave them), else 0; the scale code already says
    NaN."""
    if nan.any() and elem.has_nan:
        codes = np.where(nan[..., None], elem.nan_code, codes).astype(codes.dtype)
    return codes


def _ldexp_sticky(v, e):
    """v * 2^e in float64. Exact unless the result falls below 2^-1022; there it keeps its sign
    and stays non-zero, which is all any rounding into an element format can see of a value
    that far below the element's smallest step."""
    with np.errstate(under="ignore"):
        out = np.ldexp(v, e)
    lost = (out == 0) & (v != 0)
    if lost.any():
        out = np.where(lost, np.copysign(np.float64(2.0**-1074), v), out)
    return out


_F = xscale.NativeF32(np)


def _round_scale(sf):
    """NumPy's ``round_scale`` for ``xscale``: values -> (codes, float32 values) of the scale
    format, nearest even, saturating."""
    def round_scale(v):
        codes = cast.encode(v, sf, "nearest_even", "saturate")
        return codes, cast.decode(codes, sf, dtype=np.float32)
    return round_scale


def _two_level_scales(stats, tensor_amax, bf):
    """Every block's scales under the two-level rules (``xscale``'s, in float32 and in the
    operation order of the implementation each reproduces), from its (amax, has NaN, has
    Inf): (E4M3 scale codes, element multiplier, NaN-block flags, block-scale input (TE),
    float32 tensor scale)."""
    f32 = np.float32
    amax, nan, inf = stats
    any_nan = bool(nan.any())                          # (torch.max propagates a NaN)
    if bf.nonfinite == "nan":
        nan = nan | inf
    amax32 = np.where(inf, np.inf, amax).astype(f32)
    g = _global_amax(amax32, any_nan, tensor_amax, bf)
    rs = _round_scale(bf.scale_fmt)
    sb_in = None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        if bf.scale_rule == "nvfp4_torchao":
            p, p_inv = xscale.torchao_tensor_scales(_F, g)
            s_codes, _, mult, s_nan = xscale.torchao_block_scales(_F, amax32, p, p_inv, rs)
            nan, t_scale = nan | s_nan, p
        else:
            sb_mult, t_scale = _te_scale_inputs(g, bf)
            sb_in = amax32 * sb_mult
            s_codes, _, mult = xscale.te_block_scales(_F, sb_in, t_scale, rs)
    if nan.any():
        s_codes = np.where(nan, bf.scale_fmt.nan_code, s_codes)
    return s_codes.astype(bf.scale_fmt.code_dtype), mult, nan, sb_in, f32(t_scale)


def _two_level_elements(blocks, scales, bf, rounding, kw):
    """(element codes, scale codes) of (n, k) blocks under a two-level rule, given their
    scales (``_two_level_scales``); 4over6 keeps, per block, the scale (x1 or x1.5 its
    input) whose values are nearer the block's."""
    f32 = np.float32
    s_codes, mult, nan, sb_in, t_scale = scales
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        x32 = blocks.astype(f32, copy=False)
        prod = x32 * mult[..., None]
        if bf.scale_rule == "nvfp4_torchao":
            prod = _F.clamp_abs(prod, f32(bf.elem.max))
    if nan.any():
        prod = np.where(nan[..., None], f32(0.0), prod)
    codes = _encode_elements(prod, bf.elem, rounding, kw)
    if bf.scale_rule == "4over6":           # the same rule with 1.5x the block scale input
        rs = _round_scale(bf.scale_fmt)
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            s4, _, mult4 = xscale.te_block_scales(_F, (sb_in * f32(1.5)).astype(f32),
                                                  t_scale, rs)
            prod4 = np.where(nan[..., None], f32(0.0), x32 * mult4[..., None])
        codes4 = _encode_elements(prod4, bf.elem, rounding, kw)
        use4 = _smaller_error(codes4, s4, codes, s_codes, t_scale, x32, bf) & ~nan
        codes = np.where(use4[..., None], codes4, codes)
        s_codes = np.where(use4, s4, s_codes).astype(s_codes.dtype)
    return codes, s_codes


def _global_amax(amax32, any_nan, tensor_amax, bf):
    if tensor_amax is not None:
        return np.float32(tensor_amax)
    if bf.scale_rule == "nvfp4_torchao" and any_nan:
        return np.float32(np.nan)                       # torch.max propagates NaN
    return np.float32(amax32.max(initial=np.float32(0.0)))   # global amax (Inf if any)


def _te_scale_inputs(g, bf):
    """TE's (block scale multiplier S_enc * fl(1/6), S_dec) from the global amax ``g``
    (``xscale.te_tensor_scales``; bound 448, 256 for 4over6), as float32 scalars."""
    bound = 448.0 if bf.scale_rule == "nvfp4" else 256.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        return tuple(np.float32(v) for v in xscale.te_tensor_scales(_F, np.float32(g), bound))


def _smaller_error(codes_a, s_a, codes_b, s_b, s_dec, x32, bf):
    """Per block: is sum (dequantized - x)^2 exactly smaller with (codes_a, s_a) than with
    (codes_b, s_b)? (4over6's choice; ties keep b.) Float64 decides where the two sums differ
    by more than their rounding error; near-ties are summed exactly in rationals."""
    def deq(codes, sc):
        q = cast.decode(codes, bf.elem, dtype=np.float64)
        return q * cast.decode(sc, bf.scale_fmt, dtype=np.float64)[..., None] * np.float64(s_dec)

    xa = x32.astype(np.float64)
    da, db = deq(codes_a, s_a), deq(codes_b, s_b)      # exact: 3 x 4 x 24 bits
    ea, eb = np.sum((da - xa) ** 2, axis=-1), np.sum((db - xa) ** 2, axis=-1)
    less = ea < eb
    same = (da == db).all(axis=-1)                     # same values: an exact tie, b stays
    near = (np.abs(ea - eb) <= 2.0**-40 * np.maximum(ea, eb)) & ~same
    for i in zip(*np.nonzero(near)):
        x = [Fraction(float(v)) for v in xa[i]]
        fa = sum((Fraction(float(d)) - v) ** 2 for d, v in zip(da[i], x))
        fb = sum((Fraction(float(d)) - v) ** 2 for d, v in zip(db[i], x))
        less[i] = fa < fb
    return less


def fake_quantize(x, bf, axis=-1, rounding="nearest_even", *, dtype=None, **kw):
    """``quantize(x, ...).dequantize(dtype)``: the values the block format gives back (dtype:
    x's float dtype by default)."""
    arr, _ = cast._as_float_array(x)
    try:
        dtype = np.dtype(arr.dtype if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"dtype={dtype!r} is not a NumPy dtype") from None
    if dtype.name not in ("float16", "bfloat16", "float32", "float64"):
        raise ValueError(f"dtype={dtype} is not allowed: fake_quantize returns values, so a "
                         "float dtype (float16, bfloat16, float32, float64); use "
                         "lp.quantize(...).codes for the codes")
    out = quantize(arr, bf, axis, rounding, _want_values=dtype == np.float32, **kw)
    return out if isinstance(out, np.ndarray) else out.dequantize(dtype)
