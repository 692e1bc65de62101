"""The ``lowprec`` command: ``formats``, ``show FMT``, ``round FMT VALUE...``,
``block-formats``, ``quantize FORMAT FILE.npy``, ``presets``, ``golden make OP FORMAT``, ``check ACTUAL.npy
GOLDEN.npz``."""
from __future__ import annotations

import argparse
import json
import os
import re
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
    values = cast.decode(np.arange(1 << f.bits, dtype=f.code_dtype), f, dtype=np.float64)
    for c in range(1 << f.bits):
        v = f.decode_code(c)
        text = "-0.0" if v == 0 and np.signbit(values[c]) else _fmt_num(v)
        print(f"  {c:#0{width + 2}x}  {c:0{f.bits}b}  {text}")
    return 0


def _seed(args) -> dict:
    """{"seed": N} for stochastic rounding, which needs one (as the API does); {} otherwise."""
    if args.rounding == "stochastic":
        if args.seed is None:
            raise ValueError("--rounding stochastic needs --seed N (the random stream is "
                             "reproducible only from a seed)")
        return {"seed": args.seed}
    if args.seed is not None:
        raise ValueError(f"--seed applies to --rounding stochastic, not {args.rounding}")
    return {}


def _neighbours(x, f) -> str:
    """The values of f just below and above x: n/a for NaN; past the largest finite value,
    that value and Inf (or none where the format has no Inf)."""
    if np.isnan(x):
        return "n/a (NaN)"
    lo_hi = cast.round(np.float64([x]), f, "down", "saturate")[0], \
        cast.round(np.float64([x]), f, "up", "saturate")[0]
    inf = getattr(f, "has_inf", False)
    if x > f.max:
        return f"[{float(f.max)!r}, {'inf' if inf else 'none'}]"
    if x < -f.max:
        return f"[{'-inf' if inf else 'none'}, {-float(f.max)!r}]" \
            if getattr(f, "signed", True) else "n/a"
    return f"[{float(lo_hi[0])!r}, {float(lo_hi[1])!r}]"


def cmd_round(args) -> int:
    f = F.format(args.fmt)
    try:
        xs = np.array([float(v) for v in args.values], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"VALUE must be numbers: {e}") from None
    kw = dict(rounding=args.rounding, overflow=args.overflow)
    kw.update(_seed(args))
    r = cast.round(xs, f, **kw)
    codes = cast.encode(xs, f, **kw)
    for x, y, c in zip(xs, r, codes):
        err = (Fraction(float(y)) - Fraction(float(x))) if np.isfinite(y) and np.isfinite(x) \
            else "n/a"
        beyond = "  (beyond the largest finite value)" if abs(x) > f.max else ""
        print(f"{float(x)!r} -> {float(y)!r}  code {int(c):#0{(f.bits + 3) // 4 + 2}x} "
              f"({int(c):0{f.bits}b})  error {_fmt_num(err) if err != 'n/a' else err}  "
              f"neighbours {_neighbours(x, f)}{beyond}")
    return 0


def cmd_block_formats(args) -> int:
    from . import blocks  # noqa: PLC0415
    rows = [("name", "element", "block", "scale", "rule", "bits/elem", "scale overflow",
             "Inf block", "pad")]
    for name in blocks.block_formats():
        b = blocks.block_format(name)
        blk = f"{b.tile[0]}x{b.tile[1]} tile" if b.tile else f"1x{b.k}"
        rows.append((name, b.elem.name, blk, b.scale_fmt.name, b.scale_rule,
                     f"{b.bits_per_element:g}",
                     "-" if b.scale_rule in blocks.TWO_LEVEL else b.scale_overflow, b.nonfinite,
                     "yes" if b.pad else "no"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    return 0


def cmd_quantize(args) -> int:
    from . import blocks  # noqa: PLC0415
    bf = blocks.block_format(args.format)
    kw = _seed(args)
    try:
        x = np.load(args.file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"FILE must be a .npy array: {e}") from None
    bt = blocks.quantize(x, bf, axis=args.axis, rounding=args.rounding, **kw)
    back = bt.dequantize(np.float64)
    xf = np.asarray(x, dtype=np.float64)
    fin = np.isfinite(xf) & np.isfinite(back)
    err = np.where(fin, back - xf, 0.0)
    sig, noise = np.sum(xf[fin] ** 2), np.sum(err ** 2)
    sqnr = "inf" if noise == 0 else f"{10 * np.log10(sig / noise):.2f} dB"
    nblocks = bt.scale_codes.size
    print(f"{bf!r}\ninput {x.dtype} {x.shape}, axis {bt.axis}: {nblocks} blocks, "
          f"tensor scale {float(bt.tensor_scale)!r}")
    print(f"error: max |err| {np.max(np.abs(err), initial=0.0):.6g}, rms "
          f"{np.sqrt(np.mean(err ** 2)) if err.size else 0.0:.6g}, SQNR {sqnr}; "
          f"{int(np.sum(~fin))} non-finite outputs")
    blk_err = np.max(np.abs(blocks._block(err, bt.axis, bf)), axis=-1, initial=0.0)
    blk_amax = np.max(np.abs(blocks._block(np.where(np.isfinite(xf), xf, 0), bt.axis, bf)),
                      axis=-1, initial=0.0)
    scales = cast.decode(bt.scale_codes, bf.scale_fmt, dtype=np.float64)
    width = (bf.scale_fmt.bits + 3) // 4 + 2
    print("block" + " " * 11 + "scale code  scale          block amax     max |err|")
    shown = min(nblocks, args.show)
    for n, idx in enumerate(np.ndindex(bt.scale_codes.shape)):
        if n == shown:
            break
        print(f"{str(idx):16s}{int(bt.scale_codes[idx]):#0{width}x}".ljust(28)
              + f"{float(scales[idx]):<15.6g}{float(blk_amax[idx]):<15.6g}"
              f"{float(blk_err[idx]):.6g}")
    if nblocks > shown:
        print(f"... {nblocks - shown} more blocks (--show N to list more)")
    if args.out:
        np.savez(args.out, codes=bt.codes, scale_codes=bt.scale_codes,
                 tensor_scale=np.float32(bt.tensor_scale), shape=np.array(bt.shape),
                 axis=bt.axis, format=bf.name, dequantized=bt.dequantize(xf.dtype if
                                                                         x.dtype.kind == "f"
                                                                         else np.float32))
        print(f"wrote {args.out}")
    return 0


def _shape(text):
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: give sizes like 4,64") from None
    if not shape or any(n < 0 for n in shape):
        raise argparse.ArgumentTypeError(f"--shape {text!r}: sizes must be >= 0")
    return shape


def cmd_presets(args) -> int:
    from . import hardware  # noqa: PLC0415
    def how(acc):
        fz = acc.fused
        if fz is None:
            h = f"order={acc.order}" + (f" block={acc.block}" if acc.block else "")
            if acc.products is not None:
                h += f" products={acc.products.name}"
            return h + (" ftz" if acc.ftz else "")
        h = f"fused N={fz.n} F={fz.frac_bits}{'' if fz.align_addend else ' c-unaligned'}"
        if fz.sum_bits is not None:
            h += f" floored join {fz.sum_bits}" + (f" split {fz.split}" if fz.split > 1 else "")
        if acc.promote_every:
            h += f", promote every {acc.promote_every} to {acc.promote_to.fmt.name}"
        return h

    def ins(acc):
        return "/".join(f.name for f in acc.input_formats) if acc.input_formats[0] else \
            "float32"
    if args.instructions:
        for arch, op, a, b, d in hardware.instructions():
            acc = hardware.instruction(arch, op, a, b, d)
            types = f"{d}.{a}.{b}"
            print(f"{arch:7s} {op:12s} {types:15s} {acc.fmt.name:8s} {acc.rounding:13s} "
                  f"{how(acc)}")
        print("\nSource: MMA-Sim (arXiv:2511.10909); lp.hardware.instruction's docstring.")
        return 0
    for name, doc in hardware.presets().items():
        acc = hardware.preset(name)
        print(f"{name:22s} {ins(acc):28s} {acc.fmt.name:8s} {acc.rounding:13s} {how(acc)}")
    print("\nSources: lp.hardware.presets() (one line each); lowprec.hardware's docstring. "
          "Per instruction: lowprec presets --instructions.")
    return 0


def cmd_golden_make(args) -> int:
    from . import golden  # noqa: PLC0415
    g = golden.make(args.op, args.format, args.shape, args.seed, rounding=args.rounding,
                    overflow=args.overflow, scale=args.scale, specials=not args.no_specials,
                    axis=args.axis)
    golden.save(g, args.out)
    arrays = ", ".join(f"{k} {v[0]}{tuple(v[1])}" for k, v in g["metadata"]["arrays"].items())
    print(f"wrote {args.out}: {args.op} {args.format}, seed {args.seed}: {arrays}")
    return 0


def cmd_check(args) -> int:
    from . import golden  # noqa: PLC0415
    try:
        actual = np.load(args.actual, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"ACTUAL must be a .npy array: {e}") from None
    if not isinstance(actual, np.ndarray):
        raise ValueError(f"ACTUAL {args.actual} is an .npz archive; save the kernel's output "
                         "as one .npy array")
    g = golden.load(args.golden, keys=(args.key,), max_bytes=args.max_bytes,
                    verify=not args.no_verify)
    report = golden.check(actual, g, args.key, fmt=args.fmt, layout=args.layout,
                          show=args.show, strict_nan=args.strict_nan)
    meta = g["metadata"]
    if args.json:
        print(json.dumps(dict(report.to_dict(), actual=args.actual, golden=args.golden,
                              key=args.key, op=meta["op"], format=meta["format"])))
    else:
        print(f"{args.actual} vs {args.golden} [{args.key}] ({meta['op']} {meta['format']}, "
              f"lowprec {meta.get('lowprec_version')})")
        print(report)
    return 0 if report.ok else 1


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's default shown (where it has a value)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in h \
                and action.option_strings:
            h += " (default: %(default)s)"
        return h


EXAMPLES = {
    "": """examples:
  lowprec formats
  lowprec round e4m3 1.3 464
  lowprec golden make round float8_e4m3fn --shape 128,64 --seed 7 --out e4m3.npz
  lowprec check out.npy e4m3.npz""",
    "formats": "example:\n  lowprec formats",
    "show": "examples:\n  lowprec show fp4\n  lowprec show float8_e4m3fn",
    "round": """examples:
  lowprec round e4m3 1.3 464
  lowprec round bfloat16 0.1 --rounding toward_zero
  lowprec round fp4 0.7 --rounding stochastic --seed 3""",
    "block-formats": "example:\n  lowprec block-formats",
    "quantize": """examples:
  lowprec quantize nvfp4 weights.npy
  lowprec quantize mxfp8_e4m3 acts.npy --axis 0 --out acts_mx.npz
  lowprec quantize nvfp4 grads.npy --rounding stochastic --seed 1""",
    "presets": "examples:\n  lowprec presets\n  lowprec presets --instructions",
    "golden": """examples:
  lowprec golden make round float8_e4m3fn --shape 128,64 --seed 7 --out e4m3.npz
  lowprec golden make quantize nvfp4 --shape 128,64 --seed 7 --out nv.npz
  lowprec golden make matmul h100-fp8 --shape 128,256,64 --seed 1 --out gemm.npz""",
    "check": """examples:
  lowprec check out.npy e4m3.npz
  lowprec check codes.npy nv.npz --key codes                 # codes (rows, blocks, k) or (rows, cols)
  lowprec check packed.npy nv.npz --key codes --layout fp4x2  # two FP4 codes per byte
  lowprec check sf.npy nv.npz --key scale_codes --layout cublas-scales
  lowprec check out.npy gemm.npz --json > report.json

exit status: 0 every element matches, 1 a mismatch, 2 an error (bad arguments or files)""",
}


def golden_layouts():
    from .golden import LAYOUTS  # noqa: PLC0415
    return list(LAYOUTS)


def build_parser() -> argparse.ArgumentParser:
    fmt_kw = dict(formatter_class=_Formatter)
    p = argparse.ArgumentParser(prog="lowprec", description="Bit-exact low-precision formats.",
                                epilog=EXAMPLES[""], **fmt_kw)
    from . import __version__  # noqa: PLC0415
    p.add_argument("--version", action="version", version=f"lowprec {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name, help, fn, **kw):
        s = sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name], **fmt_kw,
                           **kw)
        s.set_defaults(fn=fn)
        return s
    cmd("formats", "table of every named format", cmd_formats)
    s = cmd("show", "every value and code of a format (<= 8 bits)", cmd_show)
    s.add_argument("fmt", metavar="FMT", help="a format name (lowprec formats)")
    s = cmd("round", "round values: result, code, error, neighbours", cmd_round)
    s.add_argument("fmt", metavar="FMT", help="a format name (lowprec formats)")
    s.add_argument("values", metavar="VALUE", nargs="+", help="numbers to round")
    s.set_defaults(rounding=None)
    # negative VALUEs such as -1e39 or -inf are values, not options (argparse knows only -12.5)
    s._negative_number_matcher = re.compile(
        r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)
    s.add_argument("--rounding", default=None, choices=list(MODES),
                   help="rounding mode (default: the format's own: nearest_even; hifloat8 "
                   "nearest_away)")
    s.add_argument("--overflow", default=None, choices=[o for o in OVERFLOWS if o],
                   help="beyond the largest finite value (default: the format's own rule)")
    s.add_argument("--seed", type=int, default=None, help="seed of the random stream "
                   "(required with --rounding stochastic)")
    cmd("block-formats", "table of the block-format presets", cmd_block_formats)
    s = cmd("quantize", "block-quantize a .npy file: per-block scales, errors", cmd_quantize)
    s.add_argument("format", metavar="FORMAT", help="a preset (see block-formats)")
    s.add_argument("file", metavar="FILE.npy", help="the array to quantize")
    s.add_argument("--axis", type=int, default=-1, help="the blocked axis")
    s.add_argument("--out", default=None, help="write codes, scales and values to this .npz")
    s.add_argument("--rounding", default="nearest_even", choices=list(MODES),
                   help="rounding mode of the elements")
    s.add_argument("--seed", type=int, default=None, help="seed of the random stream "
                   "(required with --rounding stochastic)")
    s.add_argument("--show", type=int, default=8, help="blocks to list")
    s = cmd("presets", "the matrix-unit presets of lp.hardware", cmd_presets)
    s.add_argument("--instructions", action="store_true",
                   help="every instruction lp.hardware.instruction models instead")
    s = sub.add_parser("golden", help="golden files for kernel tests", epilog=EXAMPLES["golden"],
                       **fmt_kw)
    gs = s.add_subparsers(dest="golden_cmd", required=True)
    s = gs.add_parser("make", help="seeded inputs and lowprec's outputs, as one .npz",
                      epilog=EXAMPLES["golden"], **fmt_kw)
    s.add_argument("op", choices=["round", "encode", "quantize", "matmul"], help="the operation")
    s.add_argument("format", metavar="FORMAT", help="a format (round, encode), a block "
                                                     "format (quantize) or a preset (matmul)")
    s.add_argument("--shape", type=_shape, required=True, help="e.g. 128,64 (matmul: M,K,N)")
    s.add_argument("--seed", type=int, required=True, help="seed of the inputs (and of "
                   "stochastic rounding)")
    s.add_argument("--out", required=True, help="the .npz to write")
    s.add_argument("--rounding", default="nearest_even", choices=list(MODES),
                   help="rounding mode")
    s.add_argument("--overflow", default=None, choices=[o for o in OVERFLOWS if o],
                   help="beyond the largest finite value (default: the format's own rule)")
    s.add_argument("--scale", type=float, default=1.0, help="inputs are N(0, scale^2)")
    s.add_argument("--no-specials", action="store_true", help="no Inf/NaN/0/max inputs")
    s.add_argument("--axis", type=int, default=-1, help="blocked axis (quantize)")
    s.set_defaults(fn=cmd_golden_make)
    s = cmd("check", "compare a kernel's output with a golden file", cmd_check)
    s.add_argument("actual", metavar="ACTUAL.npy", help="the kernel's output (values, or codes "
                   "as an unsigned integer array)")
    s.add_argument("golden", metavar="GOLDEN.npz", help="a file of `lowprec golden make`")
    s.add_argument("--key", default="expected", help="golden array to compare with "
                                                     "(expected, codes, scale_codes)")
    s.add_argument("--fmt", default=None, help="compare in this format (default: the golden "
                   "array's own)")
    s.add_argument("--layout", default="plain", choices=golden_layouts(),
                   help="how ACTUAL is laid out: plain, fp4x2 (two FP4 codes per byte), "
                   "cublas-scales (block scales in cuBLAS's 128x4 swizzle)")
    s.add_argument("--show", type=int, default=10, help="mismatches to list, worst first")
    s.add_argument("--strict-nan", action="store_true",
                   help="NaNs must agree in sign and payload too")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object")
    s.add_argument("--max-bytes", type=int, default=1 << 30,
                   help="refuse golden arrays larger than this")
    s.add_argument("--no-verify", action="store_true", help="do not recompute the golden's "
                   "expected arrays from its input and metadata")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:             # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError) as e:
        print(f"lowprec: error: {e}", file=sys.stderr)
        return 2
    except (Exception, RecursionError) as e:          # never a traceback; 1 means mismatch
        print(f"lowprec: error: {type(e).__name__}: {e} (this is a bug in lowprec; please "
              "report it with the command)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
