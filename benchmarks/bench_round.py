"""make bench: lp.round beside ml_dtypes, torch and a plain copy, on the same 10M float32 values.

Prints a Markdown table (median of repeats, ratio to np.copyto). No timing is asserted anywhere.
"""
import os
import sys
import time

import ml_dtypes
import numpy as np

import lowprec as lp

N = int(os.environ.get("LOWPREC_BENCH_N", 10_000_000))
REPEAT = int(os.environ.get("LOWPREC_BENCH_REPEAT", 7))


def print_ratio_table(rows, res, base, ratio_label):
    """Markdown table of rows (name, fn) with their times res[name] and the ratio to base."""
    print(f"| operation | time (ms) | {ratio_label} |")
    print("|---|---:|---:|")
    for name, _ in rows:
        print(f"| {name} | {res[name] * 1e3:.1f} | {res[name] / res[base]:.2f} |")


def time_rows(rows):
    """Median time of each row; repeats interleave the rows so that a slow moment of the
    machine does not fall on one row only. One untimed call first (compilation)."""
    for _, fn in rows:
        fn()
    ts = {name: [] for name, _ in rows}
    for _ in range(REPEAT):
        for name, fn in rows:
            t0 = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t0)
    return [(name, float(np.median(ts[name]))) for name, _ in rows]


def main():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(N) * 50).astype(np.float32)
    out = np.empty_like(x)
    out2 = np.empty_like(x)
    e3m4 = lp.FloatFormat(exp_bits=3, man_bits=4, bias=3)      # an arbitrary custom format
    rows = [
        ("np.copyto (memory bound)", lambda: np.copyto(out, x)),
        ("lp.round float8_e4m3fn nearest_even", lambda: lp.round(x, "float8_e4m3fn")),
        ("lp.round float8_e4m3fn nearest_even, out= (no allocation)",
         lambda: lp.round(x, "float8_e4m3fn", out=out2)),
        ("lp.encode float8_e4m3fn nearest_even", lambda: lp.encode(x, "float8_e4m3fn")),
        ("lp.round float4_e2m1fn nearest_even", lambda: lp.round(x, "float4_e2m1fn")),
        ("lp.round e3m4 (custom) nearest_even", lambda: lp.round(x, e3m4)),
        ("lp.round e3m4 (custom) toward_zero", lambda: lp.round(x, e3m4, "toward_zero")),
        ("lp.round float8_e4m3fn stochastic seed", lambda: lp.round(
            x, "float8_e4m3fn", "stochastic", seed=1)),
        ("lp.round e3m4 stochastic sr_bits=8 seed", lambda: lp.round(
            x, e3m4, "stochastic", sr_bits=8, seed=1)),
        ("ml_dtypes astype float8_e4m3fn", lambda: x.astype(ml_dtypes.float8_e4m3fn)),
        ("ml_dtypes astype float8_e4m3fn + back", lambda: x.astype(
            ml_dtypes.float8_e4m3fn).astype(np.float32)),
        ("ml_dtypes astype float4_e2m1fn + back", lambda: x.astype(
            ml_dtypes.float4_e2m1fn).astype(np.float32)),
    ]
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        tx = torch.from_numpy(x)
        rows.append(("torch .to(float8_e4m3fn)", lambda: tx.to(torch.float8_e4m3fn)))
        rows.append(("torch .to(float8_e4m3fn) + back", lambda: tx.to(
            torch.float8_e4m3fn).to(torch.float32)))
    except ImportError:
        pass
    results = time_rows(rows)
    base = results[0][1]
    print(f"{N:,} float32 values, {os.cpu_count()} cores, median of {REPEAT} interleaved runs\n")
    print("| operation | time (ms) | x copy |")
    print("|---|---:|---:|")
    for name, t in results:
        print(f"| {name} | {t * 1e3:.1f} | {t / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
