"""Block-quantization oracle, written from docs/blocks.md with exact rationals (Fractions) and the
scalar oracle's tables; the only float arithmetic is where the definition itself is float32
arithmetic (rceil's product, NVFP4), done with NumPy float32 (IEEE 754). Shares no code with
lowprec. One block at a time, one element at a time."""
from fractions import Fraction as Fr

import numpy as np

import oracle

E8M0_BIAS = 127


def floor_log2(v: Fr) -> int:
    """floor(log2(v)) of a positive rational, by comparing with powers of two."""
    e = v.numerator.bit_length() - v.denominator.bit_length()
    while Fr(2) ** e > v:
        e -= 1
    while Fr(2) ** (e + 1) <= v:
        e += 1
    return e


def emax_of(t):
    return floor_log2(t.max)


def mx_scale_exp(block, rule, t_elem, m_elem):
    """Scale exponent of a finite, non-zero block (list of floats) under an MX rule, or None for
    an all-zero block."""
    amax = max(abs(Fr(float(v))) for v in block)
    if amax == 0:
        return None
    emax = emax_of(t_elem)
    fl = floor_log2(amax)
    if rule == "floor":
        return fl - emax
    if rule == "ceil":
        return fl - emax + (amax != Fr(2) ** fl)
    if rule == "even":              # round amax to m_elem fraction bits, ties away, then floor
        ulp = Fr(2) ** (fl - m_elem)
        q = amax / ulp
        r = (q + Fr(1, 2)).__floor__() * ulp
        return floor_log2(r) - emax
    if rule == "rceil":             # fl32(amax * fl32(1 / max)) rounded up to a power of two
        p = Fr(float(np.float32(amax) * (np.float32(1.0) / np.float32(float(t_elem.max)))))
        if p == 0:                  # underflow: below every scale, clamps to the smallest
            return -10**6
        e = floor_log2(p)
        return e if p == Fr(2) ** e else e + 1
    raise ValueError(rule)


def mx_block(block, rule, t_elem, m_elem, mode="nearest_even", scale_overflow="nan",
             nonfinite="nan"):
    """(scale code, element codes) of one block under OCP MX with the given scale rule.
    Element codes are None in a NaN block (the scale says NaN; lowprec writes zeros)."""
    vals = [float(v) for v in block]
    if any(np.isnan(v) for v in vals):
        return 0xFF, None
    has_inf = any(np.isinf(v) for v in vals)
    if has_inf and nonfinite == "nan":
        return 0xFF, None
    e = 127 if has_inf else mx_scale_exp(vals, rule, t_elem, m_elem)   # Inf: largest scale
    if e is None:
        e = -127
    if e > 127:
        if scale_overflow == "nan":
            return 0xFF, None
        e = 127
    e = max(e, -127)
    X = Fr(2) ** e
    codes = []
    for v in vals:
        if np.isinf(v):                               # nonfinite == "saturate"
            codes.append(oracle.round_exact("-inf" if v < 0 else "inf", t_elem, mode,
                                            "saturate"))
            continue
        x = Fr(v) / X
        codes.append(oracle.round_exact(("-0" if np.signbit(v) else Fr(0)) if x == 0 else x,
                                        t_elem, mode, "saturate"))
    return e + E8M0_BIAS, codes


def nvfp4(blocks, t_e2m1, t_e4m3):
    """TE's NVFP4 (docs/blocks.md) for a list of 16-element float32 blocks: (tensor S_dec as
    float32, [(scale code, element codes)]), float32 arithmetic in TE's order, each rounding to
    E4M3 / E2M1 done by the scalar oracle (nearest-even, saturating)."""
    f32 = np.float32
    amaxes = [max((abs(f32(v)) for v in b), default=f32(0)) for b in blocks]
    g = max(amaxes)
    with np.errstate(divide="ignore", over="ignore"):
        s_enc = min(f32(448.0 * 6.0) / g, f32(np.finfo(np.float32).max)) if g > 0 else f32(1)
    if s_enc == 0:
        s_enc = f32(1.0)
    s_enc = f32(s_enc)
    s_dec = f32(1.0) / s_enc
    out = []
    for b, am in zip(blocks, amaxes):
        with np.errstate(over="ignore"):
            sb_in = f32(am * f32(s_enc * (f32(1.0) / f32(6.0))))
        sc, _, codes = _te_block(b, sb_in, s_dec, t_e2m1, t_e4m3)
        out.append((sc, codes))
    return s_dec, out


def _te_block(b, sb_in, s_dec, t_e2m1, t_e4m3):
    """TE: scale code e4m3(sb_in), s_b its value, elements e2m1(x * min(1 / (s_b * S_dec),
    FLT_MAX)), each step float32."""
    f32 = np.float32
    sc = _code_of_float(sb_in, t_e4m3)
    s_b = f32(float(t_e4m3.values[sc]))
    with np.errstate(divide="ignore", over="ignore"):
        s_enc_b = f32(min(f32(1.0) / f32(s_b * s_dec), f32(np.finfo(np.float32).max)))
    codes = []
    for v in b:
        with np.errstate(over="ignore"):
            codes.append(_code_of_float(f32(f32(v) * s_enc_b), t_e2m1))
    return sc, s_b, codes


def _code_of_float(p, t):
    if np.isinf(p):
        return oracle.round_exact("-inf" if p < 0 else "inf", t, "nearest_even", "saturate")
    x = Fr(float(p))
    return oracle.round_exact(("-0" if np.signbit(p) else Fr(0)) if x == 0 else x, t,
                              "nearest_even", "saturate")


def nvfp4_torchao(blocks, t_e2m1, t_e4m3fn):
    """torchao 0.18's nvfp4_quantize with the per-tensor scale P = amax / 2688 (docs/blocks.md):
    s = e4m3(clamp(amax_b / 6 / P, 2^-6, 448)), q = e2m1(clamp(x * ((1 / P) / s), -6, 6)), one
    float32 operation at a time, roundings by the scalar oracle: (P, [(scale code, codes)])."""
    f32 = np.float32
    amaxes = [max(abs(f32(v)) for v in b) for b in blocks]
    g = f32(max(amaxes))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = f32(g / f32(2688.0))
        out = []
        for b, am in zip(blocks, amaxes):
            sbs = f32(f32(am / f32(6.0)) / p)
            if np.isnan(sbs):
                out.append((t_e4m3fn.nan_pos, [0] * len(b)))
                continue
            sbs = min(max(sbs, f32(2.0**-6)), f32(448.0))
            sc = _code_of_float(f32(sbs), t_e4m3fn)
            recip = f32(f32(f32(1.0) / p) / f32(float(t_e4m3fn.values[sc])))
            codes = []
            for v in b:
                q = f32(f32(v) * recip)
                q = min(max(q, f32(-6.0)), f32(6.0))
                codes.append(_code_of_float(f32(q), t_e2m1))
            out.append((sc, codes))
    return p, out


def nvfp4_4over6(blocks, t_e2m1, t_e4m3):
    """Four Over Six in TE's float32 order (docs/blocks.md): tensor bound 256, per block the
    map-to-6 scale e4m3(amax_b * (S_enc * fl(1/6))) and the map-to-4 scale e4m3(that product
    * 1.5); keep map-to-4 iff its exact sum of squared errors is smaller."""
    f32 = np.float32
    amaxes = [max(abs(f32(v)) for v in b) for b in blocks]
    g = max(amaxes)
    s_enc = min(f32(256.0 * 6.0) / g, f32(np.finfo(np.float32).max)) if g > 0 else f32(1)
    s_enc = f32(s_enc)
    s_dec = f32(f32(1.0) / s_enc)
    out = []
    for b, am in zip(blocks, amaxes):
        sb_in = f32(am * f32(s_enc * (f32(1.0) / f32(6.0))))
        best = None
        for cand in (sb_in, f32(sb_in * f32(1.5))):
            sc, s_b, codes = _te_block(b, cand, s_dec, t_e2m1, t_e4m3)
            err = sum((t_e2m1.values[c] * Fr(float(s_b)) * Fr(float(s_dec)) - Fr(float(v))) ** 2
                      for c, v in zip(codes, b))
            if best is None or err < best[0]:
                best = (err, sc, codes)
        out.append((best[1], best[2]))
    return s_dec, out


def round_f32(v: Fr) -> Fr:
    """v >= 0 rounded to nearest-even float32 (finite range), exactly."""
    if v == 0:
        return Fr(0)
    quantum = Fr(2) ** max(floor_log2(v) - 23, -149)
    q = v / quantum
    n = q.__floor__()
    if q - n > Fr(1, 2) or (q - n == Fr(1, 2) and n % 2 == 1):
        n += 1
    return n * quantum


def te_stochastic(v, r, t_elem):
    """TE's FP4 stochastic-rounding emulation (docs/rounding.md) of one float32 value v with random
    byte r: t = |v| + (r/256) step(|v|) rounded once to float32 (step: the element grid's
    spacing at |v|), then the largest grid value <= t, capped at max; the code carries v's
    sign."""
    a = abs(Fr(float(v)))
    grid = [g for g in t_elem.finite if g >= 0]
    lo = max(g for g in grid if g <= a)
    step = (min(g for g in grid if g > lo) - lo) if lo < grid[-1] else grid[-1] - grid[-2]
    t = round_f32(a + Fr(r, 256) * step)
    q = max(g for g in grid if g <= t)
    signed = ("-0" if q == 0 else -q) if np.signbit(v) else q
    return oracle.round_exact(signed, t_elem, "toward_zero", "saturate")
