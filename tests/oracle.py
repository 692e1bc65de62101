"""Independent oracle, written from the definitions (docs/formats.md and docs/rounding.md). Shares no code with lowprec.

* ``float_table`` enumerates (sign, exponent field, mantissa) of a binary format and gives every
  code its exact value (``Fraction``) or 'nan' / 'inf' / '-inf', applying each special-value
  convention literally.
* ``round_exact`` rounds an exact rational to such a table: it finds the neighbours lo <= x <= hi
  among all values (plus one virtual value past each end, where an unbounded format would
  continue), then applies the mode's definition. Slow and obviously right.
* ``round_table_f64`` is the same algorithm vectorised with NumPy float64 for exhaustive sweeps;
  it is exact whenever every input, every value and every midpoint is a float64 and
  x - lo is exact, which holds for float16/bfloat16/float32 inputs into formats of at most 16
  bits (at most 24 + 11 significant bits meet). The tests cross-check it against
  ``round_exact``.
"""
from __future__ import annotations

import bisect
from fractions import Fraction as Fr

import numpy as np

MODES = ("nearest_even", "nearest_away", "toward_zero", "up", "down", "odd")


class Table:
    """A format as the oracle sees it: code -> value, plus its conventions."""

    def __init__(self, values, bits, *, nan_pos, nan_neg, inf_pos, inf_neg, neg_zero, signed,
                 parity="quantum", low_rule=None, nan_natural=None, man_bits=None):
        self.values = values            # dict code -> Fraction | 'nan' | 'inf' | '-inf'
        self.bits = bits
        self.nan_pos, self.nan_neg = nan_pos, nan_neg
        self.inf_pos, self.inf_neg = inf_pos, inf_neg
        self.neg_zero = neg_zero        # code of -0 or None
        self.signed = signed
        self.parity = parity            # 'quantum' (lo/ulp) or 'code'
        self.low_rule = low_rule        # 'e8m0' for the no-zero format
        self.nan_natural = nan_natural  # (code for +NaN, code for -NaN) when the format has no NaN
        fin = {}
        for c, v in values.items():
            if isinstance(v, Fr):
                if v == 0 and c == neg_zero:
                    continue
                fin.setdefault(v, c)
        self.finite = sorted(fin)
        self.code_of = fin
        self.max, self.min = self.finite[-1], self.finite[0]
        top_ulp = self.finite[-1] - self.finite[-2]
        if man_bits is not None:        # the quantum of max's binade: 2^(floor(log2 max) - M)
            e = self.max.numerator.bit_length() - self.max.denominator.bit_length()
            if Fr(2) ** e > self.max:
                e -= 1
            top_ulp = Fr(2) ** (e - man_bits)
        self.virtual_hi = self.max + top_ulp
        if self.min < 0:
            self.virtual_lo = (-self.virtual_hi if -self.min == self.max
                               else self.min - (self.finite[1] - self.finite[0]))
        else:
            self.virtual_lo = -self.finite[1] if self.finite[0] == 0 else None


def float_table(e, m, bias, *, signed=True, subnormals=True, inf="ieee", nan="ieee", zero=True):
    """Codes of a binary float format, from the definitions of docs/formats.md."""
    vals = {}
    ebits_all = (1 << e) - 1
    magbits = e + m
    for s in ((0, 1) if signed else (0,)):
        for ef in range(1 << e):
            for mf in range(1 << m):
                code = (s << magbits) | (ef << m) | mf
                if not zero:
                    v = Fr(2) ** (ef - bias) * (1 + Fr(mf, 2**m))
                elif ef == 0:
                    v = Fr(2) ** (1 - bias) * Fr(mf, 2**m) if subnormals else Fr(0)
                else:
                    v = Fr(2) ** (ef - bias) * (1 + Fr(mf, 2**m))
                vals[code] = -v if s else v
    mag_top = (1 << magbits) - 1
    nan_pos = nan_neg = inf_pos = inf_neg = None
    neg_zero = (1 << magbits) if signed else None
    sign = 1 << magbits
    if inf == "ieee":
        for s in ((0, 1) if signed else (0,)):
            for mf in range(1 << m):
                code = (s * sign) | (ebits_all << m) | mf
                vals[code] = "nan" if mf else ("-inf" if s else "inf")
        nan_pos = (ebits_all << m) | (1 << (m - 1))
        nan_neg = nan_pos | sign
        inf_pos, inf_neg = ebits_all << m, (ebits_all << m) | sign
    else:
        top = mag_top
        if nan == "max_code":
            for s in ((0, 1) if signed else (0,)):
                vals[(s * sign) | top] = "nan"
            nan_pos = top
            nan_neg = top | sign if signed else top
            top -= 1
        if nan == "neg_zero":
            vals[sign] = "nan"
            nan_pos = nan_neg = sign
            neg_zero = None
        if inf == "max_code":
            vals[top] = "inf"
            inf_pos = top
            if signed:
                vals[top | sign] = "-inf"
                inf_neg = top | sign
    nan_natural = None
    if nan is None and signed:
        nan_natural = (sign, 0)          # ml_dtypes: NaN -> zero of the opposite sign
    if not signed:
        neg_zero = None
    return Table(vals, e + m + int(signed), nan_pos=nan_pos, nan_neg=nan_neg, inf_pos=inf_pos,
                 inf_neg=inf_neg, neg_zero=neg_zero, signed=signed,
                 low_rule=None if zero else "e8m0", nan_natural=nan_natural, man_bits=m)


def int_table(bits, signed=True, frac_bits=0, symmetric=False):
    vals = {}
    for c in range(1 << bits):
        v = c - (1 << bits) if signed and c >> (bits - 1) else c
        if symmetric and v == -(1 << (bits - 1)):
            continue
        vals[c] = Fr(v, 2**frac_bits) if frac_bits >= 0 else Fr(v * 2**-frac_bits)
    return Table(vals, bits, nan_pos=None, nan_neg=None, inf_pos=None, inf_neg=None,
                 neg_zero=None, signed=signed)


def table_from_values(values, bits, virtual_hi):
    """A table format (HiFloat8) from code -> value; ties use the code's last bit."""
    nan = [c for c, v in values.items() if v == "nan"]
    t = Table(values, bits, nan_pos=nan[0], nan_neg=nan[0],
              inf_pos=next(c for c, v in values.items() if v == "inf"),
              inf_neg=next(c for c, v in values.items() if v == "-inf"),
              neg_zero=None, signed=True, parity="code")
    t.virtual_hi = virtual_hi
    t.virtual_lo = -virtual_hi
    return t


def _resolve(policy, t):
    if policy is None:
        return "inf" if t.inf_pos is not None else "nan" if t.nan_pos is not None else "saturate"
    return policy


def _overflow(t, negative, away, policy):
    """Code for an overflowing result; None means 'cannot be represented' (an error)."""
    if negative and not t.signed:
        if t.low_rule == "e8m0":
            return t.nan_pos
        sat = t.code_of[Fr(0)]
    else:
        sat = t.code_of[t.min if negative else t.max]
    if (not away and policy != "inf_always") or policy == "saturate":
        return sat
    if policy in ("inf", "inf_always"):
        if negative and not t.signed:
            return t.nan_pos
        return t.inf_neg if negative else t.inf_pos
    return t.nan_neg if negative else t.nan_pos


def round_exact(x, t, mode, policy=None, sr=None):
    """Code of ``x`` (Fraction, or 'nan' / 'inf' / '-inf', or ('-0',)) rounded in table ``t``.
    ``sr`` = (R, r, variant) for stochastic rounding. Returns None where no code applies."""
    natural = policy is None
    policy = _resolve(policy, t)
    if x == "nan" or x == "-nan":
        neg = x == "-nan"
        if t.nan_pos is not None:
            return t.nan_neg if neg else t.nan_pos
        if natural and t.nan_natural is not None:
            return t.nan_natural[1] if neg else t.nan_natural[0]
        return None
    if x in ("inf", "-inf"):
        return _overflow(t, x == "-inf", True, policy)
    negzero = x == "-0"
    if negzero:
        x = Fr(0)
    negative = x < 0 or negzero
    if t.low_rule == "e8m0":
        if negative or x == 0:
            return t.nan_pos
        if x < t.min:
            return t.code_of[t.min]
    fin = t.finite
    if x in t.code_of:
        v = x
    else:
        k = bisect.bisect_left(fin, x)
        lo = fin[k - 1] if k > 0 else t.virtual_lo
        hi = fin[k] if k < len(fin) else t.virtual_hi
        if (t.virtual_lo is not None and x <= t.virtual_lo) or x >= t.virtual_hi:
            lo = hi = None
        if lo is None:                                   # beyond the virtual values
            away = mode in ("nearest_even", "nearest_away", "stochastic") or (
                mode == "up" and not negative) or (mode == "down" and negative)
            return _overflow(t, negative, away, policy)
        tz, aw = (lo, hi) if not negative else (hi, lo)   # toward zero / away from zero
        ulp = hi - lo
        if mode == "stochastic":
            R, r, variant = sr
            d = (abs(x) - abs(tz)) / ulp
            R &= (1 << r) - 1
            if variant == "srff":
                up = (d * 2**r).__floor__() + R >= 2**r
            elif variant == "srf":
                up = (d * 2 ** (r + 1)).__floor__() + 2 * R + 1 >= 2 ** (r + 1)
            elif variant == "src":
                up = _rne(d * 2**r) + R >= 2**r
            elif variant == "sr_nearest_odd":
                up = _rne(d * 2**r, tie_odd=True) + R >= 2**r
            else:
                up = _rto(d * 2**r) + R >= 2**r
            v = aw if up else tz
        elif mode in ("nearest_even", "nearest_away"):
            dl, dh = x - lo, hi - x
            if dl != dh:
                v = lo if dl < dh else hi
            elif mode == "nearest_away":
                v = aw
            else:
                v = lo if _even(lo, ulp, t) else hi
        elif mode == "toward_zero":
            v = tz
        elif mode == "up":
            v = hi
        elif mode == "down":
            v = lo
        elif mode == "odd":
            v = hi if _even(lo, ulp, t) else lo
        else:
            raise ValueError(mode)
    if v > t.max or v < t.min:
        away = abs(v) > abs(x) if v != x else True
        return _overflow(t, v < 0, away and mode != "odd", policy)
    if v == 0:
        return t.neg_zero if (negative and t.neg_zero is not None) else t.code_of[Fr(0)]
    return t.code_of[v]


def _even(lo, ulp, t):
    if t.parity == "code":
        if lo in t.code_of:
            return t.code_of[lo] % 2 == 0
        # a virtual value continues the code sequence: the opposite parity of its neighbour
        return t.code_of[t.min if lo < 0 else t.max] % 2 == 1
    return (abs(lo) / ulp) % 2 == 0


def _rne(y, tie_odd=False):
    """y rounded to the nearest integer, ties to the even one (``tie_odd``: the odd one,
    gfloat's _rnito)."""
    f = y.__floor__()
    rem = y - f
    if rem > Fr(1, 2) or (rem == Fr(1, 2) and f % 2 == (0 if tie_odd else 1)):
        return f + 1
    return f


def _rto(y):
    f = y.__floor__()
    return f if y == f or f % 2 == 1 else f + 1


def value_of(code, t):
    """The exact value of a code ('nan', 'inf', '-inf' or Fraction; -0 as the string '-0')."""
    if code == t.neg_zero:
        return "-0"
    return t.values[code]


def to_fraction(x):
    """Exact value of a float (or 'nan' / 'inf' / '-inf' / '-0')."""
    x = float(x)
    if x != x:
        return "-nan" if np.signbit(x) else "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if x == 0 and np.signbit(x):
        return "-0"
    return Fr(x)


# ---- vectorised version for exhaustive sweeps (exact for the cases in the module docstring) --

def round_table_f64(x, t, mode, policy=None):
    """``round_exact`` for a float64 array ``x`` (deterministic modes), vectorised."""
    natural = policy is None
    policy = _resolve(policy, t)
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, -1, dtype=np.int64)
    fin = np.array([float(v) for v in t.finite])
    codes = np.array([t.code_of[v] for v in t.finite])
    vlo = float(t.virtual_lo) if t.virtual_lo is not None else -np.inf
    vhi = float(t.virtual_hi)
    grid = np.concatenate([[vlo], fin, [vhi]])
    gcode = np.concatenate([[-2], codes, [-3]])          # -2 / -3: the virtual values
    neg = np.signbit(x)
    nan = np.isnan(x)
    inf = np.isinf(x)
    xf = np.where(nan | inf, 0.0, x)
    j = np.clip(np.searchsorted(grid, xf, side="right") - 1, 0, len(grid) - 2)
    lo, hi = grid[j], grid[j + 1]
    clo, chi = gcode[j], gcode[j + 1]
    exact = xf == lo
    ulp = hi - lo
    if t.parity == "code":
        even_lo = np.where(clo >= 0, clo % 2 == 0, t.code_of[t.min] % 2 == 1)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            even_lo = np.fmod(np.abs(lo) / ulp, 2.0) == 0
    with np.errstate(invalid="ignore"):
        mid = lo + ulp / 2
    if mode == "nearest_even":
        pick_hi = (xf > mid) | ((xf == mid) & ~even_lo)
    elif mode == "nearest_away":
        pick_hi = (xf > mid) | ((xf == mid) & ~neg)
    elif mode == "toward_zero":
        pick_hi = neg.copy()
    elif mode == "up":
        pick_hi = np.ones_like(neg)
    elif mode == "down":
        pick_hi = np.zeros_like(neg)
    elif mode == "odd":
        pick_hi = even_lo
    pick_hi &= ~exact
    code = np.where(pick_hi, chi, clo)
    val = np.where(pick_hi, hi, lo)
    beyond = (xf >= vhi) | (xf <= vlo)
    ovf = (code < 0) | beyond
    away = np.where(beyond, _away_mode(mode, neg), np.abs(val) > np.abs(xf))
    away &= mode != "odd"
    for n_ in (False, True):
        for a_ in (False, True):
            sel = ovf & (neg == n_) & (away == a_)
            if sel.any():
                c = _overflow(t, n_, a_, policy)
                out[sel] = -1 if c is None else c
    ok = ~ovf
    out[ok] = code[ok]
    zero_res = ok & (val == 0)
    if t.neg_zero is not None:
        out[zero_res & neg] = t.neg_zero
    if t.low_rule == "e8m0":
        out[xf < t.min] = t.code_of[t.min]
        out[(xf <= 0) | neg] = t.nan_pos
    ninf = inf & neg
    pinf = inf & ~neg
    out[pinf] = _none(_overflow(t, False, True, policy))
    out[ninf] = _none(_overflow(t, True, True, policy))
    if nan.any():
        for n_ in (False, True):
            sel = nan & (neg == n_)
            out[sel] = _none(round_exact("-nan" if n_ else "nan", t, mode,
                                         None if natural else policy))
    return out


def _none(c):
    return -1 if c is None else c


def _away_mode(mode, neg):
    if mode in ("nearest_even", "nearest_away"):
        return np.ones_like(neg)
    if mode == "up":
        return ~neg
    if mode == "down":
        return neg.copy()
    return np.zeros_like(neg)
