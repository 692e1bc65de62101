"""The ``lowprec`` command: ``formats``, ``show FMT``, ``round FMT VALUE...``."""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction

import numpy as np

from . import cast
from . import formats as _formats_module  # noqa: F401  (registers the module)

F = sys.modules["lowprec.formats"]    # lp.formats is also the name of a function
from .rounding import MODES, OVERFLOWS


def _fmt_num(v) -> str:
    if isinstance(v, str):
        return v
    return repr(float(v)) if v == Fraction(float(v)) else str(v)


def _specials(fmt) -> tuple[str, str]:
    inf = {True: "IEEE", "max_code": "top code", False: "-"}.get(getattr(fmt, "inf", None), "-")
    nan = {"ieee": "IEEE", "max_code": "all ones", "neg_zero": "0x80 (-0 code)", None: "-"}.get(
        getattr(fmt, "nan", None), "-")
    if isinstance(fmt, F.TableFormat):
        inf = f"{fmt.inf_code:#x}" if fmt.has_inf else "-"
        nan = f"{fmt.nan_code:#x}" if fmt.has_nan else "-"
    return inf, nan


def cmd_formats(args) -> int:
    rows = [("name", "bits", "e", "m", "bias", "max", "min normal", "min subnormal", "Inf", "NaN")]
    for name in F.formats():
        f = F.format(name)
        if isinstance(f, F.FloatFormat):
            e, m, b = str(f.exp_bits), str(f.man_bits), str(f.bias)
            mn = f"{f.min_normal:.6g}"
        elif isinstance(f, F.IntFormat):
            e, m, b, mn = "-", "-", "-", "-"
        else:
            e, m, b, mn = "tapered", "1-3", "-", f"{f.min_normal:.6g}"
        inf, nan = _specials(f)
        rows.append((name, str(f.bits), e, m, b, f"{f.max:.6g}", mn, f"{f.min_subnormal:.6g}",
                     inf, nan))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    print("\nAlso: P3109 binary{K}p{P}{s|u}{e|f}, e.g. binary8p3se; aliases: e4m3, fp4, bf16, ...")
    return 0


def cmd_show(args) -> int:
    f = F.format(args.fmt)
    print(repr(f))
    print(f"bits={f.bits} max={f.max!r} min_subnormal={f.min_subnormal!r} eps={f.eps!r}")
    if f.bits > 8:
        print(f"({f.bits} bits: value table omitted; formats of at most 8 bits list every code)")
        return 0
    width = (f.bits + 3) // 4
    for c in range(1 << f.bits):
        v = f.decode_code(c)
        print(f"  {c:#0{width + 2}x}  {c:0{f.bits}b}  {_fmt_num(v)}")
    return 0


def cmd_round(args) -> int:
    f = F.format(args.fmt)
    try:
        xs = np.array([float(v) for v in args.values], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"VALUE must be numbers: {e}") from None
    kw = dict(rounding=args.rounding, overflow=args.overflow)
    if args.rounding == "stochastic":
        kw["seed"] = args.seed
    r = cast.round(xs, f, **kw)
    codes = cast.encode(xs, f, **kw)
    finite = np.where(np.isfinite(xs), xs, 0.0)
    down = cast.round(finite, f, "down", "saturate")
    up = cast.round(finite, f, "up", "saturate")
    for x, y, c, lo, hi in zip(xs, r, codes, down, up):
        err = (Fraction(float(y)) - Fraction(float(x))) if np.isfinite(y) and np.isfinite(x) \
            else "n/a"
        beyond = "  (beyond the largest finite value)" if abs(x) > f.max else ""
        print(f"{float(x)!r} -> {float(y)!r}  code {int(c):#0{(f.bits + 3) // 4 + 2}x} "
              f"({int(c):0{f.bits}b})  error {_fmt_num(err) if err != 'n/a' else err}  "
              f"neighbours [{float(lo)!r}, {float(hi)!r}]{beyond}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lowprec", description="Bit-exact low-precision formats.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("formats", help="table of every named format")
    s.set_defaults(fn=cmd_formats)
    s = sub.add_parser("show", help="every value and code of a format (<= 8 bits)")
    s.add_argument("fmt", metavar="FMT")
    s.set_defaults(fn=cmd_show)
    s = sub.add_parser("round", help="round values: result, code, error, neighbours")
    s.add_argument("fmt", metavar="FMT")
    s.add_argument("values", metavar="VALUE", nargs="+")
    s.add_argument("--rounding", default="nearest_even", choices=list(MODES))
    s.add_argument("--overflow", default=None, choices=[o for o in OVERFLOWS if o])
    s.add_argument("--seed", type=int, default=0, help="seed for --rounding stochastic")
    s.set_defaults(fn=cmd_round)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError) as e:
        print(f"lowprec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
