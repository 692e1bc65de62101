"""make bench (part 5): lowprec_torch.round / fake_quantize beside torch's native float8 cast
and the NumPy core, on the same 10M float32 values (CPU); the Triton kernels under the
interpreter for reference. Prints Markdown tables; nothing is asserted."""
import os

import numpy as np
import torch

import lowprec as lp
import lowprec_torch as lt
from bench_round import N, REPEAT, print_ratio_table, time_rows


def main():
    torch.set_num_threads(os.cpu_count() or 1)
    x = (np.random.default_rng(0).standard_normal(N) * 50).astype(np.float32)
    tx = torch.from_numpy(x)
    n512 = N // 512 * 512
    x2, tx2 = x[:n512].reshape(-1, 512), tx[:n512].reshape(-1, 512)
    rows = [("torch .to(float8_e4m3fn)", lambda: tx.to(torch.float8_e4m3fn)),
            ("lowprec_torch.round float8_e4m3fn, dtype=torch.float8_e4m3fn (core)",
             lambda: lt.round(tx, "float8_e4m3fn", dtype=torch.float8_e4m3fn)),
            ("lowprec_torch.encode float8_e4m3fn (core)", lambda: lt.encode(tx, "float8_e4m3fn")),
            ("lowprec_torch.round float8_e4m3fn (core, float32 out)",
             lambda: lt.round(tx, "float8_e4m3fn")),
            ("lp.round float8_e4m3fn", lambda: lp.round(x, "float8_e4m3fn")),
            ("lowprec_torch.round float8_e4m3fn stochastic seed (core)",
             lambda: lt.round(tx, "float8_e4m3fn", "stochastic", seed=1))]
    for bf in ("mxfp8_e4m3", "nvfp4"):
        rows += [(f"lp.fake_quantize {bf}", lambda bf=bf: lp.fake_quantize(x2, bf)),
                 (f"lowprec_torch.fake_quantize {bf} (core)",
                  lambda bf=bf: lt.fake_quantize(tx2, bf))]
    res = dict(time_rows(rows))
    print(f"{N:,} float32 values, {os.cpu_count()} cores, torch {torch.__version__} on CPU, "
          f"median of {REPEAT} interleaved runs (ratios to torch's native float8 cast)\n")
    print_ratio_table(rows, res, 'torch .to(float8_e4m3fn)', 'x torch cast')
    torch_ops()
    triton_interpret()
    return 0


def torch_ops():
    """The torch-operations path (meant for GPUs and torch.compile) on the CPU, 1M values:
    eager (one int64 temporary per operation) and compiled by inductor (one fused loop)."""
    n = 1_000_000
    tx = torch.from_numpy((np.random.default_rng(2).standard_normal(n) * 50).astype(np.float32))
    compiled = torch.compile(lambda v: lt.round(v, "float8_e4m3fn", backend="torch"))
    compiled(tx)                                              # compile outside the timing
    rows = [("torch .to(float8_e4m3fn)", lambda: tx.to(torch.float8_e4m3fn)),
            ("lowprec_torch.round float8_e4m3fn (core)", lambda: lt.round(tx, "float8_e4m3fn")),
            ("lowprec_torch.round float8_e4m3fn (torch ops, eager)",
             lambda: lt.round(tx, "float8_e4m3fn", backend="torch")),
            ("torch.compile(lowprec_torch.round float8_e4m3fn, torch ops)",
             lambda: compiled(tx)),
            ("lowprec_torch.round float8_e4m3fn stochastic seed (torch ops, eager)",
             lambda: lt.round(tx, "float8_e4m3fn", "stochastic", seed=1, backend="torch")),
            ("lowprec_torch.fake_quantize mxfp8_e4m3 (torch ops, eager)",
             lambda: lt.fake_quantize(tx.reshape(-1, 500), "mxfp8_e4m3", backend="torch"))]
    res = dict(time_rows(rows))
    print(f"\nThe torch-operations path on this CPU (it is for GPUs and torch.compile), "
          f"{n:,} values:\n")
    print_ratio_table(rows, res, 'torch .to(float8_e4m3fn)', 'x torch cast')


def triton_interpret():
    """The Triton kernels under the interpreter (a subprocess: TRITON_INTERPRET must be set
    before triton is imported), 64K values, beside the torch-ops path."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    code = r'''
import numpy as np, torch, lowprec_torch as lt
from lowprec_torch import triton as tk
from bench_round import time_rows
x = torch.from_numpy((np.random.default_rng(1).standard_normal((128, 512)) * 50).astype(np.float32))
rows = [("lowprec_torch.round float8_e4m3fn (torch ops)", lambda: lt.round(x, "float8_e4m3fn", backend="torch")),
        ("triton.round float8_e4m3fn (interpreter)", lambda: tk.round(x, "float8_e4m3fn")),
        ("lowprec_torch.fake_quantize nvfp4 (torch ops)", lambda: lt.fake_quantize(x, "nvfp4", backend="torch")),
        ("triton.fake_quantize nvfp4 (interpreter)", lambda: tk.fake_quantize(x, "nvfp4"))]
for name, t in time_rows(rows):
    print(f"| {name} | {t * 1e3:.1f} |")
'''
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    print("\nTriton kernels under the interpreter (reference only), 65,536 float32 values:\n")
    print("| operation | time (ms) |")
    print("|---|---:|")
    print(out.stdout.strip() or f"(failed: {out.stderr[-500:]})")


if __name__ == "__main__":
    raise SystemExit(main())
