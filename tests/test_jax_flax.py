"""Flax drop-ins (lowprec_jax.nn: Linen ``dot_general_cls``, NNX ``dot_general=`` / Einsum),
the qwix provider (lowprec_jax.qwix_provider) and the key flow of stochastic recipes: each
entry point gives the bits of ``quantized_dot_general`` / ``quantized_einsum`` written out by
hand (those are checked against the core in test_jax_dot.py), layers a rule excludes give
the plain product, and random bits follow the key (same key, same bits under jit, scan,
remat and vmap; another key or another site, other bits)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

flax = pytest.importorskip("flax")
qwix = pytest.importorskip("qwix")
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import lowprec_jax as lj  # noqa: E402
from lowprec_jax import nn as lnn  # noqa: E402
from lowprec_jax import qwix_provider as qp  # noqa: E402

DIMS = (((1,), (0,)), ((), ()))
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((32, 64)).astype(np.float32))


def bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def same(a, b):
    return all(np.array_equal(bits(u), bits(v)) for u, v in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def by_hand(x, layers, recipe, keys=None):
    """Two dense layers written with quantized_dot_general (recipe None: plain)."""
    h = x
    for i, (w, b) in enumerate(layers):
        k = None if keys is None else keys[i]
        y = h @ w if recipe is None else lj.quantized_dot_general(h, w, DIMS, recipe, key=k)
        h = (y + b) if i == len(layers) - 1 else nn.relu(y + b)
    return h


class LinenMLP(nn.Module):
    recipe: object = "mxfp8"

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(64, dot_general_cls=lnn.linen_dot_general(self.recipe))(x))
        return nn.Dense(16, dot_general_cls=lnn.linen_dot_general(self.recipe))(h)


def _linen_layers(p):
    return [(p["params"][f"Dense_{i}"]["kernel"], p["params"][f"Dense_{i}"]["bias"])
            for i in range(2)]


def test_linen_dense_equals_quantized_dot_general_forward_and_gradient():
    m = LinenMLP("mxfp8")
    p = m.init(jax.random.key(0), X)
    got = jax.jit(m.apply)(p, X)
    assert same(got, by_hand(X, _linen_layers(p), "mxfp8"))
    g = jax.grad(lambda p: m.apply(p, X).sum())(p)
    want = jax.grad(lambda ls: by_hand(X, ls, "mxfp8").sum())(_linen_layers(p))
    assert same(_linen_layers(g), want)


def test_linen_stochastic_recipe_takes_keys_from_its_rng_stream():
    m = LinenMLP("mxfp4")                        # stochastic rounding in the input gradient
    p = m.init({"params": jax.random.key(0), "lowprec": jax.random.key(1)}, X)
    grad = jax.jit(jax.grad(lambda p, k: m.apply(p, X, rngs={"lowprec": k}).sum()))
    g1, g1b, g2 = grad(p, jax.random.key(5)), grad(p, jax.random.key(5)), grad(p, jax.random.key(6))
    assert same(g1, g1b)
    assert not same(g1, g2)
    with pytest.raises(Exception, match="lowprec"):
        m.apply(p, X)                            # no key for the stream: Flax names it


class NnxMLP(nnx.Module):
    def __init__(self, recipe, rngs):
        self.l1 = nnx.Linear(64, 64, dot_general=lnn.DotGeneral(recipe, rngs), rngs=rngs)
        self.l2 = nnx.Linear(64, 16, dot_general=lnn.DotGeneral(recipe, rngs), rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


def _nnx_layers(m):
    return [(m.l1.kernel[...], m.l1.bias[...]), (m.l2.kernel[...], m.l2.bias[...])]


def test_nnx_linear_equals_quantized_dot_general_forward_and_gradient():
    m = NnxMLP("mxfp8", nnx.Rngs(params=0))
    got = nnx.jit(lambda m, x: m(x))(m, X)
    assert same(got, by_hand(X, _nnx_layers(m), "mxfp8"))
    g = nnx.grad(lambda m: m(X).sum())(m)
    want = jax.grad(lambda ls: by_hand(X, ls, "mxfp8").sum())(_nnx_layers(m))
    assert same([(g.l1.kernel[...], g.l1.bias[...]), (g.l2.kernel[...], g.l2.bias[...])], want)


def test_nnx_stream_gives_each_site_and_step_its_own_key():
    m = NnxMLP("mxfp4", nnx.Rngs(params=0, lowprec=3))
    k1, k2 = m.l1.dot_general.rng, m.l2.dot_general.rng
    assert not np.array_equal(jax.random.key_data(k1.key[...]), jax.random.key_data(k2.key[...]))
    step = nnx.jit(lambda m: nnx.grad(lambda m: m(X).sum())(m))
    twin = nnx.clone(m)
    g1 = step(m)
    assert int(k1.count[...]) == 1                # the stream advanced inside nnx.jit
    g2 = step(m)
    assert same(nnx.state(g1, nnx.Param), nnx.state(step(twin), nnx.Param))  # same state
    assert not same(nnx.state(g1, nnx.Param), nnx.state(g2, nnx.Param))      # next step
    with pytest.raises(ValueError, match="lowprec"):
        lnn.DotGeneral("mxfp4", nnx.Rngs(params=0))


def test_nnx_einsum_equals_quantized_einsum():
    q = jnp.asarray(RNG.standard_normal((2, 32, 64)).astype(np.float32))
    k = jnp.asarray(RNG.standard_normal((2, 32, 64)).astype(np.float32))
    e = lnn.Einsum("nvfp4", nnx.Rngs(params=0, lowprec=1))
    got = e("bqd,bkd->bqk", q, k)
    key = jax.random.fold_in(jax.random.key(1), 0)         # unused by nvfp4's forward
    assert same(got, lj.quantized_einsum("bqd,bkd->bqk", q, k, "nvfp4", key=key))


RULES = [qp.Rule(module_path="head", recipe=None), qp.Rule(module_path=".*", recipe="mxfp8")]


class PlainLinen(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(64, name="body")(x))
        return nn.Dense(16, name="head")(h)


def test_qwix_provider_on_an_unedited_linen_model():
    m = PlainLinen()
    p = m.init(jax.random.key(0), X)
    qm = qwix.quantize_model(m, qp.Provider(RULES))
    got = jax.jit(qm.apply)(p, X)
    body = lj.quantized_dot_general(X, p["params"]["body"]["kernel"], DIMS, "mxfp8")
    h = nn.relu(body + p["params"]["body"]["bias"])
    want = h @ p["params"]["head"]["kernel"] + p["params"]["head"]["bias"]   # head excluded
    assert same(got, want)


class PlainNnx(nnx.Module):
    def __init__(self, rngs):
        self.body = nnx.Linear(64, 64, rngs=rngs)
        self.head = nnx.Linear(64, 16, rngs=rngs)

    def __call__(self, x):
        s = jnp.einsum("bd,cd->bc", x, x)          # an einsum the rules also reach
        return self.head(nnx.relu(self.body(x))), s


def test_qwix_provider_on_an_unedited_nnx_model_with_einsum():
    m = PlainNnx(nnx.Rngs(0))
    qm = qwix.quantize_model(m, qp.Provider(RULES), X, rngs=nnx.Rngs(lowprec=0))
    got, s = qm(X)
    h = nnx.relu(lj.quantized_dot_general(X, m.body.kernel[...], DIMS, "mxfp8")
                 + m.body.bias[...])
    assert same(got, h @ m.head.kernel[...] + m.head.bias[...])
    assert same(s, lj.quantized_einsum("bd,cd->bc", X, X, "mxfp8"))
    with pytest.raises(TypeError, match="Rule"):
        qp.Provider([qwix.QtRule(module_path=".*")])
    with pytest.raises(ValueError, match="unknown recipe"):
        qp.Provider([qp.Rule(recipe="fp3")])


def test_keys_give_the_same_bits_under_jit_scan_remat_and_vmap():
    """A stack of layers, keys split per layer from one step key: unrolled eagerly, under
    jit, under lax.scan and with jax.checkpoint, the values and both gradients (stochastic
    rounding in mxfp4's input gradient) are the same bits; vmap over step keys equals a loop."""
    Ws = jnp.asarray(RNG.standard_normal((3, 64, 64)).astype(np.float32) / 8)

    def layer(h, w, k):
        return nn.relu(lj.quantized_dot_general(h, w, DIMS, "mxfp4", key=k))

    def unrolled(Ws, x, key):
        ks = jax.random.split(key, 3)
        for i in range(3):
            x = layer(x, Ws[i], ks[i])
        return x.sum()

    def scanned(Ws, x, key, remat=False):
        f = jax.checkpoint(layer) if remat else layer
        h, _ = jax.lax.scan(lambda h, wk: (f(h, *wk), None), x, (Ws, jax.random.split(key, 3)))
        return h.sum()

    key = jax.random.key(11)
    g = jax.value_and_grad(unrolled, argnums=(0, 1))
    want = g(Ws, X, key)
    assert same(jax.jit(g)(Ws, X, key), want)
    assert same(jax.jit(jax.value_and_grad(scanned, argnums=(0, 1)))(Ws, X, key), want)
    assert same(jax.jit(jax.value_and_grad(lambda *a: scanned(*a, remat=True),
                                           argnums=(0, 1)))(Ws, X, key), want)
    keys = jax.random.split(jax.random.key(12), 2)
    vm = jax.jit(jax.vmap(jax.grad(unrolled), in_axes=(None, None, 0)))(Ws, X, keys)
    assert same(vm[0], jax.grad(unrolled)(Ws, X, keys[0]))
    assert same(vm[1], jax.grad(unrolled)(Ws, X, keys[1]))
    assert not same(vm[0], vm[1])
