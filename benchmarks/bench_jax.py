"""make bench (part 4): jitted lowprec_jax.round beside the NumPy core on the same 10M float32
values (JAX on CPU). Prints a Markdown table; nothing is asserted."""
import os
import sys

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

import lowprec as lp  # noqa: E402
import lowprec_jax as lj  # noqa: E402
from bench_round import N, REPEAT, time_rows  # noqa: E402


def main():
    x = (np.random.default_rng(0).standard_normal(N) * 50).astype(np.float32)
    xj = jax.device_put(x)
    out = np.empty_like(x)
    rows = [("np.copyto (memory bound)", lambda: np.copyto(out, x))]
    for fmt, mode, kw in (("float8_e4m3fn", "nearest_even", {}),
                          ("float4_e2m1fn", "nearest_even", {}),
                          ("float8_e4m3fn", "stochastic", dict(seed=1))):
        f = jax.jit(lambda v, fmt=fmt, mode=mode, kw=kw: lj.round(v, fmt, mode, **kw))
        label = f"{fmt} {mode}"
        rows.append((f"lp.round {label}", lambda fmt=fmt, mode=mode, kw=kw: lp.round(
            x, fmt, mode, **kw)))
        rows.append((f"jit(lowprec_jax.round) {label}",
                     lambda f=f: f(xj).block_until_ready()))
    res = dict(time_rows(rows))
    base = res["np.copyto (memory bound)"]
    print(f"{N:,} float32 values, {os.cpu_count()} cores, JAX {jax.__version__} on CPU, median "
          f"of {REPEAT} interleaved runs\n")
    print("| operation | time (ms) | x copy |")
    print("|---|---:|---:|")
    for name, _ in rows:
        print(f"| {name} | {res[name] * 1e3:.1f} | {res[name] / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
