"""Time to the first result: each call in a fresh Python process with an empty Numba cache
(``NUMBA_CACHE_DIR`` set to a new empty folder), as on a fresh install, CI job or new notebook
kernel. Prints the import time and each first call's time, in seconds.

``python benchmarks/bench_cold.py [--src DIR]``: ``--src`` puts another checkout of lowprec
first on ``sys.path`` (to measure a baseline in the same run, on the same machine).
"""
import argparse
import os
import subprocess
import sys
import tempfile

SETUP = """
import sys, time
if {src!r}:          # a baseline checkout first, ahead of this project's editable install
    sys.path.insert(0, {src!r})
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
t0 = time.perf_counter()
import numpy as np
import lowprec as lp
t_import = time.perf_counter() - t0
x = np.array([1.1, -2.7], np.float32)
y = np.linspace(-3, 3, 64, dtype=np.float32)
rng = np.random.default_rng(0)
a = rng.standard_normal((16, 64)).astype(np.float32)
b = rng.standard_normal((64, 16)).astype(np.float32)
big = rng.standard_normal(1 << 20).astype(np.float32)    # specialised kernels (>= 2^20)
mid = big[:1 << 17]                                      # the general compiled kernels
{prep}
t1 = time.perf_counter()
{call}
assert lp.__file__.startswith({where!r}), lp.__file__
print(f"{{t_import:.2f}} {{time.perf_counter() - t1:.2f}}")
"""

CALLS = {
    "lp.round e4m3 (2 floats)": "lp.round(x, 'float8_e4m3fn')",
    "lp.round every deterministic mode": "[lp.round(x, 'e5m2', m) for m in ('nearest_even', "
                                         "'nearest_away', 'toward_zero', 'up', 'down', 'odd')]",
    "lp.round stochastic seed=": "lp.round(x, 'float8_e4m3fn', 'stochastic', seed=1)",
    "lp.round stochastic sr_bits=4 rbits=": "lp.round(x, 'bf16', 'stochastic', sr_bits=4, "
                                            "rbits=np.uint8([3, 9]))",
    "lp.encode e2m1": "lp.encode(x, 'float4_e2m1fn')",
    "lp.decode e2m1": "lp.decode(np.arange(16, dtype=np.uint8), 'float4_e2m1fn')",
    "lp.quantize mxfp8_e4m3": "lp.quantize(y, 'mxfp8_e4m3')",
    "lp.fake_quantize mxfp8_e4m3": "lp.fake_quantize(y, 'mxfp8_e4m3')",
    "lp.quantize mxfp4": "lp.quantize(y, 'mxfp4')",
    "lp.fake_quantize mxfp4": "lp.fake_quantize(y, 'mxfp4')",
    "lp.fake_quantize nvfp4": "lp.fake_quantize(y, 'nvfp4')",
    "lp.add bfloat16": "lp.add(x, x, 'bfloat16')",
    "lp.fma bfloat16": "lp.fma(x, x, x, 'bfloat16')",
    "lp.compare": "lp.compare(x, x)",
    "lp.matmul h100-fp8 16x64x16": "lp.matmul(a8, b8, 'h100-fp8')",
    "2^17: lp.round e4m3 float32": "lp.round(mid, 'float8_e4m3fn')",
    "2^17: lp.round bf16 float32": "lp.round(mid, 'bfloat16')",
    "2^17: lp.encode e4m3 float32, stochastic seed=": "lp.encode(mid, 'float8_e4m3fn', "
                                                     "'stochastic', seed=1)",
    "2^17: lp.round bf16 float64": "lp.round(mid.astype(np.float64), 'bfloat16')",
    "2^17: lp.quantize mxfp8_e4m3": "lp.quantize(mid, 'mxfp8_e4m3')",
    "2^17: lp.quantize nvfp4": "lp.quantize(mid, 'nvfp4')",
    "2^20: lp.round e4m3 float32 (specialised)": "lp.round(big, 'float8_e4m3fn')",
}


def first_call(call, src=None):
    env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="numba-cold-"))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.abspath(src) if src else ""
    prep = ("a8 = lp.round(a, 'float8_e4m3fn', dtype=np.float32)  # outside the timed call\n"
            "b8 = lp.round(b, 'float8_e4m3fn', dtype=np.float32)") if "a8" in call else ""
    code = SETUP.format(call=call, src=src, where=src or here, prep=prep)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=900)
    if r.returncode:
        return None, r.stderr.strip().splitlines()[-1]
    imp, t = r.stdout.split()
    return float(imp), float(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", help="another lowprec checkout to time as the baseline")
    args = ap.parse_args()
    print("timing fresh processes with empty Numba caches (the small calls compile nothing; "
          "the large ones compile their kernels: a few minutes)...", file=sys.stderr)
    cols = ["this checkout"] + (["--src"] if args.src else [])
    print("\n| first call, fresh process, empty Numba cache | " + " | ".join(
        f"{c} (s)" for c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    imports = []
    for name, call in CALLS.items():
        row = []
        for src in [None] + ([args.src] if args.src else []):
            imp, t = first_call(call, src)
            if imp is None:
                row.append(f"error: {t}")
                continue
            imports.append(imp)
            row.append(f"{t:.3f}")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    print(f"\n`import lowprec`: {min(imports):.2f}-{max(imports):.2f} s")


if __name__ == "__main__":
    main()
