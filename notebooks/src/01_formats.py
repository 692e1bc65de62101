# %% [markdown]
# # 01 · A tour of the low-precision formats
#
# **Question.** What do the formats in use for ML (FP8, FP6, FP4, bfloat16, E8M0, ...) actually
# hold, how is their precision spread over the range, how do they treat Inf, NaN and -0, and where
# do the common libraries give different answers for the same input?
#
# Everything below is computed by `lowprec`; the claims about other libraries are measured here
# against ml_dtypes and PyTorch (when installed), and the disputed roundings are re-derived with
# exact rationals (`fractions.Fraction`) in this notebook, sharing no code with the library.

# %%
import math
from fractions import Fraction

import matplotlib.pyplot as plt
import ml_dtypes
import numpy as np

import lowprec as lp

np.set_printoptions(linewidth=110)

# %% [markdown]
# ## 1. The format table
#
# `lp.format(name)` gives a frozen description with finfo-style properties. The table is every
# float format of the registry with at most 16 bits plus tf32 and float32.

# %%
def specials(f):
    inf = "Inf" if f.has_inf else "-"
    nan = "NaN" if f.has_nan else "-"
    return f"{inf}/{nan}"


print(f"{'name':20} {'bits':>4} {'e':>2} {'m':>2} {'bias':>5} {'max':>12} {'min normal':>12} "
      f"{'min subnormal':>13} {'eps':>10} specials")
for name in lp.formats():
    f = lp.format(name)
    if not isinstance(f, lp.FloatFormat) or name == "float64":
        continue
    print(f"{name:20} {f.bits:4d} {f.exp_bits:2d} {f.man_bits:2d} {f.bias:5d} {f.max:12.6g} "
          f"{f.min_normal:12.6g} {f.min_subnormal:13.6g} {f.eps:10.4g} {specials(f)}")

# %% [markdown]
# ## 2. Every value of the 4- and 6-bit element formats
#
# FP4 (E2M1) has 15 distinct values (16 codes, ±0); the two FP6 formats trade range for precision.

# %%
for name in ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn"]:
    v = lp.format(name).values()
    pos = v[v >= 0]
    print(f"{name}: {len(v)} finite values; non-negative: {pos.tolist()}\n")

# %% [markdown]
# ## 3. Spacing and relative precision across the range
#
# For each format, the gap to the next value (the ulp) and the gap relative to the value. In the
# normal range the relative gap saw-tooths between 2^-m and 2^-(m-1); in the subnormal range the
# absolute gap is constant, so the relative gap grows to 1 at the smallest subnormal.

# %%
names = ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "float8_e4m3fn", "float8_e5m2",
         "float16", "bfloat16"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for name in names:
    v = lp.format(name).values()
    v = v[v > 0]
    gap = np.diff(v)
    axes[0].loglog(v[:-1], gap, drawstyle="steps-post", label=name)
    axes[1].loglog(v[:-1], gap / v[:-1], drawstyle="steps-post", label=name)
axes[0].set(xlabel="value x (positive, log scale)", ylabel="gap to the next value (ulp)",
            title="Absolute spacing")
axes[1].set(xlabel="value x (positive, log scale)", ylabel="ulp(x) / x (relative spacing)",
            title="Relative precision")
axes[1].legend(fontsize=8)
for a in axes:                  # the minifloats' range (bfloat16 and float16 go beyond it)
    a.set_xlim(1e-8, 1e6)
axes[0].set_ylim(1e-12, 1e5)
fig.tight_layout()
plt.show()

for name in names:
    f = lp.format(name)
    v = f.values()
    v = v[v > 0]
    decades = math.log10(f.max / f.min_subnormal)
    rel = np.diff(v)[v[:-1] >= f.min_normal] / v[:-1][v[:-1] >= f.min_normal]
    print(f"{name:15} dynamic range {decades:5.1f} decades (min subnormal to max); relative "
          f"spacing of normals {rel.min():.3g} .. {rel.max():.3g}")

# %% [markdown]
# ## 4. Special values side by side
#
# The same inputs encoded with each format's natural behaviour (`overflow=None`, which equals
# ml_dtypes `astype` for every format ml_dtypes has), and with `overflow="saturate"`.

# %%
inputs = np.array([np.inf, -np.inf, np.nan, -0.0, 1e6, -1e6, 1e-30], np.float64)
labels = ["+Inf", "-Inf", "NaN", "-0.0", "1e6", "-1e6", "1e-30"]
conv = ["float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float4_e2m1fn", "float8_e8m0fnu"]
print(f"{'input':>7} | " + " | ".join(f"{n:>22}" for n in conv))
for pol in [None, "saturate"]:
    print(f"overflow={pol!r}")
    for lab, x in zip(labels, inputs):
        row = []
        for n in conv:
            f = lp.format(n)
            try:
                code = int(lp.encode(np.array([x]), n, overflow=pol)[0])
                val = float(lp.decode(np.array([code], f.code_dtype), n)[0])
                row.append(f"0x{code:02X} = {val:<10g}")
            except ValueError:                 # NaN into a format without NaN, explicit policy
                row.append("ValueError: no NaN code")
        print(f"{lab:>7} | " + " | ".join(f"{c:>22}" for c in row))

# %% [markdown]
# Reading the table: E5M2 is IEEE (Inf and NaN); E4M3FN has no Inf, so Inf and overflow become
# NaN unless saturating; FNUZ has one NaN (0x80) and no -0, so -0.0 becomes +0; E2M1 has neither,
# so the natural behaviour saturates (NaN becomes -0, as ml_dtypes does, because the code with
# the sign bit and nothing else is what remains); E8M0 is unsigned and has no zero at all.

# %% [markdown]
# ## 5. Where libraries disagree
#
# **Overflow and NaN.** ml_dtypes returns NaN for 464.1 -> E4M3FN; PyTorch's `.to` saturates to
# 448. lowprec gives both, named: `overflow=None` and `overflow="saturate"`.

# %%
x = np.array([464.1, 1e6, np.inf], np.float32)
print("ml_dtypes astype      :", x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32))
print("lp.round (natural)    :", lp.round(x, "float8_e4m3fn"))
print("lp.round saturate     :", lp.round(x, "float8_e4m3fn", overflow="saturate"))
try:
    import torch
    print("torch .to(float8_e4m3fn):", torch.from_numpy(x).to(torch.float8_e4m3fn).float().numpy())
except ImportError:
    print("torch not installed")

# %% [markdown]
# **Double rounding of float64 inputs.** ml_dtypes converts float64 to an 8-bit format through
# float32, rounding twice. When the first rounding lands exactly on a midpoint of the 8-bit grid,
# the second rounding resolves a tie that was not there. An exact-rational oracle, written here
# from the definition of round-to-nearest-even, decides who is right.

# %%
def rne_oracle(x, fmt):
    """Nearest-even rounding of float x onto the finite values of fmt, with exact rationals."""
    vals = fmt.values()
    q = Fraction(float(x))
    i = int(np.searchsorted(vals, float(x)))
    lo, hi = Fraction(float(vals[max(i - 1, 0)])), Fraction(float(vals[min(i, len(vals) - 1)]))
    if q <= lo:
        return float(lo)
    if q >= hi:
        return float(hi)
    if q - lo != hi - q:
        return float(lo if q - lo < hi - q else hi)
    even = lp.encode(np.array([float(lo)]), fmt)[0] % 2 == 0
    return float(lo if even else hi)


fmt = lp.format("float8_e4m3fn")
x = 1 + 2**-4 + 2**-40                      # just above the midpoint between 1.0 and 1.125
print("exact oracle  :", rne_oracle(x, fmt))
print("lp.round      :", float(lp.round(np.float64(x), fmt)))
print("ml_dtypes     :", float(np.float64(x).astype(ml_dtypes.float8_e4m3fn)))

# %% [markdown]
# How often does that happen? Inputs just off the midpoints are exactly where it matters (a
# quantizer fed float64 data near a rounding boundary). Below: 100,000 float64 values within
# 2^20 float64 ulps of a midpoint of E4M3FN and bfloat16 (closer than float32 can resolve, on
# either side), and 100,000 uniformly random ones.

# %%
rng = np.random.default_rng(0)


def near_midpoints(fmt, n):
    v = fmt.values()
    v = v[(v > 0) & (v < fmt.max)]
    mids = (v[:-1] + v[1:]) / 2
    m = rng.choice(mids, n)
    return m + m * rng.integers(1, 2**20, n) * 2.0**-52 * rng.choice([-1, 1], n)


for name, dt in [("float8_e4m3fn", ml_dtypes.float8_e4m3fn), ("bfloat16", ml_dtypes.bfloat16)]:
    f = lp.format(name)
    for label, xs in [("near midpoints", near_midpoints(f, 100_000)),
                      ("uniform random", rng.uniform(0, f.max / 2, 100_000))]:
        ours = lp.round(xs, f)
        theirs = xs.astype(dt).astype(np.float64)
        diff = np.flatnonzero(ours.view(np.uint64) != theirs.view(np.uint64))
        agree = all(ours[i] == rne_oracle(xs[i], f) for i in diff[:200])
        print(f"{name:14} {label:15}: ml_dtypes differs on {len(diff):6d} of {len(xs)} "
              f"({100 * len(diff) / len(xs):.2f}%); exact oracle agrees with lowprec on the "
              f"{min(len(diff), 200)} checked: {agree}")

# %% [markdown]
# **Ties.** 34.0 lies halfway between the E4M3 neighbours 32 and 36. IEEE nearest-even gives 32
# (code 0x50 has an even last bit); libraries whose "nearest" rounds ties away give 36.

# %%
for mode in ["nearest_even", "nearest_away"]:
    print(f"{mode:13}: 34.0 -> {float(lp.round(np.float32(34.0), 'float8_e4m3fn', mode))}")
print("ml_dtypes    : 34.0 ->", float(np.float32(34.0).astype(ml_dtypes.float8_e4m3fn)))

# %% [markdown]
# ## Finding
#
# E4M3's relative spacing stays within 0.067-0.125 over 5.4 decades, E2M1's is 0.33-0.5 over
# 1.1 decades, bfloat16 spans 78.6 decades at 0.004-0.008. The libraries disagree on overflow
# (464.1 -> E4M3FN: NaN in ml_dtypes, 448 in torch: lowprec names both policies) and on float64
# inputs: ml_dtypes rounds through float32 and differs from the exact single rounding on 50% of
# inputs within 2^20 float64 ulps of an E4M3 or bfloat16 midpoint (0 and 2 of 100,000 uniform
# random ones); the rational oracle sides with lowprec on every checked case.
