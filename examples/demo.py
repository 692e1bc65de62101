"""make demo: what lowprec is for, end to end, in one minute.

1. Formats: the facts of a few named formats, and a custom one.
2. Rounding: one value in every mode; where libraries disagree, lowprec says which rule it used.
3. Golden values for a kernel: quantise a tensor to FP8 and check 'kernel output' bit for bit.
4. Stochastic rounding: the mean of many seeded roundings converges to x (nearest-even stalls).
"""
import ml_dtypes
import numpy as np

import lowprec as lp


def section(title):
    print(f"\n== {title} " + "=" * (70 - len(title)))


section("1. formats")
for name in ("float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float8_e8m0fnu", "hifloat8"):
    f = lp.format(name)
    print(f"{name:16s} bits={f.bits}  max={f.max:<10g} min_subnormal={f.min_subnormal:.4g}")
custom = lp.FloatFormat(exp_bits=3, man_bits=4, bias=5, inf=False, nan=None)
print("custom:", repr(custom), "values:", custom.values()[-4:])

section("2. one value, every rounding mode (to float8_e4m3fn)")
x = np.float32(1.3)
for mode in ("nearest_even", "nearest_away", "toward_zero", "up", "down", "odd"):
    print(f"  {mode:13s} {float(x)} -> {float(lp.round(x, 'e4m3', mode))}")
print("  overflow of 500.0: natural (ml_dtypes) ->", float(lp.round(500.0, "e4m3")),
      "| saturate (torch) ->", float(lp.round(500.0, "e4m3", overflow="saturate")))

section("3. golden values for an FP8 kernel")
rng = np.random.default_rng(0)
a = rng.standard_normal((4, 8)).astype(np.float32) * 30
codes = lp.encode(a, "float8_e4m3fn")
kernel_output = a.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)   # stand-in for a GPU kernel
same = (codes == kernel_output).all()
print(f"  {codes.size} codes, bit-identical to ml_dtypes' cast: {same}")
print("  first row codes:", " ".join(f"{c:02x}" for c in codes[0]))

section("4. stochastic rounding does not stagnate")
rne = np.ones(400)
sr = np.ones(400)                                   # 400 independent chains
for i in range(2000):
    rne = lp.round(rne + 1e-3, "bf16")
    sr = lp.round(sr + 1e-3, "bf16", "stochastic", seed=i)    # seed i: fresh bits per step
print(f"  1 + 2000 * 1e-3 in bfloat16 (exact 3.0): nearest-even {rne[0]}, "
      f"stochastic mean {sr.mean():.4f} +- {sr.std() / np.sqrt(sr.size):.4f} over {sr.size} chains")
section("5. block formats: MXFP4, NVFP4 and its variants on one weight matrix")
w = rng.standard_normal((64, 64)).astype(np.float32)   # small: answered without compiling
w[3, 7] = 40.0                                      # one outlier
for name in ("mxfp8_e4m3", "mxfp4", "nvfp4", "nvfp4_2d", "nvfp4_torchao", "nvfp4_4over6"):
    err = lp.fake_quantize(w, name) - w
    print(f"  {name:14s} {lp.block_format(name).bits_per_element:5.3g} bits/value  "
          f"SQNR {10 * np.log10(np.sum(w ** 2) / np.sum(err ** 2)):5.2f} dB")
rot = lp.rht16(w)                                   # TE's random Hadamard transform
err = lp.rht16(lp.fake_quantize(rot, "nvfp4"), inverse=True) - w
print(f"  rht16, nvfp4, inverse rht16 SQNR {10 * np.log10(np.sum(w ** 2) / np.sum(err ** 2)):5.2f}"
      " dB (TE rotates only the wgrad operands)")
bt = lp.quantize(w, "nvfp4")
print(f"  packed nvfp4: {lp.pack(bt.codes.reshape(w.shape), 4).nbytes} bytes of elements + "
      f"{bt.scale_codes.nbytes} bytes of scales for {w.nbytes} bytes of float32")
print("\nSee README.md for the format table, rounding rules, block formats and benchmarks.")
