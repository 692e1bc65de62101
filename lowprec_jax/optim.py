"""Low-precision weight updates as an optax transformation (docs/training.md).

``round_weights(fmt, "stochastic")`` goes last in an optax chain. Each step it forms the new
weights as optax would (``p + u``, one float32 addition per element, the order of
``optax.apply_updates``), rounds them once into ``fmt`` (``lowprec_jax.round``: stochastic
rounding draws its bits from a key kept in the state, split each step, folded per leaf), and
returns the updates r - p: ``optax.apply_updates(p, r - p)`` gives the rounded weights bit for
bit whenever the float32 difference is exact (every step that changes a weight by at most
half of it, Sterbenz's lemma; tested). Master weights that live in bfloat16, FP8 or any
format, as in stochastic-rounding training without a float32 master copy (Gupta et al. 2015,
arXiv:1502.02551; Zamirai et al. 2020, arXiv:2010.06192).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .cast import round as _round

__all__ = ["round_weights", "RoundWeightsState"]


class RoundWeightsState(NamedTuple):
    key: jax.Array


def round_weights(fmt, rounding="stochastic", *, key=None, sr_bits=None):
    """An optax ``GradientTransformation`` whose updates move each float32 parameter to
    ``round(p + u, fmt, rounding)`` exactly. ``key``: the JAX PRNG key of the stochastic
    stream (required for ``rounding="stochastic"``), split every step and folded in per
    parameter leaf. ``update`` needs ``params``."""
    if rounding == "stochastic" and key is None:
        raise ValueError("round_weights(rounding='stochastic') needs key=<a JAX PRNG key>")
    _round(jnp.zeros((1,), jnp.float32), fmt, rounding, sr_bits=sr_bits,
           key=key if rounding == "stochastic" else None)    # the core's checks, now

    def init(params):
        del params
        return RoundWeightsState(jax.random.key(0) if key is None else key)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("round_weights needs params: call update(updates, state, params)")
        step_key, next_key = jax.random.split(state.key)
        leaves, tree = jax.tree_util.tree_flatten(params)
        ups = tree.flatten_up_to(updates)
        out = []
        for i, (p, u) in enumerate(zip(leaves, ups)):
            if p.dtype != jnp.float32:
                raise TypeError(f"round_weights keeps float32 parameters, got {p.dtype} "
                                f"at leaf {i}")
            new = p + u.astype(np.float32)                     # optax.apply_updates' sum
            kw = dict(key=jax.random.fold_in(step_key, i), sr_bits=sr_bits) \
                if rounding == "stochastic" else {}
            r = _round(new, fmt, rounding, dtype=np.float32, **kw)
            out.append(_landing(p, r))
        return tree.unflatten(out), RoundWeightsState(next_key)

    return optax.GradientTransformation(init, update)


def _landing(p, r):
    """The update r - p, in float32: exact, so that optax's p + (r - p) is r bit for bit,
    whenever r is within a factor of two of p (Sterbenz's lemma: every step whose update is at
    most half the weight) or the difference needs at most 24 bits; a weight that collapses
    by more than that in one step lands on the float32 sum instead (docs/training.md)."""
    return r - p
