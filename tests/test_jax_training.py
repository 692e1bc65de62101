"""Training pieces around the quantized products: Tseng et al.'s 3/4 prescale (JAX and torch
give the hand-written bits) and low-precision weight updates as an optax transformation
(the rounded weights against ml_dtypes' bfloat16 cast and the core's stochastic rounding fed
the same random words)."""
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

optax = pytest.importorskip("optax")

import lowprec as lp  # noqa: E402
import lowprec_jax as lj  # noqa: E402
from lowprec.recipes import Quant, Recipe  # noqa: E402
from lowprec_jax import optim  # noqa: E402
from helpers import key_words  # noqa: E402

RNG = np.random.default_rng(4)
X = RNG.standard_normal((32, 64)).astype(np.float32)
W = RNG.standard_normal((64, 48)).astype(np.float32)
G = RNG.standard_normal((32, 48)).astype(np.float32)
Q34 = Quant("mxfp4", prescale=0.75)
PRE = Recipe((Q34, Q34), (Q34, Q34), (Quant(), Quant()), name="prescaled")


def bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _hi(a, b):
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST,
                      preferred_element_type=jnp.float32)


def test_prescale_scales_operands_before_quantizing_and_the_product_after():
    """Forward: (q(3/4 X) @ q(3/4 W)) / (9/16), input gradient likewise along N; the
    quantized operands are the core's (lp.fake_quantize), the float32 products JAX's."""
    t = np.float32(0.75)
    xq = lp.fake_quantize(t * X, "mxfp4", -1)
    wq = lp.fake_quantize(t * W, "mxfp4", 0)
    want = _hi(xq, wq) / np.float32(0.5625)
    y, vjp = jax.vjp(lambda x, w: lj.quantized_dot_general(x, w, (((1,), (0,)), ((), ())), PRE),
                     X, W)
    assert np.array_equal(bits(y), bits(want))
    gq = lp.fake_quantize(t * G, "mxfp4", -1)
    wdq = lp.fake_quantize(t * W, "mxfp4", -1)
    dx = vjp(jnp.asarray(G))[0]
    assert np.array_equal(bits(dx), bits(_hi(gq, wdq.T) / np.float32(0.5625)))
    with pytest.raises(ValueError, match="prescale"):
        Quant("mxfp4", prescale=1.5)


def test_prescale_in_torch_matches_jax():
    torch = pytest.importorskip("torch")
    from lowprec_torch.nn import quantized_linear
    y = quantized_linear(torch.from_numpy(X), torch.from_numpy(W.T.copy()), recipe=PRE)
    t = np.float32(0.75)
    want = torch.from_numpy(lp.fake_quantize(t * X, "mxfp4", -1)) @ torch.from_numpy(
        lp.fake_quantize(t * W.T, "mxfp4", -1)).T / torch.tensor(0.5625)
    assert np.array_equal(y.numpy().view(np.uint32), want.numpy().view(np.uint32))


def _params():
    p = {"w": RNG.standard_normal((64, 32)).astype(np.float32),
         "b": RNG.standard_normal((32,)).astype(np.float32)}
    p = {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in p.items()}
    u = {k: (np.clip(RNG.standard_normal(v.shape), -0.5, 0.5) * np.abs(v)).astype(np.float32)
         for k, v in p.items()}                  # at most half of each weight: Sterbenz
    return p, u


def test_round_weights_nearest_lands_on_ml_dtypes_bfloat16():
    p, u = _params()
    tx = optim.round_weights("bfloat16", "nearest_even")
    ups, _ = jax.jit(tx.update)(u, tx.init(p), p)
    new = optax.apply_updates(p, ups)
    for k in p:
        want = (p[k] + u[k]).astype(ml_dtypes.bfloat16).astype(np.float32)
        assert np.array_equal(bits(new[k]), bits(want)), k


def test_round_weights_stochastic_equals_the_core_with_the_same_words():
    p, u = _params()
    key = jax.random.key(9)
    tx = optax.chain(optax.identity(), optim.round_weights("bfloat16", key=key))
    state = tx.init(p)
    ups, state2 = jax.jit(tx.update)(u, state, p)
    new = optax.apply_updates(p, ups)
    step_key = jax.random.split(key)[0]
    leaves = jax.tree_util.tree_leaves(p)
    for i, k in enumerate(sorted(p)):            # dict leaves are flattened in key order
        assert leaves[i] is p[k]
        words = key_words(jax.random.fold_in(step_key, i), p[k].shape)
        want = lp.round(p[k] + u[k], "bfloat16", "stochastic", rbits=words)
        assert np.array_equal(bits(new[k]), bits(want)), k
    ups2, _ = jax.jit(tx.update)(u, state2, p)   # the next step draws other bits
    assert not np.array_equal(bits(ups2["w"]), bits(ups["w"]))
    with pytest.raises(ValueError, match="key"):
        optim.round_weights("bfloat16")
    with pytest.raises(ValueError, match="params"):
        optim.round_weights("bfloat16", "nearest_even").update(u, state[1])
