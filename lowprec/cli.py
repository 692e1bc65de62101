"""The ``lowprec`` command: ``formats``, ``show FMT``, ``round FMT VALUE...``,
``block-formats``, ``quantize FORMAT FILE.npy``, ``presets``, ``golden make OP FORMAT``, ``check ACTUAL.npy
GOLDEN.npz``."""
from __future__ import annotations

import argparse
import os
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
    try:
        x = np.load(args.file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"FILE must be a .npy array: {e}") from None
    kw = {"seed": args.seed} if args.rounding == "stochastic" else {}
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
    except (OSError, ValueError) as e:
        raise ValueError(f"ACTUAL must be a .npy array: {e}") from None
    g = golden.load(args.golden)
    report = golden.check(actual, g, args.key)
    print(f"{args.actual} vs {args.golden} [{args.key}] ({g['metadata']['op']} "
          f"{g['metadata']['format']}, lowprec {g['metadata']['lowprec_version']})")
    print(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lowprec", description="Bit-exact low-precision formats.")
    from . import __version__  # noqa: PLC0415
    p.add_argument("--version", action="version", version=f"lowprec {__version__}")
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
    s = sub.add_parser("block-formats", help="table of the block-format presets")
    s.set_defaults(fn=cmd_block_formats)
    s = sub.add_parser("quantize", help="block-quantize a .npy file: per-block scales, errors")
    s.add_argument("format", metavar="FORMAT", help="a preset (see block-formats)")
    s.add_argument("file", metavar="FILE.npy")
    s.add_argument("--axis", type=int, default=-1, help="the blocked axis (default -1)")
    s.add_argument("--out", default=None, help="write codes, scales and values to this .npz")
    s.add_argument("--rounding", default="nearest_even", choices=list(MODES))
    s.add_argument("--seed", type=int, default=0, help="seed for --rounding stochastic")
    s.add_argument("--show", type=int, default=8, help="blocks to list (default 8)")
    s.set_defaults(fn=cmd_quantize)
    s = sub.add_parser("presets", help="the matrix-unit presets of lp.hardware")
    s.add_argument("--instructions", action="store_true",
                   help="every instruction lp.hardware.instruction models instead")
    s.set_defaults(fn=cmd_presets)
    s = sub.add_parser("golden", help="golden files for kernel tests")
    gs = s.add_subparsers(dest="golden_cmd", required=True)
    s = gs.add_parser("make", help="seeded inputs and lowprec's outputs, as one .npz")
    s.add_argument("op", choices=["round", "encode", "quantize", "matmul"])
    s.add_argument("format", metavar="FORMAT", help="a format (round, encode), a block "
                                                     "format (quantize) or a preset (matmul)")
    s.add_argument("--shape", type=_shape, required=True, help="e.g. 128,64 (matmul: M,K,N)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="the .npz to write")
    s.add_argument("--rounding", default="nearest_even", choices=list(MODES))
    s.add_argument("--overflow", default=None, choices=[o for o in OVERFLOWS if o])
    s.add_argument("--scale", type=float, default=1.0, help="inputs are N(0, scale^2)")
    s.add_argument("--no-specials", action="store_true", help="no Inf/NaN/0/max inputs")
    s.add_argument("--axis", type=int, default=-1, help="blocked axis (quantize)")
    s.set_defaults(fn=cmd_golden_make)
    s = sub.add_parser("check", help="compare a kernel's output with a golden file")
    s.add_argument("actual", metavar="ACTUAL.npy")
    s.add_argument("golden", metavar="GOLDEN.npz")
    s.add_argument("--key", default="expected", help="golden array to compare with "
                                                     "(expected, codes, scale_codes)")
    s.set_defaults(fn=cmd_check)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError) as e:
        print(f"lowprec: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:             # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
