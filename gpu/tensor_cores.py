"""Measure an NVIDIA GPU's tensor cores and check lowprec's matrix-unit model against them.

Run on a machine with a CUDA GPU and Triton (``make tensor-cores``, or
``python gpu/tensor_cores.py --out DIR``). For each input format a Triton kernel computes
``D = A @ B + C`` in float32 with ``tl.dot`` (``wgmma`` on Hopper; the PTX is checked for it),
over a whole K in instruction-sized steps with the accumulator chained through them, on random
operands whose exponents spread widely (so that alignment and truncation matter). Every output
is compared bit for bit with ``lp.matmul(A, B, preset, C)``; the counts of matching outputs are
printed, and 4000 (a-row, b-column, c, d) rows per case are saved (one ``.npz``, keys
``CASE.a``, ``CASE.b``, ``CASE.c``, ``CASE.d_fp32``: uint32 float32 bits, the layout of
``tests/data/tensor_cores``) so that a test can check them on any machine.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import triton
import triton.language as tl

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import lowprec as lp  # noqa: E402

BM = 64               # rows per program: one warpgroup's wgmma tile


@triton.jit
def _dot_add(a_ptr, b_ptr, c_ptr, d_ptr, K: tl.constexpr, BK: tl.constexpr, N: tl.constexpr,
             PREC: tl.constexpr, IMPRECISE: tl.constexpr):
    rm = tl.program_id(0) * 64 + tl.arange(0, 64)
    rn = tl.arange(0, N)
    acc = tl.load(c_ptr + rm[:, None] * N + rn[None, :])
    for k0 in tl.static_range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
        b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
        acc = tl.dot(a, b, acc, input_precision=PREC, max_num_imprecise_acc=IMPRECISE)
    tl.store(d_ptr + rm[:, None] * N + rn[None, :], acc)


TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "tfloat32": torch.float32,
         "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}

# name, input format, preset, K, BK (Triton's step), exponent spread of the operands
CASES = [
    ("fp16_k16", "float16", "h100-fp16", 16, 16, 8),
    ("fp16_k256", "float16", "h100-fp16", 256, 64, 6),
    ("bf16_k16", "bfloat16", "h100-bf16", 16, 16, 20),
    ("bf16_k256", "bfloat16", "h100-bf16", 256, 64, 12),
    ("tf32_k16", "tfloat32", "h100-tf32", 16, 16, 20),
    ("tf32_k128", "tfloat32", "h100-tf32", 128, 32, 12),
    ("e4m3_k32", "float8_e4m3fn", "h100-fp8", 32, 32, 4),
    ("e4m3_k512", "float8_e4m3fn", "h100-fp8", 512, 64, 3),
    ("e5m2_k32", "float8_e5m2", "h100-fp8", 32, 32, 6),
]


def operand(rng, shape, fmt, spread):
    """Values of ``fmt`` (as float32): normal draws times 2^U(-spread, spread), saturated."""
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread + 1, shape))
    return lp.round(x, fmt, "nearest_even", "saturate", dtype=np.float32)


def run_case(rng, fmt, K, BK, spread, M, N, imprecise):
    a = operand(rng, (M, K), fmt, spread)
    b = operand(rng, (K, N), fmt, spread)
    c = (rng.standard_normal((M, N)) * np.exp2(rng.integers(-spread, spread + 1, (M, N)))
         ).astype(np.float32)
    c[rng.random((M, N)) < 0.25] = 0.0
    ta, tb = (torch.from_numpy(v).cuda().to(TORCH[fmt]) for v in (a, b))
    tc = torch.from_numpy(c).cuda()
    td = torch.full_like(tc, float("nan"))
    prec = "tf32" if fmt == "tfloat32" else "ieee"
    k = _dot_add[(M // BM,)](ta, tb, tc, td, K=K, BK=BK, N=N, PREC=prec, IMPRECISE=imprecise,
                             num_warps=4)
    torch.cuda.synchronize()
    ptx = k.asm["ptx"]
    back = [v.cpu().float().numpy() for v in (ta, tb)]
    assert all(np.array_equal(x.view(np.uint32), y.view(np.uint32))
               for x, y in zip(back, (a, b))), "operands changed on the way to the GPU"
    return a, b, c, td.cpu().numpy(), ("wgmma" in ptx, "mma.sync" in ptx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tensor_core_data", help="folder for the .npz files")
    ap.add_argument("--rows", type=int, default=4000, help="rows saved per case")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name()
    print(f"{gpu}; torch {torch.__version__}, triton {triton.__version__}")
    rng = np.random.default_rng(20261122)
    M, N = 1024, 32
    report = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "cases": {}}
    saved = {}
    print(f"{'case':<22}{'preset':<12}{'wgmma':>6}{'match':>16}")
    for name, fmt, pre, K, BK, spread in CASES:
        for imprecise in ([None, 32] if fmt.startswith("float8") else [None]):
            label = name + ("" if imprecise is None else f"_imprecise{imprecise}")
            try:
                a, b, c, d, (wgmma, mma_sync) = run_case(rng, fmt, K, BK, spread, M, N,
                                                         imprecise)
            except Exception as e:  # noqa: BLE001 -- report and go on with the other cases
                print(f"{label:<22}failed: {type(e).__name__}: {str(e)[:200]}")
                continue
            acc = lp.hardware.preset(pre, inputs=(fmt, fmt) if "fp8" in pre else None)
            want = lp.matmul(a, b, acc, c)
            ok = want.view(np.uint32) == d.view(np.uint32)
            report["cases"][label] = dict(fmt=fmt, preset=pre, K=K, step=BK,
                                          imprecise=imprecise, wgmma=wgmma,
                                          mma_sync=mma_sync, match=int(ok.sum()),
                                          total=int(ok.size))
            print(f"{label:<22}{pre:<12}{'yes' if wgmma else 'no':>6}"
                  f"{int(ok.sum()):>9}/{ok.size}")
            pick = rng.choice(M * N, args.rows if K <= 32 else args.rows // 10,
                              replace=False)
            m, n = pick // N, pick % N
            saved.update({f"{label}.a": a[m].view(np.uint32),
                          f"{label}.b": b[:, n].T.copy().view(np.uint32),
                          f"{label}.c": c[m, n].view(np.uint32),
                          f"{label}.d_fp32": d[m, n].view(np.uint32)})
    tag = gpu.replace("NVIDIA ", "").split()[0]
    np.savez_compressed(out / f"{tag}_measured.npz", **saved)
    (out / f"{tag}_report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
