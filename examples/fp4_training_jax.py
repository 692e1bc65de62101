"""FP4 / FP8 training simulation in JAX with Flax NNX: a small GPT (pre-norm transformer, layers
under ``nnx.scan``) whose every product is fake-quantized by a lowprec_jax recipe: the linear
layers through ``nnx.Linear(dot_general=lowprec_jax.nn.DotGeneral(recipe, rngs))``, attention's
score and value products through ``lowprec_jax.nn.Einsum``; the optimizer is optax's Adam.

The corpus is generated here (no download): sequences of a fixed random order-2 Markov chain
over 32 tokens, so the best possible loss (the chain's entropy rate) is known and printed.
Usage:

    python examples/fp4_training_jax.py [--steps 500] [--recipes bf16,mxfp8,mxfp8_ocp,mxfp4,nvfp4]
                                        [--out examples/fp4_training_jax.png] [--smoke]

Keys: one ``nnx.Rngs(lowprec=seed)`` stream; every quantized product forks its own stream at
construction (per layer, under ``nnx.vmap`` / ``nnx.scan``), advances it each step, and
``quantized_dot_general`` folds in the operand and the product. nvfp4 keeps the LM head in
bf16, as the NVFP4 recipe keeps its last layers in higher precision (arXiv:2509.25149).
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lowprec_jax import nn as lnn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_lm_jax import V, T, cli, markov_data, plot_losses  # noqa: E402  (the same corpus as the plain-JAX study)

D, HEADS, LAYERS = 64, 4, 2
LR = 2e-2


def linear(d_in, d_out, recipe, rngs):
    return nnx.Linear(d_in, d_out, use_bias=False, rngs=rngs,
                      dot_general=lnn.DotGeneral(recipe, rngs))


class Block(nnx.Module):
    """Pre-norm block: causal multi-head attention (quantized einsums) and a GELU MLP."""

    def __init__(self, recipe, rngs):
        self.ln1, self.ln2 = nnx.LayerNorm(D, rngs=rngs), nnx.LayerNorm(D, rngs=rngs)
        self.qkv, self.out = linear(D, 3 * D, recipe, rngs), linear(D, D, recipe, rngs)
        self.up, self.down = linear(D, 4 * D, recipe, rngs), linear(4 * D, D, recipe, rngs)
        self.scores = lnn.Einsum(recipe, rngs)
        self.mix = lnn.Einsum(recipe, rngs)

    def __call__(self, x):
        B = x.shape[0]
        q, k, v = jnp.split(self.qkv(self.ln1(x)), 3, axis=-1)
        heads = lambda t: t.reshape(B, T, HEADS, D // HEADS).transpose(0, 2, 1, 3)  # noqa
        s = self.scores("bhqd,bhkd->bhqk", heads(q), heads(k)) / np.sqrt(D // HEADS)
        a = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -1e9), axis=-1)
        o = self.mix("bhqk,bhkd->bhqd", a, heads(v)).transpose(0, 2, 1, 3).reshape(x.shape)
        x = x + self.out(o)
        return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class GPT(nnx.Module):
    def __init__(self, recipe, layers, rngs):
        self.emb = nnx.Embed(V, D, embedding_init=nnx.initializers.normal(0.5), rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (T, D)) * 0.1)

        @nnx.split_rngs(splits=layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def blocks(rngs):
            return Block(recipe, rngs)
        self.blocks = blocks(rngs)
        self.lnf = nnx.LayerNorm(D, rngs=rngs)
        self.head = linear(D, V, "bf16" if recipe == "nvfp4" else recipe, rngs)

    def __call__(self, tokens):
        x = self.emb(tokens) + self.pos[...]

        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def run(x, block):
            return block(x)
        return self.head(self.lnf(run(x, self.blocks)))


def loss_fn(model, seqs):
    logp = jax.nn.log_softmax(model(seqs[:, :-1]), axis=-1)
    return -jnp.take_along_axis(logp, seqs[:, 1:, None], axis=-1).mean()


@nnx.jit
def train_step(model, opt, seqs):
    loss, g = nnx.value_and_grad(loss_fn)(model, seqs)
    opt.update(model, g)
    return loss


@nnx.jit
def eval_loss(model, seqs):
    return loss_fn(model, seqs)


def train(recipe, steps, batch, data, layers=LAYERS, seed=0, bar=True):
    """Losses per step (training batches), the held-out loss, the first step's time (tracing
    and compiling) and the median later step time."""
    train_set, test_set = data
    model = GPT(recipe, layers, nnx.Rngs(params=seed, lowprec=seed + 1))
    sched = optax.linear_schedule(0.0, LR, 20)             # warm-up, then constant
    opt = nnx.Optimizer(model, optax.adam(sched, b2=0.99), wrt=nnx.Param)
    rng = np.random.default_rng(seed + 1)
    losses, times = [], []
    it = tqdm(range(steps), desc=f"{recipe:>9}", disable=not bar, ncols=90, leave=True)
    for t in it:
        idx = rng.integers(0, len(train_set), batch)
        t0 = time.perf_counter()
        loss = float(train_step(model, opt, jnp.asarray(train_set[idx])))
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        if t % 10 == 0:
            it.set_postfix(loss=f"{loss:.3f}")
    test = float(eval_loss(model, jnp.asarray(test_set)))
    later = np.median(times[1:]) if len(times) > 1 else float("nan")
    return np.array(losses), test, times[0], later


def main(argv=None):
    args, names, steps = cli(argv, __doc__, "examples/fp4_training_jax.png")
    seqs, floor = markov_data(4096 + 512)
    data = (seqs[:4096], seqs[4096:])
    print(f"small GPT (Flax NNX, layers under nnx.scan): {args.layers} layers, d={D}, "
          f"{HEADS} heads, vocab {V}, context {T}; {steps} steps of {args.batch} sequences; "
          f"loss floor (entropy rate) {floor:.3f}\ncompiling each recipe's training step "
          "first (10-25 s each)...")
    results = {n: train(n, steps, args.batch, data, args.layers, bar=not args.smoke)
               for n in names}
    print("\n| recipe | train loss (last 20) | held-out loss | first step, compile (s) | "
          "step (ms) |\n|---|---:|---:|---:|---:|")
    for n, (losses, test, first, later) in results.items():
        print(f"| {n} | {losses[-20:].mean():.4f} | {test:.4f} | {first:.1f} | "
              f"{1e3 * later:.1f} |")
    if not args.smoke and args.out:
        plot_losses({n: r[:2] for n, r in results.items()}, floor,
                    "Small GPT (Flax NNX), every product fake-quantized by lowprec_jax", args.out)
    return results


if __name__ == "__main__":
    main()
