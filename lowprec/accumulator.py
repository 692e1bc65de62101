"""The accumulator model: ``Accumulator`` and ``FusedAdder`` say how a sum of products is
formed (docs/matrix-units.md); ``lowprec.accumulate`` applies them, ``lowprec.hardware`` names
the models of real matrix units."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cast import _check_rounding_args, holds
from .formats import FloatFormat, IntFormat, format as _format
from .rounding import check_overflow, mode_name

__all__ = ["Accumulator", "FusedAdder", "ORDERS", "BLOCK_SCALES", "TERM_RULES", "NAN_RESULTS",
           "nan_result_bits"]

ORDERS = ("sequential", "pairwise", "blocked", "blocked_pairwise", "exact")
BLOCK_SCALES = ("product", "group", "promotion")
TERM_RULES = ("truncate", "floor", "nearest")
NAN_RESULTS = ("quiet", "all_ones")


def nan_result_bits(nan, bits):
    """The bits of a NaN result in a ``bits``-wide IEEE float under the rule ``nan``, or None
    for "quiet" (the positive quiet NaN of the returned dtype, e.g. 0x7FC00000). "all_ones":
    sign 0, every exponent and fraction bit 1 (0x7FFFFFFF, 0x7FFF), which NVIDIA and AMD matrix
    units return for every NaN (MMA-Sim 2.1.1 ``ldexp_and_normalize``, arXiv:2511.10909)."""
    return None if nan == "quiet" else (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class FusedAdder:
    """A multi-term fused adder (Fasi et al. 2021; docs/matrix-units.md): ``n`` products per step,
    aligned to the largest exponent (the running sum's too if ``align_addend``), each kept to
    ``frac_bits`` bits below it by ``terms`` ("truncate" toward zero, "floor", "nearest" even),
    summed exactly, normalised and rounded once.

    ``sum_bits`` (AMD CDNA3 as MMA-Sim models it, arXiv:2511.10909 ``tr_fdpa`` / ``gtr_fdpa``):
    c stays out of the alignment and joins through floors: with e = max(E, exponent of c), the
    products' sum is floored to ``sum_bits`` + 1 fraction bits below e and c to ``frac_bits``
    below e, the two are added exactly, normalised (exponent at least the addend format's
    emin) and floored to ``sum_bits`` fraction bits, then rounded once. ``split`` > 1: the
    products at step positions i mod split are aligned and summed separately, each below its
    own largest exponent, and their sums floored to ``frac_bits`` below the joint largest
    (CDNA3 fp8: 2, even and odd). ``drop_small_addend``: c more than ``frac_bits`` + 1
    binades below e counts as zero (CDNA3 fp8). ``inf_products``: a product of magnitude
    2^128 or more (past float32) is +-Inf before the sum, so that opposite ones give NaN
    (CDNA3 f16 / bf16 / xf32: MMA-Sim ``tr_fdpa``). ``zero_exponent``: a step holding a zero
    product (or a zero running sum, when it joins the alignment) aligns to at least this
    exponent, as if the zero had it (MMA-Sim's ``e_zero`` of NVIDIA units: -133 for float32 D
    from Hopper on, -21 for float16 D), so terms far below it lose their low bits."""
    n: int
    frac_bits: int
    align_addend: bool = True
    terms: str = "truncate"
    sum_bits: int | None = None
    split: int = 1
    drop_small_addend: bool = False
    inf_products: bool = False
    zero_exponent: int | None = None

    def __post_init__(self):
        for name, lo, hi in (("n", 1, 4096), ("frac_bits", 0, 40), ("split", 1, 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"FusedAdder {name}={v!r} is not allowed: an int in {lo}..{hi}")
        for flag in ("align_addend", "drop_small_addend", "inf_products"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"FusedAdder {flag} must be True or False, got "
                                f"{getattr(self, flag)!r}")
        if self.terms not in TERM_RULES:
            raise ValueError(f"FusedAdder terms={self.terms!r} is not allowed; choose one of "
                             f"{list(TERM_RULES)}")
        ze = self.zero_exponent
        if ze is not None and (isinstance(ze, bool) or not isinstance(ze, (int, np.integer))
                               or not -1100 <= ze <= 1100):
            raise ValueError(f"FusedAdder zero_exponent={ze!r} is not allowed: None or an int "
                             "in -1100..1100")
        if self.sum_bits is not None:
            v = self.sum_bits
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not (
                    self.frac_bits - 1 <= v <= 48):
                raise ValueError(f"FusedAdder sum_bits={v!r} is not allowed: an int in "
                                 f"{self.frac_bits - 1}..48 (at least frac_bits - 1)")
            if self.align_addend or self.terms != "truncate":
                raise ValueError("FusedAdder sum_bits= (the floored join of the products' sum "
                                 "and c) needs align_addend=False and terms='truncate'")
        elif self.split != 1 or self.drop_small_addend or self.inf_products:
            raise ValueError("FusedAdder split=, drop_small_addend= and inf_products= belong "
                             "to the floored join: give sum_bits= too")


@dataclass(frozen=True)
class Accumulator:
    """How a sum of products is formed; see the module docstring for every field."""
    fmt: object = "float32"
    rounding: str = "nearest_even"
    order: object = "sequential"
    block: int | None = None
    products: object = None
    product_rounding: str = "nearest_even"
    fused: FusedAdder | None = None
    promote_every: int | None = None
    promote_to: object = None
    overflow: str | None = None
    sr_bits: int | None = None
    sr_variant: str = "srff"
    input_formats: tuple = (None, None)
    addend_format: object = None
    block_scales: str = "product"
    group: int = 16
    nan: str = "quiet"
    positive_zero: bool = False
    ftz: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self):
        fmt = _format(self.fmt)
        object.__setattr__(self, "fmt", fmt)
        if isinstance(fmt, IntFormat):
            if self.overflow not in (None, "wrap", "saturate"):
                raise ValueError(f"overflow={self.overflow!r} is not allowed for an integer "
                                 "accumulator; choose 'wrap' (default) or 'saturate'")
            if fmt.frac_bits or self.fused or self.products is not None or self.order == "exact":
                raise ValueError("an integer accumulator adds exact integer products: "
                                 "frac_bits=0, no fused adder, no product format, no 'exact'")
        else:
            if not isinstance(fmt, FloatFormat) or not holds(fmt, np.float64):
                raise ValueError(f"fmt={fmt.name} is not allowed: an accumulator format is a "
                                 "FloatFormat float64 holds, or an IntFormat")
            check_overflow(self.overflow, fmt)
            _check_rounding_args(fmt, self.rounding, self.sr_bits, self.sr_variant,
                                 0 if self.stochastic else None, None, np.float64)
        if self.products is not None:
            object.__setattr__(self, "products", _format(self.products))
        if self.addend_format is not None:
            object.__setattr__(self, "addend_format", _format(self.addend_format))
        ins = tuple(None if f is None else _format(f) for f in self.input_formats)
        if len(ins) != 2:
            raise ValueError("input_formats must be a pair (format of A, format of B)")
        object.__setattr__(self, "input_formats", ins)
        if isinstance(self.order, str):
            if self.order not in ORDERS:
                raise ValueError(f"order={self.order!r} is not allowed; choose one of {ORDERS} "
                                 "or a nested tuple of product indices")
            if self.order in ("blocked", "blocked_pairwise") and not (
                    isinstance(self.block, int) and self.block >= 1):
                raise ValueError(f"order={self.order!r} needs block=<int >= 1> (products per "
                                 "chunk)")
            if self.order == "exact" and self.block is not None and not (
                    isinstance(self.block, int) and not isinstance(self.block, bool)
                    and self.block >= 1):
                raise ValueError(f"order='exact' takes block=None (one rounding) or an int >= 1 "
                                 f"(one rounding per block of products), got {self.block!r}")
        elif isinstance(self.order, (int, np.integer)) and not isinstance(self.order, bool):
            object.__setattr__(self, "order", (int(self.order),))      # a one-product tree
        elif not isinstance(self.order, tuple):
            raise TypeError(f"order must be a string or a nested tuple, got {self.order!r}")
        if self.fused is not None:
            if not isinstance(self.fused, FusedAdder):
                raise TypeError("fused must be a FusedAdder(n, frac_bits, ...)")
            if None in ins or not all(isinstance(f, FloatFormat) for f in ins):
                raise ValueError("a fused adder needs input_formats=(fmt_A, fmt_B): the float "
                                 "formats whose exponents it aligns")
            if self.order != "sequential" or self.products is not None:
                raise ValueError("a fused adder sets its own order and keeps products exact: "
                                 "leave order='sequential' and products=None")
        for flag in ("positive_zero", "ftz"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.ftz and (self.fused is not None or self.order == "exact" or isinstance(
                self.fmt, IntFormat)):
            raise ValueError("ftz=True (flush subnormals to zero) is modelled for the ordered "
                             "float accumulators (no fused adder, not 'exact')")
        if self.nan not in NAN_RESULTS:
            raise ValueError(f"nan={self.nan!r} is not allowed; choose one of {list(NAN_RESULTS)}")
        g = self.group
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 1 <= g <= 4096:
            raise ValueError(f"group={g!r} is not allowed: an int in 1..4096 (products per "
                             "block-scale group)")
        if self.block_scales not in BLOCK_SCALES:
            raise ValueError(f"block_scales={self.block_scales!r} is not allowed; choose one of "
                             f"{BLOCK_SCALES}")
        if self.promote_every is not None:
            if self.fused is not None and self.fused.sum_bits is not None:
                raise ValueError("promote_every with a floored join (FusedAdder.sum_bits) is not "
                                 "modelled")
            if self.fused is None or self.promote_every % self.fused.n:
                raise ValueError("promote_every needs a fused adder and must be a multiple of "
                                 "its n (promotion happens between steps)")
            pro = self.promote_to
            if pro is None:
                pro = Accumulator("float32")
            elif not isinstance(pro, Accumulator):
                pro = Accumulator(pro)
            if pro.stochastic and not self.stochastic:
                raise ValueError(f"promote_to={pro} rounds stochastically but the accumulator "
                                 f"rounds {self.rounding!r}: its random words come from the "
                                 "accumulator's seed/rbits; make both stochastic or neither")
            object.__setattr__(self, "promote_to", pro)

    @property
    def stochastic(self) -> bool:
        return mode_name(self.rounding) == "stochastic"

    def __str__(self):
        return self.name or repr(self)


