"""Number formats: one frozen dataclass per kind, finfo-style properties, a named registry.

A ``FloatFormat`` is sign (optional) + ``exp_bits`` exponent + ``man_bits`` mantissa with a bias;
normal value ``2^(e-bias) * (1 + m/2^M)``, subnormal ``2^(1-bias) * m/2^M`` (docs/formats.md).
Special values are placed by two switches:

* ``inf``: ``True`` (IEEE: exponent all ones, mantissa 0), ``"max_code"`` (the largest magnitude
  code left after the NaN, P3109 extended domain), or ``False``.
* ``nan``: ``"ieee"`` (exponent all ones, mantissa != 0), ``"max_code"`` (all-ones magnitude,
  one per sign: OCP ``fn``, E8M0, P3109 unsigned), ``"neg_zero"`` (the code of -0: ``fnuz`` and
  P3109 signed, which then have no -0), or ``None``.

``zero=False`` makes exponent field 0 an ordinary binade (E8M0: code 0 is 2^-127, there is no
zero). ``IntFormat`` is a two's-complement or unsigned integer, optionally scaled by
``2^-frac_bits`` (MXINT8). ``TableFormat`` is a format given by its code -> value table
(HiFloat8, whose precision is tapered).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from fractions import Fraction
from functools import cached_property

import numpy as np

__all__ = ["FloatFormat", "IntFormat", "TableFormat", "format", "formats", "register"]

_INF_CHOICES = (True, False, "max_code")
_NAN_CHOICES = ("ieee", "max_code", "neg_zero", None)


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range: allowed {lo} <= {name} <= {hi}")


def _unsigned_dtype(bits):
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= np.dtype(dt).itemsize * 8:
            return np.dtype(dt)
    raise ValueError(f"no unsigned dtype holds {bits} bits")


class _FormatBase:
    """Shared finfo-style API, computed from ``_code_values`` (exact Fractions)."""

    name: str

    @property
    def rounding(self) -> str:
        """The format's own rounding, what ``rounding=None`` means: nearest-even (IEEE 754's
        default, OCP's conversions); a ``TableFormat`` may name another (HiFloat8: ties away)."""
        return "nearest_even"

    @property
    def code_dtype(self) -> np.dtype:
        """The smallest unsigned NumPy dtype that holds a code (what ``encode`` returns)."""
        return _unsigned_dtype(self.bits)

    @cached_property
    def _finite_fractions(self):
        return sorted({v for v in self._code_values() if isinstance(v, Fraction)})

    def values(self) -> np.ndarray:
        """Every finite value of the format, sorted ascending, as float64 (each exact)."""
        return np.array([float(v) for v in self._finite_fractions], dtype=np.float64)

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self._finite_fractions[-1])

    @property
    def lowest(self) -> float:
        """Most negative finite value (0, or the smallest value, for unsigned formats)."""
        if self.signed:
            return -self.max
        return 0.0 if getattr(self, "zero", True) else self.min_subnormal

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return float(min(v for v in self._finite_fractions if v > 0))

    def is_representable(self, x) -> np.ndarray:
        """True where ``x`` (array-like of floats) is exactly a value of the format, or a NaN or
        Inf the format can hold. -0 counts only where the format has -0."""
        x = np.array(x, dtype=np.float64)
        finite = np.isfinite(x)
        v = np.where(finite, x, 1.0)
        on = self._on_grid(v) if self.bits > 16 else np.isin(v, self.values())
        out = finite & on & (~((v == 0) & np.signbit(v)) | self.has_neg_zero)
        out |= np.isnan(x) & self.has_nan
        out |= np.isinf(x) & self.has_inf & (~np.signbit(x) | self.signed)
        return out

    def _on_grid(self, v):
        """Finite float64 ``v`` that are values of a format wider than 16 bits."""
        raise NotImplementedError

    def __str__(self):
        return self.name


@dataclasses.dataclass(frozen=True)
class FloatFormat(_FormatBase):
    """A binary floating-point format: exponent, mantissa, bias and special-value conventions.

    ``FloatFormat(exp_bits=4, man_bits=3, bias=7, inf=False, nan="max_code")`` is OCP E4M3
    (ml_dtypes ``float8_e4m3fn``). ``bias`` defaults to ``2^(exp_bits-1) - 1``. Up to 64 bits;
    the values must fit in float64 (man_bits <= 52, exponents within float64's range).
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    signed: bool = True
    subnormals: bool = True
    inf: bool | str = True
    nan: str | None = "ieee"
    zero: bool = True
    name: str = ""

    def __post_init__(self):
        _check_int("exp_bits", self.exp_bits, 1, 11)
        _check_int("man_bits", self.man_bits, 0, 52)
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.exp_bits - 1) - 1)
        _check_int("bias", self.bias, -(2**11), 2**11)
        for flag in ("signed", "subnormals", "zero"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.inf not in _INF_CHOICES:
            raise ValueError(f"inf={self.inf!r} is not allowed: choose one of {_INF_CHOICES}")
        if self.nan not in _NAN_CHOICES:
            raise ValueError(f"nan={self.nan!r} is not allowed: choose one of {_NAN_CHOICES}")
        if (self.inf is True) != (self.nan == "ieee"):
            raise ValueError(
                f"inf={self.inf!r} with nan={self.nan!r}: IEEE Inf (inf=True) and IEEE NaN "
                "(nan='ieee') share the all-ones exponent and go together")
        if self.nan == "ieee" and self.man_bits == 0:
            raise ValueError("nan='ieee' needs man_bits >= 1 (NaN codes have a non-zero mantissa)")
        if self.nan == "neg_zero" and not self.signed:
            raise ValueError("nan='neg_zero' needs a sign bit (signed=True)")
        if not self.zero and (self.subnormals or self.signed):
            raise ValueError("zero=False (E8M0-style: exponent field 0 is a normal binade) "
                             "needs subnormals=False and signed=False")
        if self.bits > 64:
            raise ValueError(f"{self.bits} bits: formats of at most 64 bits are supported")
        if (self._max_mag_code() >> self.man_bits) < (1 if self.zero else 0):
            raise ValueError(f"exp_bits={self.exp_bits} with inf={self.inf!r}, nan={self.nan!r} "
                             "leaves no normal binade; use more exponent bits")
        if not self.name:
            object.__setattr__(self, "name", self._default_name())
        # values must fit in float64: largest exponent and smallest quantum
        if self.emax > 1023 or self.emin < -1022 or self.emin - self.man_bits < -1074:
            raise ValueError(
                f"{self!r} has values outside float64 (emax={self.emax}, emin={self.emin}, "
                f"smallest spacing 2^{self.emin - self.man_bits}); lowprec computes in float64 and "
                "needs 1023 >= emax, emin >= -1022 (change the bias)")

    # ---- layout -----------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Total bits of a code."""
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def _mag_ones(self) -> int:
        return (1 << (self.exp_bits + self.man_bits)) - 1

    def _max_mag_code(self) -> int:
        if self.inf is True:
            return (((1 << self.exp_bits) - 1) << self.man_bits) - 1
        top = self._mag_ones
        top -= self.nan == "max_code"
        top -= self.inf == "max_code"
        return top

    @property
    def max_code(self) -> int:
        """Code magnitude (sign bit clear) of the largest finite value."""
        return self._max_mag_code()

    @property
    def inf_code(self) -> int | None:
        """Code of +Inf, or None."""
        if self.inf is True:
            return ((1 << self.exp_bits) - 1) << self.man_bits
        if self.inf == "max_code":
            return self._mag_ones - (self.nan == "max_code")
        return None

    @property
    def nan_code(self) -> int | None:
        """The code ``encode`` writes for a NaN of positive sign (IEEE: the quiet NaN, mantissa
        MSB set, as ml_dtypes writes it); None if the format has no NaN."""
        if self.nan == "ieee":
            return (((1 << self.exp_bits) - 1) << self.man_bits) | (1 << (self.man_bits - 1))
        if self.nan == "max_code":
            return self._mag_ones
        if self.nan == "neg_zero":
            return 1 << (self.bits - 1)
        return None

    @property
    def signed_nan(self) -> bool:
        """True if NaN keeps the input's sign (the NaN code exists with either sign bit)."""
        return self.signed and self.nan in ("ieee", "max_code")

    @property
    def has_inf(self) -> bool:
        return self.inf is not False

    @property
    def has_nan(self) -> bool:
        return self.nan is not None

    @property
    def has_neg_zero(self) -> bool:
        return self.signed and self.zero and self.nan != "neg_zero"

    @property
    def emax(self) -> int:
        """Exponent of the largest finite value's binade."""
        return (self._max_mag_code() >> self.man_bits) - self.bias

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal binade (1 - bias; -bias when zero=False)."""
        return (1 if self.zero else 0) - self.bias

    @property
    def min_exponent_quantum(self) -> int:
        """log2 of the spacing of the smallest values."""
        return self.emin - (self.man_bits if self.subnormals else 0)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2^emin."""
        return math.ldexp(1.0, self.emin)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value, 2^-man_bits."""
        return math.ldexp(1.0, -self.man_bits)

    def decode_code(self, code: int):
        """Exact value of one code: a Fraction, or the strings 'nan', 'inf', '-inf'."""
        code = int(code)
        if not 0 <= code < (1 << self.bits):
            raise ValueError(f"code {code} out of range for {self.name} ({self.bits} bits)")
        sign = (code >> (self.bits - 1)) & 1 if self.signed else 0
        mag = code & self._mag_ones
        if self.nan == "neg_zero" and sign and mag == 0:
            return "nan"
        if mag > self._max_mag_code():
            if self.inf_code is not None and mag == self.inf_code:
                return "-inf" if sign else "inf"
            return "nan"
        e, m = mag >> self.man_bits, mag & ((1 << self.man_bits) - 1)
        if not self.zero:
            v = Fraction(2) ** (e - self.bias) * (1 + Fraction(m, 1 << self.man_bits))
        elif e == 0:
            v = Fraction(2) ** (1 - self.bias) * Fraction(m, 1 << self.man_bits)
            if not self.subnormals:
                v = Fraction(0)          # flushed: such codes read as zero, never written
        else:
            v = Fraction(2) ** (e - self.bias) * (1 + Fraction(m, 1 << self.man_bits))
        return -v if sign else v

    def _code_values(self):
        if self.bits > 16:
            raise ValueError(f"values() lists at most 2^16 codes; {self.name} has {self.bits} bits")
        return [self.decode_code(c) for c in range(1 << self.bits)]

    def __repr__(self):
        extras = []
        if not self.signed:
            extras.append("signed=False")
        if not self.subnormals:
            extras.append("subnormals=False")
        if not self.zero:
            extras.append("zero=False")
        ex = (", " + ", ".join(extras)) if extras else ""
        return (f"FloatFormat({self.name!r}: exp_bits={self.exp_bits}, man_bits={self.man_bits}, "
                f"bias={self.bias}, inf={self.inf!r}, nan={self.nan!r}{ex})")

    def _default_name(self):
        s = "" if self.signed else "u"
        return f"{s}e{self.exp_bits}m{self.man_bits}b{self.bias}"

    @property
    def max(self) -> float:
        """Largest finite value."""
        mag = self._max_mag_code()
        return float(self.decode_code(mag))

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (2^-127 for E8M0, which has no zero)."""
        return math.ldexp(1.0, self.min_exponent_quantum if self.zero else self.emin)

    def _on_grid(self, v):
        a = np.abs(v)
        e = np.maximum(np.frexp(a)[1].astype(np.int64) - 1, self.emin)
        steps = np.ldexp(a, (self.man_bits - e).astype(np.int32))     # exact: a power of two
        ok = (steps == np.floor(steps)) & (a <= self.max) & ((v >= 0) | self.signed)
        if not self.subnormals:
            ok &= (a == 0) | (a >= self.min_normal)
        return ok & ((a != 0) | self.zero)


@dataclasses.dataclass(frozen=True)
class IntFormat(_FormatBase):
    """A ``bits``-wide integer, two's complement if ``signed``, value ``code * 2^-frac_bits``.

    ``symmetric=True`` drops the most negative code (MXINT8 never writes -128/64).
    Integers have no NaN or Inf; overflow saturates unless ``overflow='wrap'`` is asked for.
    """

    bits: int
    signed: bool = True
    frac_bits: int = 0
    symmetric: bool = False
    name: str = ""

    def __post_init__(self):
        _check_int("bits", self.bits, 1 if not self.signed else 2, 63)
        _check_int("frac_bits", self.frac_bits, -64, 64)
        if not isinstance(self.signed, bool) or not isinstance(self.symmetric, bool):
            raise TypeError("signed and symmetric must be True or False")
        if self.symmetric and not self.signed:
            raise ValueError("symmetric=True only applies to signed integers")
        if not self.name:
            base = ("int" if self.signed else "uint") + str(self.bits)
            if self.frac_bits:
                base += f"_f{self.frac_bits}"
            if self.symmetric:
                base += "_sym"
            object.__setattr__(self, "name", base)

    has_inf = False
    has_nan = False

    @property
    def has_neg_zero(self):
        return False

    @property
    def max_int(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def min_int(self) -> int:
        if not self.signed:
            return 0
        return -self.max_int if self.symmetric else -(1 << (self.bits - 1))

    @property
    def max(self) -> float:
        return math.ldexp(float(self.max_int), -self.frac_bits)

    @property
    def lowest(self) -> float:
        """Most negative value, ``min_int * 2^-frac_bits``."""
        return math.ldexp(float(self.min_int), -self.frac_bits)

    def _on_grid(self, v):
        n = np.ldexp(v, self.frac_bits)
        return (n == np.floor(n)) & (n >= self.min_int) & (n <= self.max_int)

    @property
    def eps(self) -> float:
        """Spacing of the values, 2^-frac_bits."""
        return math.ldexp(1.0, -self.frac_bits)

    @property
    def min_subnormal(self) -> float:
        return self.eps

    def decode_code(self, code: int):
        code = int(code)
        if not 0 <= code < (1 << self.bits):
            raise ValueError(f"code {code} out of range for {self.name} ({self.bits} bits)")
        v = code - (1 << self.bits) if self.signed and code >> (self.bits - 1) else code
        if v < self.min_int:
            return "invalid"
        return Fraction(v) / Fraction(2) ** self.frac_bits

    def _code_values(self):
        if self.bits > 16:
            raise ValueError(f"values() lists at most 2^16 codes; {self.name} has {self.bits} bits")
        return [self.decode_code(c) for c in range(1 << self.bits)]

    def __repr__(self):
        return (f"IntFormat({self.name!r}: bits={self.bits}, signed={self.signed}, "
                f"frac_bits={self.frac_bits}, symmetric={self.symmetric})")


@dataclasses.dataclass(frozen=True)
class TableFormat(_FormatBase):
    """A format defined by a decode rule over all ``2^bits`` codes (tapered formats: HiFloat8).

    ``decoder(code) -> Fraction | 'nan' | 'inf' | '-inf'``; ``overflow_value`` is the value the
    grid would take next above ``max`` (ties to it overflow, as an unbounded format would round).
    Ties for ``nearest_even`` go to the even code, ``odd`` rounds to the odd code.
    """

    name: str
    bits: int
    decoder: object = dataclasses.field(repr=False, compare=False)
    overflow_value: Fraction = Fraction(0)
    min_normal_value: Fraction = Fraction(0)
    doc: str = ""
    rounding: str = "nearest_even"

    @cached_property
    def _table(self):
        return [self.decoder(c) for c in range(1 << self.bits)]

    def decode_code(self, code: int):
        code = int(code)
        if not 0 <= code < (1 << self.bits):
            raise ValueError(f"code {code} out of range for {self.name} ({self.bits} bits)")
        return self._table[code]

    def _code_values(self):
        return self._table

    @property
    def signed(self):
        return any(isinstance(v, Fraction) and v < 0 for v in self._table)

    @property
    def has_inf(self):
        return "inf" in self._table

    @property
    def has_nan(self):
        return "nan" in self._table

    @property
    def has_neg_zero(self):
        return False

    @property
    def nan_code(self):
        return self._table.index("nan") if self.has_nan else None

    signed_nan = False            # one NaN code (HiFloat8: 0x80)

    @property
    def max_code(self) -> int:
        """Code of the largest finite value."""
        return self._table.index(self._finite_fractions[-1])

    @property
    def inf_code(self):
        return self._table.index("inf") if self.has_inf else None

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value."""
        f = self._finite_fractions
        return float(f[f.index(1) + 1] - 1)

    @property
    def min_normal(self) -> float:
        """Smallest value of full precision (HiFloat8: 2^-15; below are the denormals)."""
        return float(self.min_normal_value) if self.min_normal_value else self.min_subnormal

    def __hash__(self):
        return hash((self.name, self.bits))

    def __eq__(self, other):
        return isinstance(other, TableFormat) and (self.name, self.bits) == (other.name,
                                                                              other.bits)

    def __repr__(self):
        return f"TableFormat({self.name!r}, bits={self.bits})"


# ---- HiFloat8 -------------------------------------------------------------------------------

def _hifloat8_decode(code: int):
    """HiFloat8 (arXiv:2409.16626; checked code-for-code against PyPI en-dtypes in the tests).

    After the sign bit a prefix picks the exponent width: ``11`` 4 bits, ``10`` 3, ``01`` 2,
    ``001`` 1, ``0001`` 0 (E = 0); the exponent is sign-magnitude with an implicit leading 1
    (|E| in [8,15], [4,7], [2,3], 1). ``0000 mmm`` is the denormal 2^(m-23). 0x80 is NaN and
    0x6F/0xEF are +-Inf (where 1.5 * 2^15 would be)."""
    sign = code >> 7
    body = code & 0x7F
    if code == 0x80:
        return "nan"
    if body == 0x6F:
        return "-inf" if sign else "inf"
    if body >> 5 == 0b11:
        ew, mw = 4, 1
    elif body >> 5 == 0b10:
        ew, mw = 3, 2
    elif body >> 5 == 0b01:
        ew, mw = 2, 3
    elif body >> 4 == 0b001:
        ew, mw = 1, 3
    elif body >> 3 == 0b0001:
        ew, mw = 0, 3
    else:
        m = body & 7
        v = Fraction(0) if m == 0 else Fraction(2) ** (m - 23)
        return -v if sign else v
    m = body & ((1 << mw) - 1)
    ebits = (body >> mw) & ((1 << ew) - 1)
    if ew == 0:
        e = 0
    else:
        esign = ebits >> (ew - 1)
        emag = (1 << (ew - 1)) | (ebits & ((1 << (ew - 1)) - 1))
        e = -emag if esign else emag
    v = Fraction(2) ** e * (1 + Fraction(m, 1 << mw))
    return -v if sign else v


HIFLOAT8 = TableFormat("hifloat8", 8, _hifloat8_decode, overflow_value=Fraction(3 * 2**14),
                       min_normal_value=Fraction(1, 2**15),
                       doc="Huawei HiFloat8, tapered precision (arXiv:2409.16626)",
                       rounding="nearest_away")     # the HiF8 paper's rounding: ties away

# ---- registry -------------------------------------------------------------------------------

_REGISTRY: dict[str, object] = {}
_ALIASES: dict[str, str] = {}
BLOCK_NAMES: dict[str, str] = {}   # block-format preset -> its element format (lowprec.blocks
                                   # fills it), so that format() can point to lp.quantize
_ML_DTYPES_NAMES = set()


def register(fmt, *aliases, ml_dtypes_name=False):
    """Add ``fmt`` under ``fmt.name`` (and ``aliases``) to the registry used by ``lp.format``."""
    _REGISTRY[fmt.name] = fmt
    for a in aliases:
        _ALIASES[a] = fmt.name
    if ml_dtypes_name:
        _ML_DTYPES_NAMES.add(fmt.name)
    return fmt


def _F(name, e, m, bias=None, **kw):
    return FloatFormat(exp_bits=e, man_bits=m, bias=bias, name=name, **kw)


_FN = dict(inf=False, nan="max_code")
_FNUZ = dict(inf=False, nan="neg_zero")
_FINITE = dict(inf=False, nan=None)

register(_F("float64", 11, 52), "binary64", "fp64", "f64", "double")
register(_F("float32", 8, 23), "binary32", "fp32", "f32", "single")
register(_F("tfloat32", 8, 10), "tf32", "tensorfloat32")
register(_F("bfloat16", 8, 7), "bf16", "brain_float16", ml_dtypes_name=True)
register(_F("float16", 5, 10), "binary16", "fp16", "f16", "half")
register(_F("float8_e5m2", 5, 2), "e5m2", "fp8_e5m2", "mxfp8_e5m2_element", ml_dtypes_name=True)
register(_F("float8_e4m3fn", 4, 3, **_FN), "e4m3", "e4m3fn", "fp8_e4m3", "fp8_e4m3fn",
         "mxfp8_e4m3_element", ml_dtypes_name=True)
register(_F("float8_e4m3fnuz", 4, 3, 8, **_FNUZ), "e4m3fnuz", "fp8_e4m3fnuz", ml_dtypes_name=True)
register(_F("float8_e5m2fnuz", 5, 2, 16, **_FNUZ), "e5m2fnuz", "fp8_e5m2fnuz",
         ml_dtypes_name=True)
register(_F("float8_e4m3b11fnuz", 4, 3, 11, **_FNUZ), "e4m3b11fnuz", "e4m3b11",
         ml_dtypes_name=True)
register(_F("float8_e4m3", 4, 3), "e4m3_ieee", "fp8_e4m3_ieee", ml_dtypes_name=True)
register(_F("float8_e3m4", 3, 4), "e3m4", "fp8_e3m4", ml_dtypes_name=True)
register(_F("float6_e3m2fn", 3, 2, **_FINITE), "e3m2", "fp6_e3m2", "mxfp6_e3m2_element",
         ml_dtypes_name=True)
register(_F("float6_e2m3fn", 2, 3, **_FINITE), "e2m3", "fp6_e2m3", "mxfp6_e2m3_element",
         ml_dtypes_name=True)
register(_F("float4_e2m1fn", 2, 1, **_FINITE), "e2m1", "fp4", "fp4_e2m1", "mxfp4_element",
         "nvfp4_element", ml_dtypes_name=True)
register(_F("float8_e8m0fnu", 8, 0, 127, signed=False, subnormals=False, zero=False,
            inf=False, nan="max_code"), "e8m0", "ue8m0", "fp8_e8m0", "mx_scale",
         ml_dtypes_name=True)
register(_F("ue4m3", 4, 3, 7, signed=False, **_FN), "nvfp4_scale", "e4m3_unsigned")
register(HIFLOAT8, "hif8", "hifloat8_e")
for _bits, _signed in ((8, True), (4, True), (2, True), (8, False), (4, False)):
    register(IntFormat(_bits, _signed))
register(IntFormat(8, True, frac_bits=6, symmetric=True, name="mxint8_element"))

_P3109 = re.compile(r"^binary(\d+)p(\d+)([su])([ef])$")


def p3109(bits: int, precision: int, signed: bool = True, extended: bool = True) -> FloatFormat:
    """IEEE P3109 ``binary{K}p{P}{s|u}{e|f}``: precision P counts the hidden bit; bias
    2^(K-P-1) (signed) or 2^(K-P) (unsigned); one zero; NaN at 0x80 (signed) or all ones
    (unsigned); the extended domain adds +-Inf at the top codes (P3109 interim report)."""
    K, P = bits, precision
    if not 1 <= P <= K - (1 if signed else 0):
        raise ValueError(f"P3109 precision P={P} must be in 1..{K - signed} for K={K}")
    E = K - P if signed else K - P + 1
    bias = 2 ** (K - P - 1) if signed else 2 ** (K - P)
    name = f"binary{K}p{P}{'s' if signed else 'u'}{'e' if extended else 'f'}"
    return FloatFormat(exp_bits=E, man_bits=P - 1, bias=bias, signed=signed,
                       inf="max_code" if extended else False,
                       nan="neg_zero" if signed else "max_code", name=name)


def formats() -> list[str]:
    """Names of every registered format (aliases excluded; ``binaryKpP{s,u}{e,f}`` are generated
    on demand)."""
    return list(_REGISTRY)


def aliases() -> dict[str, str]:
    """Alias -> registered name."""
    return dict(_ALIASES)


def format(name) -> FloatFormat | IntFormat | TableFormat:
    """Look up a format by name: ml_dtypes spellings (``float8_e4m3fn``), aliases (``e4m3``,
    ``fp4``, ``bf16``, ``tf32``, ``e8m0``...), P3109 ``binary8p3se`` names. A format object, or an
    ml_dtypes / NumPy dtype, is accepted and returned as the matching format."""
    if isinstance(name, (FloatFormat, IntFormat, TableFormat)):
        return name
    if isinstance(name, (np.dtype, type)):
        try:
            name = np.dtype(name).name
        except TypeError:
            raise TypeError(f"format must be a name or a format object, got {name!r}") from None
    if not isinstance(name, str):
        raise TypeError(f"format must be a name (str) or a format object, got {name!r} "
                        f"({type(name).__name__})")
    key = name.strip()
    low = key.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if low in _REGISTRY:
        return _REGISTRY[low]
    if low in _ALIASES:
        return _REGISTRY[_ALIASES[low]]
    m = _P3109.match(low)
    if m:
        return p3109(int(m[1]), int(m[2]), m[3] == "s", m[4] == "e")
    if low in ("fp8", "float8"):
        raise ValueError(f"format {name!r} names no one format: FP8 is e4m3 (float8_e4m3fn, "
                         "OCP), e5m2 (float8_e5m2), or e4m3fnuz / e5m2fnuz (AMD CDNA3); say "
                         "which")
    if low in BLOCK_NAMES:
        raise ValueError(f"{name!r} is a block format (element codes with shared scales): "
                         f"use lp.quantize(x, {name!r}) or lp.fake_quantize; lp.round takes "
                         f"a scalar format such as {BLOCK_NAMES[low]!r}")
    known = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(low, known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown format {name!r}{hint} (lp.formats() lists the names; "
                     "P3109 formats are spelled binary8p3se, binary8p4uf, ...)")


def ml_dtype(fmt):
    """The ml_dtypes (or NumPy) scalar type for a registered format, or None."""
    fmt = format(fmt)
    if fmt.name in ("float16", "float32", "float64"):
        return np.dtype(fmt.name).type
    if fmt.name in _ML_DTYPES_NAMES:
        import ml_dtypes  # noqa: PLC0415
        return getattr(ml_dtypes, fmt.name)
    return None
