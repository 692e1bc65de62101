"""make bench (part 3): lp.matmul 512 x 512 x 512 with matrix-unit presets beside NumPy's
float64 matmul on the same data. Prints MACs/s and the time ratio; nothing is asserted."""
import os
import sys

import ml_dtypes
import numpy as np

import lowprec as lp
from bench_round import time_rows

N = int(os.environ.get("LOWPREC_BENCH_MATMUL", 512))


def main():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    in16 = [x.astype(np.float16).astype(np.float32) for x in (a, b)]
    in8 = [x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32) for x in (a, b)]
    rows = [("NumPy float64 a @ b", lambda: in16[0].astype(np.float64) @ in16[1])]
    for preset, (x, y) in (("h100-fp8", in8), ("b200-fp8", in8), ("deepseek-v3-fp8", in8),
                           ("a100-fp16", in16), ("h100-fp16", in16), ("exact", in16),
                           ("fp32-sequential", in16)):
        rows.append((f"lp.matmul {preset}", lambda p=preset, x=x, y=y: lp.matmul(x, y, p)))
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
