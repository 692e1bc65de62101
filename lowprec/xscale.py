"""The block scale rules, written once against an array namespace ``xp`` (docs/blocks.md).

The power-of-two rules (OCP MX ``floor``, ``ceil``, torchao's ``even``, TE/cuBLAS ``rceil``)
work on the bits of each block's largest magnitude: integer operations that NumPy, torch and
JAX all provide, on int64 lanes (NumPy, torch) or int32 lanes (JAX without x64; float32
magnitudes are below 2^31). ``w`` says which float the bits are: 32 (float32) or 64 (float64).

The two-level NVFP4 rules (Transformer Engine's, torchao's, 4over6's bound) are float32
arithmetic in the operation order of the implementation each reproduces; that order *is* the
rule. They are written against ``f``, a small float32 namespace (``NativeF32(numpy)``,
``NativeF32(torch)``: the library's own IEEE float32; ``lowprec_jax``'s bit-level float32,
because XLA's CPU flushes subnormals) and a ``round_scale`` function (values -> (E4M3 codes,
E4M3 values), nearest even, saturating) that each backend supplies from its rounding step.

Users: ``lowprec.blocks`` (NumPy, every size), ``lowprec_jax.blocks`` and
``lowprec_torch.blocks``. The Numba and Triton kernels mirror these names (``floor_log2``,
``is_pow2``, ``scale_exp``, ``times_pow2``, ``te_block_scales``).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["floor_log2", "is_pow2", "scale_exp", "pow2_scales", "rceil_exp32", "times_pow2", "NativeF32",
           "te_tensor_scales", "te_block_scales", "torchao_tensor_scales",
           "torchao_block_scales", "F32_MAX", "LAYOUT"]

LAYOUT = {32: (23, 127), 64: (52, 1023)}     # float width -> (mantissa bits, exponent bias)
F32_MAX = float(np.finfo(np.float32).max)
_NO_SCALE = -(1 << 20)                       # rceil of a product that underflows to 0


def _msb(xp, q, w):
    """Index of the leading one bit of 0 < q < 2^(mantissa bits) (0 for q = 0)."""
    out = xp.zeros_like(q)
    for b in ((32, 16, 8, 4, 2, 1) if w == 64 else (16, 8, 4, 2, 1)):
        t = q >> b
        c = t != 0
        out = out + xp.where(c, b, 0)
        q = xp.where(c, t, q)
    return out


def floor_log2(xp, a, w=32):
    """floor(log2 v) of positive floats v given as magnitude bits ``a`` (subnormals too).
    NumPy searches the leading bit of the subnormal ones alone (usually none)."""
    mw, bias = LAYOUT[w]
    ef = a >> mw
    if xp is np:
        out = ef - bias
        sub = np.flatnonzero(ef == 0)
        if sub.size:
            flat = out.reshape(-1)
            flat[sub] = _msb(np, a.reshape(-1)[sub] & ((1 << mw) - 1), w) - (bias - 1 + mw)
        return out
    return xp.where(ef > 0, ef - bias, _msb(xp, a & ((1 << mw) - 1), w) - (bias - 1 + mw))


def is_pow2(xp, a, w=32):
    """Is the positive float with magnitude bits ``a`` a power of two?"""
    mw, _ = LAYOUT[w]
    return xp.where((a >> mw) == 0, (a & (a - 1)) == 0, (a & ((1 << mw) - 1)) == 0)


def _elem_man_bits(elem):
    return elem.man_bits if hasattr(elem, "man_bits") else elem.bits - 2


def scale_exp(xp, amax, bf, w=32, mul=None):
    """The unclipped scale exponent e of each block (scale 2^e) from its amax bits (> 0):

    - ``floor`` (OCP MX v1.0 section 6.3): floor(log2 amax) - emax_elem;
    - ``ceil``: the smallest e with amax / 2^e <= 2^emax_elem;
    - ``even`` (torchao's MX cast): amax's exponent after rounding amax to the element's
      mantissa width (half an ulp added, mantissa cleared), minus emax_elem;
    - ``rceil`` (TE, cuBLAS): e = ceil(log2(amax * fl(1 / max_elem))) with the product
      rounded in the input's float type; ``mul(a_bits, c)`` is that product's bits for a
      constant ``c`` (np.float32 / np.float64), supplied by the backend; without ``mul``,
      float32 amaxes take ``rceil_exp32`` (the same exponents in integer operations).
    """
    emax = bf.emax_elem
    mw, bias = LAYOUT[w]
    safe = xp.where(amax > 0, amax, bias << mw)        # the bits of 1.0 where amax is 0
    rule = bf.scale_rule
    if rule == "floor":
        return floor_log2(xp, safe, w) - emax
    if rule == "ceil":
        return floor_log2(xp, safe, w) - emax + xp.where(is_pow2(xp, safe, w), 0, 1)
    if rule == "even":
        half = 1 << (mw - _elem_man_bits(bf.elem) - 1)
        return ((safe + half) >> mw) - bias - emax
    if rule != "rceil":
        raise ValueError(f"scale_rule={rule!r} is not a power-of-two rule")
    if w == 32 and mul is None:
        return rceil_exp32(xp, safe, bf)
    ft = np.float32 if w == 32 else np.float64
    p = mul(safe, ft(1.0) / ft(bf.elem.max)) & ((1 << (w - 1)) - 1)
    e = floor_log2(xp, xp.where(p == 0, 1, p), w) + xp.where(is_pow2(xp, p, w), 0, 1)
    inf = p == ((2 * bias + 1) << mw)
    return xp.where(inf, 1023, xp.where(p == 0, _NO_SCALE, e))


@functools.lru_cache(maxsize=64)
def _rceil_table32(elem_max, scale_emin):
    """(f0, m_star, [(k, t_k)]) of ``rceil_exp32``, found with NumPy's IEEE float32 product
    (subnormals kept): f0 = e(1.0); m_star, the largest mantissa field m with e((1 + m 2^-23))
    = f0; t_k, the largest amax bits with e(amax) <= k, for the scale exponents k below -126
    down to the scale format's emin (there float32's subnormal rounding breaks the pattern)."""
    tiny = np.array([2.0**-140], np.float32)
    if (tiny * np.float32(2.0**10))[0] == 0:
        raise RuntimeError("rceil_exp32's table needs IEEE float32 subnormals in NumPy, and "
                           "this thread flushes them")
    c = np.float32(1.0) / np.float32(elem_max)

    def e(bits):
        p = (np.asarray([bits], np.uint32).view(np.float32) * c).view(np.uint32).astype(
            np.int64) & 0x7FFFFFFF
        if p[0] == 0:
            return _NO_SCALE
        return int(floor_log2(np, p)[0] + np.where(is_pow2(np, p), 0, 1)[0])

    def last(lo, hi, ok):                   # the largest b in [lo, hi] with ok(b); ok(lo)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        return lo

    one = 127 << 23
    f0 = e(one)
    m_star = last(0, (1 << 23) - 1, lambda m: e(one | m) == f0) if e(one) == f0 else -1
    if e(one | ((1 << 23) - 1)) > f0 + 1:
        raise ValueError("rceil_exp32: the product crosses two binades")
    lows = [(k, last(0, 0x7F7FFFFF, lambda b, k=k: e(b) <= k)) for k in range(scale_emin, -126)]
    return f0, m_star, lows


def rceil_exp32(xp, amax, bf):
    """``scale_exp``'s rceil rule for float32 amax bits (> 0) in integer operations only:
    e = ceil(log2(fl32(amax * fl32(1 / max_elem)))), the IEEE float32 product, as
    floor_log2(amax) + f0 + [mantissa(amax) > m_star] where the product is normal, and by
    comparison with tabulated amaxes where it is not (``_rceil_table32``). Exponents below
    the scale format's emin come out as emin (the caller clips them there)."""
    sf = bf.scale_fmt
    if sf.emin < -149:
        raise NotImplementedError("rceil_exp32 needs a scale format with emin >= -149")
    f0, m_star, lows = _rceil_table32(float(bf.elem.max), int(sf.emin))
    e = (amax >> 23) - 127 + f0 + xp.where((amax & 0x7FFFFF) > m_star, 1, 0)
    for k, t in reversed(lows):
        e = xp.where(amax <= t, k, e)
    return e


def pow2_scales(xp, amax, nan, inf, bf, w=32, mul=None):
    """(scale codes, clipped exponents, NaN blocks) of a power-of-two rule: an all-zero block
    gets the smallest scale; with ``nonfinite="saturate"`` an Inf block the largest (TE);
    exponents above the scale format's range make the block NaN (``scale_overflow="nan"``) or
    clip; NaN blocks get the scale's NaN code (its largest code if it has none). Codes and
    exponents are integer lanes; the caller casts to the code dtype."""
    sf = bf.scale_fmt
    exp = xp.where(amax > 0, scale_exp(xp, amax, bf, w, mul), sf.emin)
    if bf.nonfinite == "saturate":
        exp = xp.where(inf, sf.emax, exp)
    if bf.scale_overflow == "nan":
        nan = nan | (exp > sf.emax)
    exp = xp.clip(exp, sf.emin, sf.emax)
    s_nan = sf.nan_code if sf.has_nan else sf.max_code
    return xp.where(nan, s_nan, exp + sf.bias), exp, nan


def times_pow2(xp, a, k):
    """Float32 magnitude bits ``a`` times 2^k (per-element k): exact where the result is a
    normal float32 or exactly a subnormal, Inf beyond float32's range; a result below 2^-126
    that would lose bits becomes the smallest subnormal, which every rounding into an element
    format whose smallest step is at least 2^-80 treats as the exact value (docs/blocks.md).
    The caller puts the sign back."""
    ef, mant = a >> 23, a & 0x7FFFFF
    lz = 23 - _msb(xp, mant, 32)                       # subnormal: bring the msb to bit 23
    sig = xp.where(ef > 0, mant | (1 << 23), mant << xp.clip(lz, 0, 31))
    E = xp.where(ef > 0, ef - 127, -126 - lz) + k
    normal = (xp.clip(E + 127, 0, 255) << 23) | (sig & 0x7FFFFF)
    sh = -126 - E                                      # subnormal result: shift right
    shc = xp.clip(sh, 0, 31)
    exact = (sh <= 24) & ((sig & ((xp.ones_like(shc) << shc) - 1)) == 0)
    out = xp.where(E >= -126, normal, xp.where(exact, sig >> shc, 1))
    out = xp.where(E > 127, 0x7F800000, out)
    return xp.where(a == 0, 0, out)


class NativeF32:
    """Float32 arithmetic of an array library that keeps subnormals (NumPy; torch unless
    ``torch.set_flush_denormal(True)``): the ``f`` of the two-level rules."""

    def __init__(self, xp):
        self.xp = xp

    def const(self, v):
        return self.xp.asarray(np.float32(v))

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def min_finite(self, a):
        """min(a, FLT_MAX), NaN kept."""
        return self.xp.clip(a, None, F32_MAX)

    def clip(self, a, lo, hi):
        """a clipped to [lo, hi] for a >= 0 not NaN."""
        return self.xp.clip(a, lo, hi)

    def clamp_abs(self, a, m):
        """a clipped to [-m, m], NaN kept."""
        return self.xp.where(self.xp.isnan(a), a, self.xp.clip(a, -m, m))

    def isnan(self, a):
        return self.xp.isnan(a)

    def iszero(self, a):
        return a == 0

    def where(self, c, a, b):
        return self.xp.where(c, a, b)


def te_tensor_scales(f, g, bound=448.0):
    """Transformer Engine's NVFP4 tensor scale from the global amax ``g``: S_enc =
    min(bound * 6 / g, FLT_MAX), 1 where g is 0 or S_enc is 0 or NaN; returns the block scales'
    multiplier S_enc * fl(1/6) and S_dec = 1 / S_enc, float32 in TE's order. ``bound``: 448
    (E4M3's largest value); the 4over6 rule uses 256."""
    s_enc = f.min_finite(f.div(f.const(bound * 6.0), g))
    s_enc = f.where(f.iszero(g) | f.iszero(s_enc) | f.isnan(s_enc), f.const(1.0), s_enc)
    return f.mul(s_enc, f.const(np.float32(1.0) / np.float32(6.0))), f.div(f.const(1.0), s_enc)


def te_block_scales(f, sb_in, s_dec, round_scale):
    """TE's block scales from their inputs sb_in = amax_b * (S_enc * fl(1/6)) (an Inf block's
    amax is Inf): s_b = e4m3(sb_in) nearest even, saturating, and the elements' multiplier
    min(1 / (s_b * S_dec), FLT_MAX), float32. Returns (scale codes, s_b, multipliers)."""
    codes, s_b = round_scale(sb_in)
    return codes, s_b, f.min_finite(f.div(f.const(1.0), f.mul(s_b, s_dec)))


def torchao_tensor_scales(f, g):
    """torchao 0.18's NVFP4 per-tensor scale (nvfp4_tensor.py): P = g / (448 * 6) and 1 / P,
    float32, g NaN when any input is NaN (torch.max propagates it)."""
    p = f.div(g, f.const(448.0 * 6.0))
    return p, f.div(f.const(1.0), p)


def torchao_block_scales(f, amax, p, p_inv, round_scale):
    """torchao 0.18's block scales: s = e4m3(clamp(amax_b / 6 / P, 2^-6, 448)) and the elements'
    multiplier (1 / P) / s, float32, NaN propagating (a NaN scale input gives the NaN code).
    Returns (scale codes, s, multipliers, NaN blocks); the elements are then
    clamp(x * multiplier, -6, 6) (``f.clamp_abs``)."""
    sbs = f.div(f.div(amax, f.const(6.0)), p)
    nan = f.isnan(sbs)
    sbs = f.clip(f.where(nan, f.const(0.0), sbs), f.const(2.0**-6), f.const(448.0))
    codes, s = round_scale(sbs)
    return codes, s, f.div(p_inv, s), nan
