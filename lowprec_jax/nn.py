"""Flax drop-ins for ``quantized_dot_general`` and ``quantized_einsum`` (docs/training.md).

- Linen: ``nn.Dense(features, dot_general_cls=lowprec_jax.nn.linen_dot_general("nvfp4"))``;
  every call draws its key with ``self.make_rng("lowprec")`` (pass
  ``rngs={"lowprec": key}`` to ``apply``; under ``nn.scan`` add
  ``split_rngs={"lowprec": True}``).
- NNX: ``nnx.Linear(d_in, d_out, dot_general=lowprec_jax.nn.DotGeneral("nvfp4", rngs),
  rngs=rngs)`` and ``lowprec_jax.nn.Einsum("nvfp4", rngs)`` for attention's products; each
  call draws a key from the ``lowprec`` stream of the ``nnx.Rngs`` it was given (its count
  is module state, so ``nnx.jit`` advances it every step and ``nnx.scan`` with
  ``nnx.split_rngs`` gives each layer its own stream).

Keys: one per step from the user (the stream's key, or the key given to ``apply``); each call
site derives its own (Flax folds in the module path and a call counter, NNX the stream's
count), and ``quantized_dot_general`` folds in the operand and the product, so no two
quantized operands share random bits. Recipes that round only to nearest draw no key.
"""
from __future__ import annotations

from flax import linen
from flax import nnx

from .dot import quantized_dot_general, quantized_einsum, recipe as _recipe, needs_key

__all__ = ["linen_dot_general", "LinenDotGeneral", "DotGeneral", "Einsum", "RNG_STREAM"]

RNG_STREAM = "lowprec"


class LinenDotGeneral(linen.Module):
    """A Linen module with ``jax.lax.dot_general``'s call signature that computes
    ``quantized_dot_general`` with ``recipe``; the key comes from ``make_rng(rng_stream)``
    when the recipe rounds stochastically."""
    recipe: object = "bf16"
    rng_stream: str = RNG_STREAM

    @linen.compact
    def __call__(self, lhs, rhs, dimension_numbers, precision=None,
                 preferred_element_type=None, **_):
        rc = _recipe(self.recipe)
        key = self.make_rng(self.rng_stream) if needs_key(rc) else None
        return quantized_dot_general(lhs, rhs, dimension_numbers, rc, key=key,
                                     preferred_element_type=preferred_element_type)


def linen_dot_general(recipe="bf16", rng_stream=RNG_STREAM):
    """The ``dot_general_cls`` for ``nn.Dense`` / ``nn.DenseGeneral`` (a factory: Linen
    instantiates it inside the layer)."""
    rc = _recipe(recipe)
    return lambda: LinenDotGeneral(rc, rng_stream)


def _stream(rngs, rng_stream):
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs, got {type(rngs).__name__}")
    if rng_stream not in rngs:
        raise ValueError(f"rngs has no {rng_stream!r} stream; create it with "
                         f"nnx.Rngs(params=0, {rng_stream}=<seed or key>)")
    return rngs[rng_stream].fork() if hasattr(rngs[rng_stream], "fork") else rngs[rng_stream]


class DotGeneral(nnx.Module):
    """An NNX callable with ``jax.lax.dot_general``'s signature (for ``nnx.Linear``'s
    ``dot_general=``) computing ``quantized_dot_general`` with ``recipe``; keys from the
    ``rng_stream`` stream of ``rngs`` (not needed when the recipe rounds only to nearest)."""

    def __init__(self, recipe="bf16", rngs: nnx.Rngs | None = None, *,
                 rng_stream=RNG_STREAM):
        self.recipe = _recipe(recipe)
        self.rng = _stream(rngs, rng_stream) if needs_key(self.recipe) else None

    def _key(self):
        return None if self.rng is None else self.rng()

    def __call__(self, lhs, rhs, dimension_numbers, precision=None,
                 preferred_element_type=None, **_):
        return quantized_dot_general(lhs, rhs, dimension_numbers, self.recipe,
                                     key=self._key(),
                                     preferred_element_type=preferred_element_type)


class Einsum(DotGeneral):
    """``jnp.einsum``'s signature for two operands (``"bhqd,bhkd->bhqk"``): the
    ``quantized_einsum`` of ``recipe``, lhs in the X role, rhs in the W role."""

    def __call__(self, subscripts, lhs, rhs, *, preferred_element_type=None, **_):
        return quantized_einsum(subscripts, lhs, rhs, self.recipe, key=self._key(),
                                preferred_element_type=preferred_element_type)
