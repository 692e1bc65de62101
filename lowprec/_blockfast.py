"""Fused Numba kernels for block quantization of float32 data blocked along its last axis
(``blocks`` moves another axis there first): one pass finds each block's amax and Inf/NaN
flags from the bits, one pass scales, rounds and (for fake-quantize) dequantizes every element. The per-block scale rules stay in ``blocks.py``
(NumPy over the small per-block arrays), so both paths share them; the elements go through the
core's rounding kernels (``_fast._fast``, and ``_kernels._round_bits`` where that one does not
apply), so they round exactly as ``lp.encode``. Element kernels are compiled per parameter
tuple (format, mode: the branches fold away) and cached on disk.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .cast import SPECIALISE_MIN_SIZE          # inputs this large: parameters baked in
from ._fast import _as, _fast, _general
from ._kernels import I64, MODE, SR, U64, _random_word, round_one

U32 = np.uint32
_KERNELS = {}


@nb.njit(cache=True, parallel=True)
def block_amax(xb, amax, flags):
    """Per row of the uint32 float bits ``xb`` (blocks, k): the largest finite |x| bits, and
    flags bit 0 = has NaN, bit 1 = has Inf."""
    for i in nb.prange(xb.shape[0]):
        m = U32(0)
        for j in range(xb.shape[1]):                     # vectorises: one max of |bits|
            m = max(m, xb[i, j] & U32(0x7FFFFFFF))
        f = 0
        if m >= U32(0x7F800000):                         # rare: Inf or NaN in the block
            m = U32(0)
            for j in range(xb.shape[1]):
                a = xb[i, j] & U32(0x7FFFFFFF)
                if a > U32(0x7F800000):
                    f |= 1
                elif a == U32(0x7F800000):
                    f |= 2
                else:
                    m = max(m, a)
        amax[i] = m
        flags[i] = f


@nb.njit(cache=True, parallel=True)
def te_scales(amax_bits, flags, nan_if_inf, mult, s_dec, t_scale, Ps, nan_code, s_codes,
              s_enc_b, s_val, nanb):
    """TE's NVFP4 block scales, float32 in TE's order (``xscale.te_tensor_scales`` and
    ``te_block_scales`` do the same for every array library): s_b = e4m3(amax_b * mult)
    (nearest-even, saturating; an Inf block's amax is Inf), s_enc_b = min(1 / (s_b * s_dec), FLT_MAX),
    s_val = s_b * t_scale in float64; NaN blocks (``nan_if_inf``: Inf blocks too) get the
    scale code ``nan_code``."""
    f32max = np.float32(3.4028234663852886e38)
    for i in nb.prange(amax_bits.shape[0]):
        f = flags[i]
        a = _as(amax_bits[i], np.float32(0))
        if f & 2:
            a = np.float32(np.inf)
        sb_in = np.float32(a * mult)
        b = _as(sb_in, U32(0))
        c, v = round_one(I64(b), U64(0), Ps)          # the scales: not a hot loop
        vb, code = U32(v), c
        s_b = _as(U32(vb), np.float32(0))
        s_enc_b[i] = min(np.float32(np.float32(1.0) / np.float32(s_b * s_dec)), f32max)
        s_val[i] = np.float64(s_b) * t_scale
        isnan = (f & 1) != 0 or (nan_if_inf and (f & 2) != 0)
        nanb[i] = isnan
        s_codes[i] = nan_code if isnan else code


ROWS = 256                       # blocks per parallel work item


@nb.njit(nogil=True, cache=True, inline="always")
def _nan_block(base, K, code, codes, values, want_values):
    """A NaN block: its values NaN, its element codes ``code``."""
    for j in range(K):
        if want_values:
            values[base + j] = np.float32(np.nan)
        else:
            codes[base + j] = code


@nb.njit(nogil=True, cache=True, inline="always")
def _pow2_rows(ch, xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes, values,
               P, Pa, rsrc, K, fast, want_values):
    """Blocks ch*ROWS .. of the MX element pass (see ``pow2_elements``); ``fast``: round with
    ``_fast._fast`` and the parameters ``P`` (constants in specialised kernels), else with
    ``_round_bits`` and the parameter array ``Pa``."""
    tiny = np.float32(2.0**-149)
    for i in range(ch * ROWS, min(exps.shape[0], ch * ROWS + ROWS)):
        down = np.float64(2.0) ** (-exps[i])
        up = np.float64(2.0) ** exps[i]
        base = i * K
        if nanb[i]:
            _nan_block(base, K, nan_code, codes, values, want_values)
            continue
        for j in range(K):                               # K constant: vectorises
            v = np.float64(xf[base + j]) * down
            if sat_inf:
                v = min(max(v, -elem_max), elem_max)     # Inf -> +-max; saturating anyway
            w = np.float32(v)            # exact unless below 2^-126, where only the sign
            if w == 0 and v != 0:        # and being non-zero matter (blocks._fast_quantize)
                w = tiny if v > 0 else -tiny
            if fast:
                vb, c = _fast(_as(w, U32(0)), U64(0), P, np.float32, np.uint32)
            else:
                rw = _random_word(rsrc, rbits, seed, base + j, False)
                c, vi = round_one(I64(_as(w, U32(0))), rw, Pa)
                vb = U32(vi)
            if want_values:
                values[base + j] = np.float32(np.float64(_as(vb, np.float32(0))) * up)
            else:
                codes[base + j] = c


@nb.njit(nogil=True, cache=True, inline="always")
def _scaled_rows(ch, xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, P, Pa, rsrc, K,
                 fast, want_values):
    """Blocks ch*ROWS .. of the two-level element pass (see ``scaled_elements``)."""
    for i in range(ch * ROWS, min(s_enc_b.shape[0], ch * ROWS + ROWS)):
        se = s_enc_b[i]
        sv = s_val[i]
        base = i * K
        if nanb[i]:
            _nan_block(base, K, 0, codes, values, want_values)
            continue
        missed = 0
        if fast:
            for j in range(K):                           # K constant: vectorises
                b = _as(xf[base + j] * se, U32(0))      # float32 product, as TE
                missed += _general(b, P, U32)
                vb, c = _fast(b, U64(0), P, np.float32, np.uint32)
                if want_values:
                    values[base + j] = np.float32(np.float64(_as(vb, np.float32(0))) * sv)
                else:
                    codes[base + j] = c
        if not fast or missed:                           # Inf, NaN: the general kernel
            for j in range(K):
                b = _as(xf[base + j] * se, U32(0))
                if not fast or _general(b, P, U32):
                    rw = _random_word(rsrc, rbits, seed, base + j, False)
                    c, v = round_one(I64(b), rw, Pa)
                    if want_values:
                        values[base + j] = np.float32(
                            np.float64(_as(U32(v), np.float32(0))) * sv)
                    else:
                        codes[base + j] = c


@nb.njit(cache=True, parallel=True)
def _pow2_generic(xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes, values, P,
                  rsrc, K, want_values):
    for ch in nb.prange((exps.shape[0] + ROWS - 1) // ROWS):
        _pow2_rows(ch, xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes, values,
                   P, P, rsrc, K, False, want_values)


@nb.njit(cache=True, parallel=True)
def _scaled_generic(xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, P, rsrc, K,
                    want_values):
    for ch in nb.prange((s_enc_b.shape[0] + ROWS - 1) // ROWS):
        _scaled_rows(ch, xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, P, P, rsrc, K,
                     False, want_values)


def pow2_elements(xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes, values, P,
                  rsrc, k, general, want_values):
    """MX elements, flat (block i is elements i*k .. i*k+k-1): x * 2^-exp (float32 work type,
    see ``blocks._fast_quantize``) rounded by ``P`` (saturating); Inf becomes +-elem_max where
    ``sat_inf``; NaN blocks get ``nan_code``.
    ``general``: round with ``_round_bits`` (formats ``_fast`` does not serve: integers).
    Writes ``values`` (dequantized: code value x 2^exp, rounded once to float32) if
    ``want_values``, else ``codes``."""
    args = (xf, exps, nanb, bool(sat_inf), np.float64(elem_max), int(nan_code), rbits, seed,
            codes, values)
    if xf.shape[0] < SPECIALISE_MIN_SIZE or general or P[MODE] == SR:
        return _pow2_generic(*args, P, int(rsrc), int(k), bool(want_values))
    return _specialised("pow2", P, k, want_values)(*args, P)


def scaled_elements(xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, P, rsrc, k, general,
                    want_values):
    """Two-level (NVFP4) elements, flat as in ``pow2_elements``: fl32(x * s_enc_b) rounded by
    ``P`` (float32 work type, saturating); NaN blocks get code 0. ``values``: code value x
    ``s_val`` (block scale times tensor scale, exact in float64) rounded once to float32."""
    args = (xf, s_enc_b, s_val, nanb, rbits, seed, codes, values)
    if xf.shape[0] < SPECIALISE_MIN_SIZE or general or P[MODE] == SR:
        return _scaled_generic(*args, P, int(rsrc), int(k), bool(want_values))
    return _specialised("scaled", P, k, want_values)(*args, P)


def _specialised(kind, P, k, want_values):
    """The element pass compiled with the parameters as constants (the mode and format
    branches fold away and the block loop vectorises); compiled on first use, cached on
    disk, for deterministic rounding of signed float element formats (so no random bits)."""
    key = (kind, tuple(int(v) for v in P), int(k), bool(want_values))
    if key not in _KERNELS:
        _KERNELS[key] = _build(*key)
    return _KERNELS[key]


def _build(kind, PT, K, want_values):
    rsrc = 0
    if kind == "pow2":
        @nb.njit(cache=True, parallel=True)
        def kernel(xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes, values,
                   Pa):
            for ch in nb.prange((exps.shape[0] + ROWS - 1) // ROWS):
                _pow2_rows(ch, xf, exps, nanb, sat_inf, elem_max, nan_code, rbits, seed, codes,
                           values, PT, Pa, rsrc, K, True, want_values)
        return kernel

    @nb.njit(cache=True, parallel=True)
    def kernel(xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, Pa):
        for ch in nb.prange((s_enc_b.shape[0] + ROWS - 1) // ROWS):
            _scaled_rows(ch, xf, s_enc_b, s_val, nanb, rbits, seed, codes, values, PT, Pa, rsrc,
                         K, True, want_values)
    return kernel
