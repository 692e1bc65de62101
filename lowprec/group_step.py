"""One step of the block-scaled FP4 matrix instructions (``block_scales="group"``: B200
``tcgen05.mma`` kind::mxf4nvf4 / kind::mxf4, sm_120 ``mma`` block-scaled), as MMA-Sim models
them (``gst_fdpa``, arXiv:2511.10909; docs/matrix-units.md): each group of products is summed
exactly and multiplied by both block scales; the group terms and the addend are aligned on
their *labels*, not on their magnitudes: a group's label is the sum of its two scales'
exponents (a subnormal UE4M3 scale counts as -6), or ``e_zero`` when every product of the group
is zero or a scale is zero (a group whose products cancel keeps its label); the addend's label
is its exponent, or ``e_zero`` when it is zero. Each term is truncated toward zero to F
fraction bits below the largest label, and the exact sum is rounded once.

One step for NumPy (``lp.matmul``) and for JAX (``lowprec_jax.matmul`` passes ``xp=jax.numpy``
and its own ``_align``, the same truncation on int64 arrays). The default truncation is the
fused adder's own ``_align`` (``lowprec._fused_small``)."""
from __future__ import annotations

import numpy as np

from ._fused_small import TRUNC, _align

E_ZERO = -139          # MMA-Sim's label for zero group terms and a zero addend (sm_100/sm_120)


def group_step(m, sig, label, cm, ce, c_label, F, mab, xp=np, align=_align):
    """(S, E): the step's exact truncated sum is S * 2^(E - F). ``m``, ``sig``, ``label``:
    (..., G) int64, the group term m * sig * 2^(label - mab) (m the exact group sum in units
    of the smallest element product, sig the product of both scales' integer significands);
    ``cm`` * 2^``ce`` the addend, ``c_label`` its label. ``xp``: the array namespace,
    ``align(p, sh, TRUNC)``: p * 2^sh truncated toward zero to an integer."""
    E = xp.maximum(xp.max(label, axis=-1), c_label)
    S = xp.sum(align(m * sig, label - mab - E[..., None] + F, TRUNC), axis=-1)
    return S + align(cm, ce - E + F, TRUNC), E
