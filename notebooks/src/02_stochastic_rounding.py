# %% [markdown]
# # 02 · Stochastic rounding: long sums and a gradient-descent toy
#
# **Question.** In a low-precision accumulator, how much does stochastic rounding (SR) help over
# round-to-nearest-even (RN), and what do we lose by drawing only a few random bits? The theory
# (Connolly, Higham & Mary, SISC 2021; El Arar, Fasi, Filip & Mikaitis, SISC 2025):
#
# * RN: the worst-case error of a recursive sum grows like n·u (u = 2^-p, unit roundoff), and a
#   sum stagnates once each term is below half an ulp of the running sum.
# * exact SR: unbiased; the error grows like sqrt(n)·u with high probability.
# * SR with r random bits: an extra bias term O(n·u·2^-r): as soon as a term is below 2^-r of an
#   ulp (2^-(r+1) for the rounding variants) it is lost, as with RN.
#
# Everything is `lowprec`: `lp.sum` with an `lp.Accumulator` (each step rounds s + x_i once, exactly
# as defined) and `lp.fma` for the weight update. Exact references are float64 sums of float32
# terms (exact here: 2^14 terms of 24 bits fit in float64's 53). CI re-executes the notebook with
# `LOWPREC_NB_QUICK=1` (8 trials, n up to 2^10, 60 steps); the stored outputs are the full run.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import lowprec as lp

QUICK = os.environ.get("LOWPREC_NB_QUICK") == "1"     # CI: smaller sizes, same code
rng = np.random.default_rng(0)
TRIALS, NMAX = (8, 2**10) if QUICK else (64, 2**14)
x = rng.uniform(0, 1, (TRIALS, NMAX)).astype(np.float32)
ns = 2 ** np.arange(4, int(np.log2(NMAX)) + 1)
u = 2.0**-8                          # bfloat16: 8 significant bits


def sums(mode, sr_bits=None, variant="srff"):
    """Relative error of the bfloat16 recursive sum of the first n terms, for each n in ns:
    array (len(ns), TRIALS), signed."""
    acc = lp.Accumulator("bfloat16", mode, order="sequential", sr_bits=sr_bits,
                         sr_variant=variant)
    out = []
    for j, n in enumerate(ns):
        seed = {"seed": 1000 + j} if mode == "stochastic" else {}
        s = lp.sum(x[:, :n], acc, **seed).astype(np.float64)
        exact = x[:, :n].astype(np.float64).sum(-1)
        out.append((s - exact) / exact)
    return np.array(out)


runs = {"RN": sums("nearest_even"), "SR exact": sums("stochastic")}
for r in (4, 8):
    for v in ("srff", "srf", "src"):
        runs[f"SR r={r} {v}"] = sums("stochastic", r, v)

# %% [markdown]
# ## 1. Error growth with n
#
# Terms uniform on [0, 1); the exact sum is about n/2. Bold lines: the median over 64 trials of
# |relative error|; dotted: the textbook rates n·u and sqrt(n)·u.

# %%
fig, ax = plt.subplots(figsize=(8, 5))
for name in ["RN", "SR exact", "SR r=4 srff", "SR r=4 src", "SR r=8 srff", "SR r=8 src"]:
    ax.loglog(ns, np.median(np.abs(runs[name]), axis=1), "o-", label=name)
ax.loglog(ns, ns * u, "k:", label="n·u")
ax.loglog(ns, np.sqrt(ns) * u, "k--", label="sqrt(n)·u")
ax.set(xlabel="number of terms n", ylabel="|relative error| of the sum (median of 64 trials)",
       title="bfloat16 recursive summation of U[0,1) terms")
ax.legend(fontsize=8)
plt.show()

print(f"{'n':>6} | " + " | ".join(f"{k:>11}" for k in runs))
for j, n in enumerate(ns):
    print(f"{n:6d} | " + " | ".join(f"{np.median(np.abs(v[j])):11.2e}" for v in runs.values()))

# %% [markdown]
# RN stagnates: from n ≈ 512 on, the running sum is at 256, where bfloat16's ulp is 2 and every
# term (< 1) is at most half an ulp, so the sum stays at 256 and the relative error tends to 1.
# Exact SR stays under the sqrt(n)·u rate of the probabilistic bound (the bound's constant
# omitted): 2.7e-3 at n = 16 to 3.4e-2 at n = 2^14, against sqrt(n)·u = 0.5. With r bits, a
# term is lost when it is below 2^-r ulp (SRFF) or 2^-(r+1) ulp (SRF, SRC); that is the
# n·u·2^-r term of the bound, visible as the r = 4 curves leaving the sqrt(n) line.

# %% [markdown]
# ## 2. Measured bias of the variants
#
# The mean signed relative error over the trials, at n = 2^10 (sum ≈ 512, ulp 4: every term is
# below half an ulp) and n = 2^14 (sum ≈ 8192, ulp 64). Unbiased rounding has mean ≈ 0 within
# its standard error.

# %%
print(f"{'variant':>13} | {'mean err n=2^10':>16} | {'± std err':>9} | {'mean err n=2^14':>16} | "
      f"{'± std err':>9}")
for name, v in runs.items():
    a, b = v[list(ns).index(min(2**10, NMAX))], v[-1]
    print(f"{name:>13} | {a.mean():16.2e} | {a.std() / np.sqrt(TRIALS):9.1e} | "
          f"{b.mean():16.2e} | {b.std() / np.sqrt(TRIALS):9.1e}")

# %% [markdown]
# Read with the definitions (docs/rounding.md): SRF rounds away iff floor(2^(r+1)·d) + 2R + 1 ≥
# 2^(r+1), i.e. R ≥ 2^r − round_half_up(2^r·d), so it differs from SRC (round_half_even) only
# when 2^r·d is exactly a half-integer; on these random terms the two never differed. SRFF
# (truncate 2^r·d) is biased toward zero: −8.1% ± 0.4% at n = 2^10 with r = 4 and −7.2% ± 0.6% at
# n = 2^14 with r = 8, where SRF/SRC are within two standard errors of zero. At n = 2^14 with
# r = 4 every variant has stagnated (terms below 2^-5 of the ulp 32 are all lost): −75% (SRFF),
# −50% (SRF, SRC).

# %% [markdown]
# ## 3. A gradient-descent toy
#
# Minimise f(w) = ½‖w − t‖² over 4096 coordinates with weights stored in bfloat16: the float32
# gradient g = w − t, then w ← round(w − η·g) in one `lp.fma` (one rounding), η = 0.01, targets
# t uniform on [1, 2). With RN an update smaller than half an ulp of w (2^-8 here) is lost, so
# RN stops where η·|w − t| < 2^-8, i.e. |w − t| < 0.39. The float32 run is the reference.

# %%
T = rng.uniform(1, 2, 4096).astype(np.float32)
eta = np.float32(0.01)
steps = 60 if QUICK else 600


def descend(fmt, mode, sr_bits=None, variant="srff"):
    w = np.zeros_like(T)
    loss = []
    for k in range(steps):
        g = lp.sub(w, T, "float32")
        kw = {"seed": k} if mode == "stochastic" else {}
        w = lp.fma(-eta, g, w, fmt, mode, sr_bits=sr_bits, sr_variant=variant, **kw)
        loss.append(0.5 * float(np.mean((w.astype(np.float64) - T) ** 2)))
    return np.array(loss)


gd = {"float32 RN": descend("float32", "nearest_even"),
      "bfloat16 RN": descend("bfloat16", "nearest_even"),
      "bfloat16 SR exact": descend("bfloat16", "stochastic"),
      "bfloat16 SR r=4 srff": descend("bfloat16", "stochastic", 4, "srff"),
      "bfloat16 SR r=4 src": descend("bfloat16", "stochastic", 4, "src")}
fig, ax = plt.subplots(figsize=(8, 4.5))
for name, loss in gd.items():
    ax.semilogy(loss, label=name)
ax.set(xlabel="step", ylabel="loss ½·mean (w − t)² (log scale)",
       title="Gradient descent with bfloat16 weights, η = 0.01")
ax.legend(fontsize=8)
plt.show()
for name, loss in gd.items():
    print(f"{name:22}: loss after {steps} steps {loss[-1]:.3e}")

# %% [markdown]
# ## Finding
#
# In bfloat16 (8 significant bits), RN summation of 2^14 uniform terms stagnates at 256
# (relative error 0.969) while exact SR's error is 3.4e-2 (under sqrt(n)·u = 0.5); with 4 random bits
# SRFF is biased by −8% already at n = 2^10, SRF/SRC only once terms fall below 2^-5 ulp. In the
# gradient-descent toy RN stops at the predicted plateau (loss 5.8e-2) while exact SR reaches
# 2.1e-5 (float32: 6.7e-6); 4-bit SRFF stops at 9.9e-4 and 4-bit SRC at 2.1e-4.
