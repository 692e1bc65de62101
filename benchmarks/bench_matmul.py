"""make bench (part 3): lp.matmul 512 x 512 x 512 with every matrix-unit preset (and the FMA
chain and CDNA1 instructions) beside NumPy's float64 matmul on the same data. Each preset gets
values of its own input formats (block-scaled presets: MX / NVFP4 BlockTensors). Prints
MACs/s and the time ratio; nothing is asserted."""
import os
import sys

import numpy as np

import lowprec as lp
from bench_round import time_rows

N = int(os.environ.get("LOWPREC_BENCH_MATMUL", 512))
BLOCKED = {"b200-mxf8f6f4": "mxfp8_e4m3", "b200-mxf4nvf4": "nvfp4"}
INSTRUCTIONS = [("sm_90", "mma.sync", "f64", "f64", "f64"), ("gfx942", "v_mfma", "f32", "f32",
                                                              "f32"),
                ("gfx908", "v_mfma", "f16", "f16", "f32")]


def operands(acc, name, a, b):
    if name in BLOCKED:
        return lp.quantize(a, BLOCKED[name]), lp.quantize(b, BLOCKED[name], axis=-2)
    fa, fb = (f or lp.format("float16") for f in acc.input_formats)
    return (lp.round(a, fa, overflow="saturate", dtype=np.float64),
            lp.round(b, fb, overflow="saturate", dtype=np.float64))


def main():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    models = [(name, lp.hardware.preset(name)) for name in sorted(lp.hardware.presets())]
    models += [(" ".join(i), lp.hardware.instruction(*i)) for i in INSTRUCTIONS]
    x16, y16 = (lp.round(v, "float16", dtype=np.float64) for v in (a, b))
    rows = [("NumPy float64 a @ b", lambda: x16 @ y16)]
    for name, acc in models:
        x, y = operands(acc, name, a, b)
        rows.append((f"lp.matmul {name}", lambda x=x, y=y, acc=acc: lp.matmul(x, y, acc)))
    res = time_rows(rows)
    base = res[0][1]
    print(f"{N} x {N} x {N} ({N ** 3:,} multiply-adds), {os.cpu_count()} cores, median of "
          "interleaved runs\n")
    print("| operation | time (s) | MACs/s | x NumPy float64 |")
    print("|---|---:|---:|---:|")
    for name, t in res:
        print(f"| {name} | {t:.3f} | {N ** 3 / t:.2e} | {t / base:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
