"""make bench (part 6): what a quantized training step costs in JAX, as issue 19 measures it.

A jitted ``value_and_grad`` of an MLP (width d, batch 256, ReLU, mean-square loss), every layer
through ``lowprec_jax.quantized_dot_general`` with a named recipe (``none``: ``jnp.dot``):
compile time at each depth, and the step time at the deepest, as a ratio to the unquantized
step timed in turn with it in the same process (this VM's speed drifts between processes by
10-40%; the median of 15 steps after 10: glibc's malloc takes a few steps to settle what it
keeps between steps), the size of XLA's temporary buffers at the deepest
(``memory_analysis()``: what the step allocates besides its inputs and outputs), and the
minor page faults per timed step (XLA's CPU runtime allocates those buffers at every step;
where glibc hands the memory back to the kernel, each step faults it in again, at about
1 ms per 1000 pages on this VM; docs/training.md). Each layer takes its key as docs/training.md
advises: ``lowprec_jax.fold(key, i)`` unrolled (``jax.random.fold_in`` would compile Threefry
at every layer, about 0.15 s of an mxfp4 step's compile), ``jax.random.split`` under scan.
Each row runs in a fresh process (XLA caches nothing between them); with ``--repeat n``,
n times, before and after in turn, keeping the least compile time and the least step time
(this VM's noise only ever adds time). Prints a Markdown table; nothing is asserted.

``python benchmarks/bench_jax_training.py [--d 256] [--depths 1,2,4,8] [--recipes ...]
[--scan] [--src BASELINE] [--repeat 1]``
"""
import argparse
import json
import os
import subprocess
import sys

ROW = r"""
import json, os, resource, sys, time
import lowprec_jax
print("measuring", os.path.dirname(os.path.dirname(lowprec_jax.__file__)), file=sys.stderr)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, jax.numpy as jnp, numpy as np
import lowprec_jax as lj
recipe, d, depth, scan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
WARM, STEPS = 10, 15
rng = np.random.default_rng(0)
Ws = [jnp.asarray(rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d))
      for _ in range(depth)]
x = jnp.asarray(rng.standard_normal((256, d)).astype(np.float32))
dims = (((1,), (0,)), ((), ()))

def layer(h, W, k, recipe=recipe):
    if recipe == "none":
        return jax.nn.relu(h @ W)
    return jax.nn.relu(lj.quantized_dot_general(h, W, dims, recipe, key=k))

def loss(Ws, x, key, layer=layer):
    if scan:                                  # layers under lax.scan: one layer compiled
        h, _ = jax.lax.scan(lambda h, wk: (layer(h, *wk), None), x,
                            (jnp.stack(Ws), jax.random.split(key, len(Ws))))
        return jnp.mean(h ** 2)
    h = x
    for i, W in enumerate(Ws):
        h = layer(h, W, lj.fold(key, i))     # docs/training.md: a key per layer
    return jnp.mean(h ** 2)

step = jax.jit(jax.value_and_grad(loss))
key = jax.random.key(0)
t = time.perf_counter()
compiled = step.lower(Ws, x, key).compile()
t_compile = time.perf_counter() - t
# the unquantized step in the same process, timed in turn with the recipe's: this VM's speed
# drifts between processes by more than the effects measured
plain = jax.jit(jax.value_and_grad(lambda Ws, x, key: loss(
    Ws, x, key, layer=lambda h, W, k: layer(h, W, k, "none")))).lower(Ws, x, key).compile()
for _ in range(WARM):                 # glibc's malloc settles its thresholds over a few steps
    jax.block_until_ready(compiled(Ws, x, key))
    jax.block_until_ready(plain(Ws, x, key))
ts, base, faults = [], [], 0
for _ in range(STEPS):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    jax.block_until_ready(compiled(Ws, x, key))
    ts.append(time.perf_counter() - t)
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    t = time.perf_counter()
    jax.block_until_ready(plain(Ws, x, key))
    base.append(time.perf_counter() - t)
temp = compiled.memory_analysis().temp_size_in_bytes     # XLA's buffers besides in/out
print(json.dumps(dict(compile=t_compile, step=float(np.median(ts)), temp=temp,
                      faults=faults / STEPS, base=float(np.median(base)))))
"""


def measure(recipe, d, depth, scan=False, src=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # ``python -c`` puts the working directory first on sys.path: run in the checkout that
    # is measured (a baseline's, ahead of the editable install, or this project's)
    cwd = os.path.abspath(src) if src else os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))
    env["PYTHONPATH"] = cwd
    r = subprocess.run([sys.executable, "-c", ROW, recipe, str(d), str(depth), str(int(scan))],
                       capture_output=True, text=True, timeout=1800, env=env, cwd=cwd)
    if r.returncode:
        raise SystemExit(f"{recipe} depth {depth} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--depths", default="1,2,4,8")
    ap.add_argument("--recipes", default="none,bf16,mxfp8,mxfp4,nvfp4")
    ap.add_argument("--scan", action="store_true", help="layers under jax.lax.scan")
    ap.add_argument("--src", help="a baseline checkout: each row measured with it first "
                    "(before), then with this project (after), in one run")
    ap.add_argument("--repeat", type=int, default=1, help="processes per row; the least "
                    "compile and step times are kept")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat={args.repeat} is not allowed; give 1 or more processes per row")
    depths = [int(v) for v in args.depths.split(",")]
    recipes = args.recipes.split(",")
    print("compiling quantized training steps (a fresh process per row, a few seconds each)...",
          file=sys.stderr)
    res, old = {}, {}

    def least(runs):
        fastest = min(runs, key=lambda r: r["step"])
        return dict(compile=min(r["compile"] for r in runs), step=fastest["step"],
                    temp=runs[0]["temp"], faults=fastest["faults"], base=fastest["base"])
    for rc in recipes:
        for n in depths:
            new_runs, old_runs = [], []
            for _ in range(args.repeat):
                if args.src:
                    old_runs.append(measure(rc, args.d, n, args.scan, args.src))
                new_runs.append(measure(rc, args.d, n, args.scan))
            if args.src:
                old.setdefault(rc, []).append(least(old_runs))
            res.setdefault(rc, []).append(least(new_runs))
    print(f"\nMLP d={args.d}, batch 256, jit(value_and_grad), "
          f"{'layers under lax.scan, ' if args.scan else ''}JAX on CPU, {os.cpu_count()} "
          f"cores; step: median of 15 after 10" + (f"; least of {args.repeat} processes" if
                                           args.repeat > 1 else "")
          + (f"; before: {args.src}" if args.src else "") + "\n")
    head = " / ".join(str(n) for n in depths)
    cols = ["compile (s), depth " + head, f"step at depth {depths[-1]} (ms)",
            "unquantized step, same process (ms)", "step / unquantized", "compile / bf16",
            f"XLA temp buffers at depth {depths[-1]} (MB)", "page faults per step"]
    print("| recipe | " + " | ".join((f"{c}: before | after" if args.src else c)
                                    for c in cols) + " |")
    print("|---|" + "---|---|" * len(cols) if args.src else "|---|---|---:|---:|---:|---:|---:|---:|")
    bf = res.get("bf16", res[recipes[0]])[-1]["compile"]
    for rc in recipes:
        def cells(r, b_comp):
            comp = " / ".join(f"{m['compile']:.1f}" for m in r)
            return [comp, f"{r[-1]['step'] * 1e3:.1f}", f"{r[-1]['base'] * 1e3:.1f}",
                    f"{r[-1]['step'] / r[-1]['base']:.2f}",
                    f"{r[-1]['compile'] / b_comp:.2f}", f"{r[-1]['temp'] / 2**20:.1f}",
                    f"{r[-1]['faults']:.0f}"]
        new = cells(res[rc], bf)
        if args.src:
            oc = old.get("bf16", old[recipes[0]])[-1]["compile"]
            prev = cells(old[rc], oc)
            print(f"| {rc} | " + " | ".join(f"{a} | {b}" for a, b in zip(prev, new)) + " |")
        else:
            print(f"| {rc} | " + " | ".join(new) + " |")


if __name__ == "__main__":
    main()
