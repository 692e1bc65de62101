"""FP4 / FP8 training simulation in plain JAX (functions and a parameter dict, no Flax): a tiny
transformer language model trained on CPU with every linear layer's three products (forward, input gradient, weight gradient) fake-quantized
by a lowprec_jax recipe: bf16 (baseline), mxfp8, mxfp8_ocp, mxfp4, nvfp4.

The data is generated here: sequences from a fixed random order-2 Markov chain over 32 tokens,
so the best possible loss (the chain's entropy rate) is known and printed. Usage:

    python examples/tiny_lm_jax.py [--steps 500] [--recipes bf16,mxfp8,mxfp8_ocp,mxfp4,nvfp4]
                                        [--out examples/tiny_lm_jax.png] [--smoke]

nvfp4 keeps the last layer (the LM head) in bf16, as the NVFP4 recipe keeps its last layers in
high precision (arXiv:2509.25149); the other recipes quantize every linear layer. Attention's
score and value products stay in float32. Notebook 05 builds on this file; the Flax NNX GPT
with quantized attention is examples/fp4_training_jax.py (``make train-jax``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lowprec_jax.dot import quantized_dot_general, recipes  # noqa: E402

V, T, D, HEADS, LAYERS = 32, 32, 64, 4, 2
LR = 2e-2
DN = (((2,), (0,)), ((), ()))                    # (B, T, d_in) x (d_in, d_out)


def markov_data(n_seq, seed=0):
    """Sequences of an order-2 Markov chain with peaked random transitions, and the chain's
    entropy rate in nats (the loss floor), weighted by the empirical pair frequencies."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, 0.08), size=(V, V))          # P[a, b] = p(. | a, b)
    seqs = np.empty((n_seq, T + 1), np.int32)
    seqs[:, :2] = rng.integers(0, V, (n_seq, 2))
    cum = np.cumsum(P, axis=-1)
    for t in range(2, T + 1):
        u = rng.random(n_seq)[:, None]
        nxt = (u > cum[seqs[:, t - 2], seqs[:, t - 1]]).sum(-1)
        seqs[:, t] = np.minimum(nxt, V - 1)
    H = -(P * np.log(np.maximum(P, 1e-30))).sum(-1)            # (V, V)
    a, b = seqs[:, 1:-1].ravel(), seqs[:, 2:].ravel()
    return seqs, float(H[a, b].mean())


def init(key):
    ks = iter(jax.random.split(key, 64))
    dense = lambda i, o: jax.random.normal(next(ks), (i, o)) / np.sqrt(i)  # noqa: E731
    p = {"emb": jax.random.normal(next(ks), (V, D)) * 0.5,
         "pos": jax.random.normal(next(ks), (T, D)) * 0.1,
         "head": dense(D, V), "lnf": jnp.ones(D)}
    for i in range(LAYERS):
        p[f"b{i}"] = {"qkv": dense(D, 3 * D), "out": dense(D, D), "up": dense(D, 4 * D),
                      "down": dense(4 * D, D), "ln1": jnp.ones(D), "ln2": jnp.ones(D)}
    return p


def norm(x, g):
    x = x - x.mean(-1, keepdims=True)
    return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g


def forward(p, tokens, recipe, key):
    keys = iter(jax.random.split(key, 16))
    lin = lambda x, w, r=recipe: quantized_dot_general(x, w, DN, r, key=next(keys))  # noqa
    x = p["emb"][tokens] + p["pos"]
    mask = jnp.tril(jnp.ones((T, T), bool))
    for i in range(LAYERS):
        b = p[f"b{i}"]
        q, k, v = jnp.split(lin(norm(x, b["ln1"]), b["qkv"]), 3, axis=-1)
        split = lambda t: t.reshape(t.shape[0], T, HEADS, D // HEADS)  # noqa: E731
        s = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / np.sqrt(D // HEADS)
        a = jax.nn.softmax(jnp.where(mask, s, -1e9), axis=-1)
        o = jnp.einsum("bhqk,bkhd->bqhd", a, split(v)).reshape(x.shape)
        x = x + lin(o, b["out"])
        x = x + lin(jax.nn.gelu(lin(norm(x, b["ln2"]), b["up"])), b["down"])
    head_recipe = "bf16" if recipe == "nvfp4" else recipe
    return lin(norm(x, p["lnf"]), p["head"], head_recipe)


def loss_fn(p, seqs, recipe, key):
    logits = forward(p, seqs[:, :-1], recipe, key)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, seqs[:, 1:, None], axis=-1).mean()


def adam_step(p, g, m, v, t, lr, b1=0.9, b2=0.99, eps=1e-8):
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
    p = jax.tree.map(lambda p, m, v: p - lr * (m / (1 - b1 ** t)) /
                     (jnp.sqrt(v / (1 - b2 ** t)) + eps), p, m, v)
    return p, m, v


def train(recipe, steps, batch, data, seed=0, bar=True):
    """Losses per step (training batches) and the final held-out loss."""
    train_set, test_set = data
    p = init(jax.random.key(seed))
    m = jax.tree.map(jnp.zeros_like, p)
    v = jax.tree.map(jnp.zeros_like, p)

    @jax.jit
    def step(p, m, v, t, seqs, key):
        loss, g = jax.value_and_grad(loss_fn)(p, seqs, recipe, key)
        lr = LR * jnp.minimum(1.0, t / 20.0)
        p, m, v = adam_step(p, g, m, v, t, lr)
        return p, m, v, loss

    rng = np.random.default_rng(seed + 1)
    losses = []
    t0 = time.time()
    for t in range(1, steps + 1):
        idx = rng.integers(0, len(train_set), batch)
        p, m, v, loss = step(p, m, v, jnp.float32(t), jnp.asarray(train_set[idx]),
                             jax.random.key(1000 * seed + t))
        losses.append(float(loss))
        if bar and (t % 5 == 0 or t == steps):
            done = int(30 * t / steps)
            sys.stdout.write(f"\r{recipe:>9} [{'#' * done}{'.' * (30 - done)}] {t}/{steps} "
                             f"loss {losses[-1]:.3f}  {time.time() - t0:5.1f}s")
            sys.stdout.flush()
    if bar:
        sys.stdout.write("\n")
    test = float(jax.jit(loss_fn, static_argnums=2)(p, jnp.asarray(test_set), recipe,
                                                    jax.random.key(7)))
    return np.array(losses), test, time.time() - t0


def plot_losses(curves, floor, title, out, w=10):
    """Loss curves ({name: (losses, held-out loss)}, w-step means) against the entropy rate,
    saved to ``out``."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, (losses, test) in curves.items():
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(losses) + 1), smooth, label=f"{n} (held-out {test:.3f})")
    ax.axhline(floor, color="k", ls=":", label=f"entropy rate {floor:.3f}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"cross-entropy loss (nats/token), {w}-step mean")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


def cli(argv, doc, out):
    """The examples' command line: (arguments, recipe names, steps)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--recipes", default="bf16,mxfp8,mxfp8_ocp,mxfp4,nvfp4")
    ap.add_argument("--out", default=out)
    ap.add_argument("--layers", type=int, default=LAYERS)
    ap.add_argument("--smoke", action="store_true", help="a few steps, no plot")
    args = ap.parse_args(argv)
    names = args.recipes.split(",")
    for n in names:
        if n not in recipes():
            ap.error(f"unknown recipe {n!r}; choose from {sorted(recipes())}")
    return args, names, 3 if args.smoke else args.steps


def main(argv=None):
    args, names, steps = cli(argv, __doc__, "examples/tiny_lm_jax.png")
    globals()["LAYERS"] = args.layers
    seqs, floor = markov_data(4096 + 512)
    data = (seqs[:4096], seqs[4096:])
    print(f"tiny transformer: {LAYERS} layers, d={D}, {HEADS} heads, vocab {V}, context {T}; "
          f"{steps} steps of {args.batch} sequences; loss floor (entropy rate) {floor:.3f}")
    results = {}
    for n in names:
        results[n] = train(n, steps, args.batch, data)
    print(f"\n{'recipe':>9} | final train loss (mean of last 20) | held-out loss | time")
    for n, (losses, test, sec) in results.items():
        print(f"{n:>9} | {losses[-20:].mean():34.4f} | {test:13.4f} | {sec:5.1f}s")
    if not args.smoke and args.out:
        plot_losses({n: r[:2] for n, r in results.items()}, floor,
                    "Tiny transformer LM, linear layers fake-quantized by lowprec_jax", args.out)
    return results


if __name__ == "__main__":
    main()
