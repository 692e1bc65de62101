"""Time lowprec's Triton kernels on a CUDA GPU beside torch's own copy and casts (run on a machine
with a GPU: ``python gpu/bench_gpu.py``). Median of ``triton.testing.do_bench`` (CUDA events),
64M float32 values, ratios to a device-to-device copy of the same array."""
from __future__ import annotations

import pathlib
import sys

import torch
import triton

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import lowprec as lp  # noqa: E402,F401
from lowprec_torch import triton as tk  # noqa: E402


def main(n=1 << 26):
    x = torch.randn(n, device="cuda") * 4
    out = torch.empty_like(x)
    words = torch.randint(0, 2**31, (n,), device="cuda", dtype=torch.int32).view(torch.uint32)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = [
        ("copy (out.copy_(x))", lambda: out.copy_(x)),
        ("torch x.to(float8_e4m3fn)", lambda: x.to(torch.float8_e4m3fn)),
        ("torch x.to(float8_e4m3fn).to(float32)", lambda: x.to(torch.float8_e4m3fn).float()),
        ("tk.encode float8_e4m3fn", lambda: tk.encode(x, "float8_e4m3fn")),
        ("tk.round float8_e4m3fn", lambda: tk.round(x, "float8_e4m3fn")),
        ("tk.round float4_e2m1fn", lambda: tk.round(x, "float4_e2m1fn")),
        ("tk.round bfloat16", lambda: tk.round(x, "bfloat16")),
        ("tk.round e4m3 stochastic, rbits", lambda: tk.round(x, "float8_e4m3fn", "stochastic",
                                                             rbits=words)),
        ("tk.round e4m3 stochastic, generator", lambda: tk.round(
            x, "float8_e4m3fn", "stochastic", generator=gen)),
        ("tk.round e4m3 stochastic, seed", lambda: tk.round(x, "float8_e4m3fn", "stochastic",
                                                            seed=7)),
        ("tk.fake_quantize mxfp8_e4m3", lambda: tk.fake_quantize(x.view(-1, 1024),
                                                                 "mxfp8_e4m3")),
        ("tk.fake_quantize mxfp4", lambda: tk.fake_quantize(x.view(-1, 1024), "mxfp4")),
        ("tk.fake_quantize nvfp4", lambda: tk.fake_quantize(x.view(-1, 1024), "nvfp4")),
    ]
    print(f"{torch.cuda.get_device_name()}, {n} float32 values")
    print(f"| operation | ms | x copy | GB/s (4 B in + 4 B out) |\n|---|---:|---:|---:|")
    base = None
    for name, f in rows:
        try:
            ms = triton.testing.do_bench(f, warmup=50, rep=300, return_mode="median")
        except Exception as e:  # noqa: BLE001 -- report the row, keep going
            print(f"| {name} | failed: {type(e).__name__}: {str(e)[:120]} | | |")
            continue
        base = base or ms
        print(f"| {name} | {ms:.3f} | {ms / base:.2f} | {8 * n / ms / 1e6:.0f} |")


if __name__ == "__main__":
    main()
