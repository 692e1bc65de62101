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
        ("x.copy() (allocating copy: the page faults of a fresh array)", lambda: x.copy()),
        ("lp.encode float8_e4m3fn nearest_even", lambda: lp.encode(x, "float8_e4m3fn")),
    ]
    cases = [
        ("float8_e4m3fn nearest_even", ("float8_e4m3fn",), {}),
        ("float4_e2m1fn nearest_even", ("float4_e2m1fn",), {}),
        ("e3m4 (custom) nearest_even", (e3m4,), {}),
        ("e3m4 (custom) toward_zero", (e3m4, "toward_zero"), {}),
        ("bfloat16 nearest_even", ("bfloat16",), {}),
        ("float8_e4m3fn stochastic seed", ("float8_e4m3fn", "stochastic"), {"seed": 1}),
        ("e3m4 stochastic sr_bits=8 seed", (e3m4, "stochastic"), {"sr_bits": 8, "seed": 1}),
    ]
    for label, args, kw in cases:
        rows.append((f"lp.round {label}, out=",
                     lambda a=args, k=kw: lp.round(x, *a, **k, out=out2)))
        rows.append((f"lp.round {label} (allocating)", lambda a=args, k=kw: lp.round(x, *a, **k)))
    rows += [
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
    res = dict(time_rows(rows))
    print(f"{N:,} float32 values, {os.cpu_count()} cores, median of {REPEAT} interleaved runs\n")
    print_ratio_table(rows, res, "np.copyto (memory bound)", "x copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
