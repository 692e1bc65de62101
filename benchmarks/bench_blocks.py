"""make bench (part 2): block quantize and fake-quantize of 16M float32 values (4096 x 4096,
blocks along the last axis) beside lp.round to the element format, a copy, and torchao's CPU
implementation of the same formats. Prints a Markdown table; nothing is asserted."""
import os
import sys
import warnings

import numpy as np

import lowprec as lp
from bench_round import REPEAT, time_rows

SHAPE = (int(os.environ.get("LOWPREC_BENCH_ROWS", 4096)), 4096)


def main():
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    out = np.empty_like(x)
    rows = [("np.copyto (memory bound)", lambda: np.copyto(out, x)),
            ("lp.round float8_e4m3fn", lambda: lp.round(x, "float8_e4m3fn")),
            ("lp.round float4_e2m1fn", lambda: lp.round(x, "float4_e2m1fn"))]
    for name in ("mxfp8_e4m3", "mxfp4", "nvfp4"):
        rows.append((f"lp.quantize {name}", lambda n=name: lp.quantize(x, n)))
        rows.append((f"lp.fake_quantize {name}", lambda n=name: lp.fake_quantize(x, n)))
    rows.append(("lp.fake_quantize mxfp4 along axis 0 (columnwise)",
                 lambda: lp.fake_quantize(x, "mxfp4", axis=0)))
    try:
        import torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.prototype.mx_formats.mx_tensor import to_mx
            from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, \
                per_tensor_amax_to_scale
        torch.set_num_threads(os.cpu_count() or 1)
        tx = torch.from_numpy(x)
        rows.append(("torchao to_mx mxfp8_e4m3 (floor)",
                     lambda: to_mx(tx, torch.float8_e4m3fn, 32)))
        rows.append(("torchao to_mx mxfp4 (floor)", lambda: to_mx(tx, torch.float4_e2m1fn_x2,
                                                                  32)))
        rows.append(("torchao nvfp4_quantize (per-tensor scale)", lambda: nvfp4_quantize(
            tx, 16, per_tensor_amax_to_scale(tx.abs().max()))))
    except ImportError:
        pass
    res = dict(time_rows(rows))
    base = res["np.copyto (memory bound)"]
    elem_round = {"mxfp8_e4m3": "lp.round float8_e4m3fn", "mxfp4": "lp.round float4_e2m1fn",
                  "nvfp4": "lp.round float4_e2m1fn", "to_mx mxfp8": "lp.round float8_e4m3fn"}
    print(f"{x.size:,} float32 values {SHAPE}, {os.cpu_count()} cores, median of {REPEAT} "
          "interleaved runs\n")
    print("| operation | time (ms) | x copy | x lp.round to the element format |")
    print("|---|---:|---:|---:|")
    for name, _ in rows:
        t = res[name]
        ref = next((res[v] for k, v in elem_round.items() if k in name), None)
        ratio = f"{t / ref:.2f}" if ref and not name.startswith("lp.round") else ""
        print(f"| {name} | {t * 1e3:.1f} | {t / base:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
