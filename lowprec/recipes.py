"""Training recipes: how each operand of the three products of a linear layer (forward X @ W,
input gradient dY @ W^T, weight gradient X^T @ dY) is quantized, shared by
``lowprec_jax.quantized_dot_general`` and ``lowprec_torch.nn.QuantLinear`` (docs/blocks.md).
"""
from __future__ import annotations

import dataclasses
import operator

import numpy as np

from . import blocks as _B

__all__ = ["Quant", "Recipe", "recipe", "recipes", "epilogue", "two_level"]


@dataclasses.dataclass(frozen=True)
class Quant:
    """How one operand of one product is fake-quantized. fmt: None (left as it is), a scalar
    format (``"bfloat16"``, ``"float8_e4m3fn"``, ...) or a block format (a preset name such as
    ``"mxfp4"``, ``"nvfp4"``, ``"nvfp4_2d"``, or an ``lp.BlockFormat``), blocked along the
    contracted axis (tiles: over the operand's two matrix axes). rounding: any mode of
    ``lp.round``; stochastic draws its bits from the key (JAX) or generator (torch) the layer
    is given.
    rht: apply the 16-point random Hadamard transform along the contracted axis first.
    prescale: multiply the operand by this float32 factor before quantizing, and divide the
    product by the two factors' product afterwards (one float32 division): Tseng et al.'s
    3/4 (arXiv:2502.20586, section 3.2) keeps stochastic rounding with the OCP floor scale
    from clipping the block's largest values."""
    fmt: object = None
    rounding: str = "nearest_even"
    sr_bits: int | None = None
    rht: bool = False
    prescale: float | None = None

    def __post_init__(self):
        if self.prescale is not None and not (isinstance(self.prescale, (int, float))
                                              and 0 < self.prescale <= 1):
            raise ValueError(f"prescale={self.prescale!r} is not allowed: give a number in "
                             "(0, 1], e.g. 0.75 (Tseng et al.), or None")

    @property
    def is_block(self):
        return isinstance(self.fmt, _B.BlockFormat) or self.fmt in _B.block_formats()


def two_level(q) -> bool:
    """Does q quantize to a two-level block format (NVFP4: element x E4M3 block scale x
    float32 tensor scale)? Its operand then enters a product as element x block scale, and
    the tensor scale is applied after the sum (``epilogue``)."""
    return q is not None and q.fmt is not None and q.is_block and \
        _B.block_format(q.fmt).scale_rule in _B.TWO_LEVEL


def epilogue(y, qa=None, qb=None, ta=None, tb=None, mul=operator.mul, div=operator.truediv):
    """What a recipe's product does after the sum ``y`` (float32) of its operands' products:
    times alpha = ta x tb, the two-level operands' float32 tensor scales (None for the
    others), as NVFP4 GEMMs apply them to the result rather than to the operands (cuBLASLt's
    alpha; Transformer Engine's cublaslt_gemm.cu folds both tensor scales into it, computed
    from the two amaxes, which can differ from ta x tb in the last bit; ``lp.matmul`` on
    two-level BlockTensors applies the same alpha); then divided by
    the Quants' prescale factors' product (Tseng et al.'s 3/4). Each step one float32
    rounding; ``mul``, ``div``: the float32 multiplication and division to use (an
    adapter's exact ones: XLA's CPU divides float32 by a reciprocal, off by an ulp in one
    quotient in nine)."""
    alpha = None
    for t in (ta, tb):
        if t is not None:
            alpha = t if alpha is None else mul(alpha, t)
    if alpha is not None:
        y = mul(y, alpha)
    s = np.float32(1.0)
    for q in (qa, qb):
        if q is not None and q.prescale is not None:
            s = s * np.float32(q.prescale)
    return y if s == 1 else div(y, s)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Quantization of the two operands of each product: ``fwd`` (X, W), ``dgrad`` (dY, W),
    ``wgrad`` (X, dY); ``acc``: None (the backend's float32 dot) or an accumulator model
    (``lp.Accumulator`` or preset name) for the adapters' bit-exact ``matmul``."""
    fwd: tuple = (Quant(), Quant())
    dgrad: tuple = (Quant(), Quant())
    wgrad: tuple = (Quant(), Quant())
    acc: object = None
    name: str = ""


def _all(q):
    return (q, q), (q, q), (q, q)


def _recipes():
    bf16 = Quant("bfloat16")
    e4, e5 = Quant("mxfp8_e4m3"), Quant("mxfp8_e5m2")
    r4 = Quant("mxfp8_e4m3_rceil")
    fp4, fp4_rht = Quant("mxfp4"), Quant("mxfp4", rht=True)
    # SR operands get scales rounded up, so no value is clipped and SR stays unbiased
    fp4_sr = Quant("mxfp4_rceil", "stochastic")
    fp4_sr_rht = Quant("mxfp4_rceil", "stochastic", rht=True)
    fp4_34 = Quant("mxfp4", "stochastic", prescale=0.75)
    fp4_34_rht = Quant("mxfp4", "stochastic", rht=True, prescale=0.75)
    nv, nv2 = Quant("nvfp4"), Quant("nvfp4_2d")
    nv_sr = Quant("nvfp4", "stochastic")
    nv_rht, nv_sr_rht = Quant("nvfp4", rht=True), Quant("nvfp4", "stochastic", rht=True)
    return {r.name: r for r in (
        Recipe(*_all(bf16), name="bf16"),
        Recipe(*_all(r4), name="mxfp8"),
        Recipe((e4, e4), (e5, e4), (e4, e5), name="mxfp8_ocp"),
        Recipe((fp4, fp4), (fp4_sr, fp4), (fp4_rht, fp4_sr_rht), name="mxfp4"),
        Recipe((nv, nv2), (nv_sr, nv2), (nv_rht, nv_sr_rht), name="nvfp4"),
        Recipe((Quant(), Quant()), (fp4_34, fp4_34), (fp4_34_rht, fp4_34_rht),
               name="mxfp4_backward"),
        Recipe(name="none"),
    )}


_RECIPES = _recipes()
RECIPE_NOTES = {
    "bf16": "every operand rounded to bfloat16 (nearest even), float32 accumulation",
    "mxfp8": "MXFP8 as NVIDIA pre-trains with it (arXiv:2506.08027): E4M3 everywhere, 1 x 32 "
             "blocks, scales rounded up (rceil)",
    "mxfp8_ocp": "OCP MXFP8: E4M3 for X and W, E5M2 for gradients, 1 x 32 blocks, the OCP "
                 "spec's floor scales (diverges in the example, as arXiv:2506.08027 reports)",
    "mxfp4": "MXFP4 (E2M1, 1 x 32 blocks, E8M0 scales) everywhere; stochastic rounding on "
             "gradients with scales rounded up (rceil: amax maps into (3, 6], nothing is "
             "clipped, as Tseng et al.'s 3/4 prescale ensures), RHT on the wgrad operands "
             "(arXiv:2502.20586); X and W keep the OCP floor scales",
    "mxfp4_backward": "Tseng et al. (arXiv:2502.20586): the forward product left in float32 "
                      "here (their BF16), both backward products in MXFP4 (OCP floor scales) "
                      "with stochastic rounding after the 3/4 prescale, RHT on the weight "
                      "gradient's operands; products rescaled by 16/9",
    "nvfp4": "NVFP4 (arXiv:2509.25149): 1 x 16 blocks for X and dY, 16 x 16 tiles for W, "
             "stochastic rounding on gradients, RHT on the wgrad operands",
    "none": "no quantization (float32)",
}


def recipes() -> dict:
    """Recipe name -> what it quantizes."""
    return dict(RECIPE_NOTES)


def recipe(name) -> Recipe:
    """The named ``Recipe`` (``recipes()`` lists them), or a Recipe unchanged."""
    if isinstance(name, Recipe):
        return name
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(_RECIPES)} or pass "
                         "a lowprec.recipes.Recipe")
    return _RECIPES[name]
