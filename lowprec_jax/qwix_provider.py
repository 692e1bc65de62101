"""Quantize every ``dot_general`` / ``einsum`` of an existing Flax model (Linen or NNX) by rules
on module paths, without editing the model: a lowprec provider for qwix's interception
(``qwix.quantize_model``), docs/training.md.

    rules = [lowprec_jax.qwix_provider.Rule(module_path=r"lm_head", recipe=None),
             lowprec_jax.qwix_provider.Rule(module_path=r".*", recipe="nvfp4")]
    qmodel = qwix.quantize_model(model, lowprec_jax.qwix_provider.Provider(rules), x)

The first rule whose ``module_path`` regex matches the module that calls the op (and whose
``op_names``, if given, name the op) decides its recipe; ``recipe=None`` (or ``"none"``) and
modules no rule matches keep the op in full precision. ``dot_general`` goes through
``quantized_dot_general`` (lhs in the X role, rhs in the W role), two-operand ``einsum``
through ``quantized_einsum``. Keys for stochastic recipes come from the module's random
stream ``"lowprec"``: Linen ``apply(..., rngs={"lowprec": key})``; NNX
``model.set_attributes(qwix_rngs=nnx.Rngs(lowprec=key))`` (qwix's convention). qwix folds
in the module path and a per-module call counter (Linen) or advances the stream (NNX), and
``quantized_dot_general`` the operand and the product.

Why qwix: it already intercepts ``jax.lax.dot_general`` and ``jax.numpy.einsum`` for Linen and
NNX, tracks module paths and keeps the original model untouched; a provider only says what
to compute. ``get_current_module`` / ``make_rng`` come from qwix 0.1.8's ``flax_util`` (the
pinned version).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import qwix
from qwix._src.utils import flax_util

from .dot import needs_key, quantized_dot_general, quantized_einsum, recipe as _recipe

__all__ = ["Rule", "Provider"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule(qwix.QuantizationRule):
    """qwix's rule (``module_path`` regex, ``op_names``) with the lowprec ``recipe`` to apply
    (a name from ``lowprec_jax.recipes()``, a ``Recipe``, or None: full precision)."""
    recipe: object = None


class Provider(qwix.QuantizationProvider):
    """qwix provider that routes intercepted ``dot_general`` / ``einsum`` calls through
    lowprec's quantized products as the first matching ``Rule`` says."""

    def __init__(self, rules, *, rng_stream="lowprec"):
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"rules must be lowprec_jax.qwix_provider.Rule, got {r!r}")
            if r.recipe is not None:
                _recipe(r.recipe)                    # unknown names fail here, not mid-trace
        super().__init__(rules)
        self.rng_stream = rng_stream

    def _init_rule(self, rule):
        return rule

    def _recipe_and_key(self, op_name):
        rule, _ = self._get_current_rule_and_op_id(op_name)
        if rule is None or rule.recipe is None or rule.recipe == "none":
            return None, None
        rc = _recipe(rule.recipe)
        return rc, flax_util.make_rng(self.rng_stream) if needs_key(rc) else None

    def dot_general(self, lhs, rhs, dimension_numbers, precision=None,
                    preferred_element_type=None, **kw):
        rc, key = self._recipe_and_key("dot_general")
        if rc is None:
            return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                       preferred_element_type=preferred_element_type, **kw)
        return quantized_dot_general(lhs, rhs, dimension_numbers, rc, key=key,
                                     preferred_element_type=preferred_element_type)

    def einsum(self, subscripts, *operands, precision=None, preferred_element_type=None,
               **kw):
        if len(operands) != 2 or not isinstance(subscripts, str):
            return jnp.einsum(subscripts, *operands, precision=precision,
                              preferred_element_type=preferred_element_type, **kw)
        rc, key = self._recipe_and_key("einsum")
        if rc is None:
            return jnp.einsum(subscripts, *operands, precision=precision,
                              preferred_element_type=preferred_element_type, **kw)
        return quantized_einsum(subscripts, *operands, rc, key=key,
                                preferred_element_type=preferred_element_type)

    def get_intercept_map(self):
        return super().get_intercept_map() | {
            "jax.lax.dot_general": self.dot_general,
            "jax.numpy.einsum": self.einsum,
        }
