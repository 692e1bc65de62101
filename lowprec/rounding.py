"""Rounding modes, overflow policies, and the random bits of stochastic rounding.

Modes (IEEE 754-2019 §4.3 plus round-to-odd and stochastic rounding):

* ``nearest_even`` (default), ``nearest_away``: nearest value, ties to even code / away from 0.
* ``toward_zero``, ``up`` (toward +inf), ``down`` (toward -inf).
* ``odd``: if inexact, the neighbour whose last code bit is 1 (round-to-odd).
* ``stochastic``: between neighbours lo < |x| < hi with discarded fraction d = (|x|-lo)/ulp,
  round away from zero iff (docs/rounding.md, definitions as in gfloat's round.py):

  ==========  ==========================================================
  ``srff``    floor(d 2^r) + R >= 2^r       (truncate d to r bits; the default: what
              hardware does when it adds r random bits below the last kept bit and truncates)
  ``srf``     floor(d 2^(r+1)) + 2R + 1 >= 2^(r+1)
  ``src``     rne(d 2^r) + R >= 2^r         (round d to r bits, nearest-even)
  ``sr_odd``  rto(d 2^r) + R >= 2^r         (round d to r bits, to odd: sticky)
  ``sr_nearest_odd``  rnto(d 2^r) + R >= 2^r (round d to r bits, nearest, ties to odd:
              gfloat's ``StochasticOdd``)
  ==========  ==========================================================

  with R the low r bits of the element's random word. ``sr_bits=None`` is exact stochastic
  rounding: r is the whole random word, 32 bits for inputs of at most 32 bits and 64 for
  float64, so P(away) = d exactly whenever d has at most r bits (every input whose magnitude is
  at least the format's smallest normal; deeper in the subnormal range d is truncated to r bits).

Random words come from ``rbits=`` (unsigned integers broadcastable to x) or from ``seed=``:
the stream of 32-bit words S[k] = word (k mod 4) of Philox4x32-10 (Salmon et al., SC'11) with
key (seed mod 2^32, seed >> 32) at counter (q mod 2^32, q >> 32, 0, 0), q = k // 4. The element
with flat C-order index i takes S[i]; where more than 32 random bits are used (r > 32: exact
SR of float64 inputs, or sr_bits > 32) it takes the 64-bit word S[2i] | S[2i+1] << 32. Each
Philox block thus serves four elements (two wide ones), the way Triton's
``tl.randint4x(seed, q)`` and cuRAND's ``curand()`` read it: element i is
``tl.randint4x(seed, i // 4)[i % 4]``. The words are a pure function of (seed, index), so
results do not depend on shape, chunking or backend.

Overflow policies (what replaces a result whose magnitude exceeds ``fmt.max``):

* ``"inf"``: IEEE 754 §7.4: +-Inf when the rounding went away from zero (nearest, stochastic,
  ``up`` for x > 0, ``down`` for x < 0), else +-max. Needs a format with Inf.
* ``"nan"``: the same, with NaN in place of Inf. Needs a format with NaN.
* ``"inf_always"``: +-Inf for every result whose rounded magnitude exceeds ``fmt.max``, whatever
  the direction (under ``toward_zero`` that is a magnitude of at least 2^(emax+1)): what NVIDIA
  matrix units do with a float32 result they truncate (MMA-Sim 2.1.1, arXiv:2511.10909,
  ``ldexp_and_normalize``). Needs a format with Inf.
* ``"saturate"``: +-max always; +-Inf inputs also become +-max (P3109 SatFinite, torch's fp8 cast).
* ``None``: the format's natural behaviour: ``"inf"`` if it has Inf, else ``"nan"`` if it has NaN,
  else ``"saturate"``; this equals ml_dtypes ``astype`` for every ml_dtypes float format.
"""
from __future__ import annotations

import numpy as np

MODES = ("nearest_even", "nearest_away", "toward_zero", "up", "down", "odd", "stochastic")
MODE_ALIASES = {
    "rne": "nearest_even", "rn": "nearest_even", "nearest": "nearest_even",
    "rna": "nearest_away", "rz": "toward_zero", "rtz": "toward_zero", "trunc": "toward_zero",
    "ru": "up", "ceil": "up", "rd": "down", "floor": "down", "rto": "odd", "sr": "stochastic",
}
VARIANT_NAMES = ("srff", "srf", "src", "sr_odd", "sr_nearest_odd")
OVERFLOWS = (None, "saturate", "inf", "nan", "inf_always")

__all__ = ["MODES", "VARIANT_NAMES", "OVERFLOWS", "random_bits", "philox4x32",
           "check_random_source"]


def mode_name(rounding) -> str:
    """Canonical name of a rounding mode (accepts the aliases rne, rz, ru, rd, rto, sr...)."""
    if not isinstance(rounding, str):
        raise TypeError(f"rounding must be a string, got {rounding!r}; allowed: {list(MODES)}")
    key = rounding.strip().lower()
    key = MODE_ALIASES.get(key, key)
    if key not in MODES:
        raise ValueError(f"rounding={rounding!r} is not a rounding mode; allowed: {list(MODES)} "
                         f"(aliases {sorted(MODE_ALIASES)})")
    return key


def check_overflow(overflow, fmt) -> str:
    """Resolve ``overflow`` (None = natural) for ``fmt`` and check the format can do it."""
    if overflow not in OVERFLOWS:
        raise ValueError(f"overflow={overflow!r} is not allowed; choose one of {OVERFLOWS}")
    if overflow is None:
        return "inf" if fmt.has_inf else "nan" if fmt.has_nan else "saturate"
    if overflow in ("inf", "inf_always") and not fmt.has_inf:
        raise ValueError(f"overflow={overflow!r} but {fmt.name} has no Inf; use 'saturate'"
                         + (" or 'nan'" if fmt.has_nan else ""))
    if overflow == "nan" and not fmt.has_nan:
        raise ValueError(f"overflow='nan' but {fmt.name} has no NaN; use 'saturate'"
                         + (" or 'inf'" if fmt.has_inf else ""))
    return overflow


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int in [0, 2^64), got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed={seed} is out of range: allowed 0 <= seed < 2^64")
    return int(seed)


def check_random_source(mode, seed, rbits):
    """Stochastic rounding takes exactly one source of random bits; other modes take none."""
    if mode != "stochastic":
        if seed is not None or rbits is not None:
            raise ValueError(f"seed and rbits apply to rounding='stochastic' only "
                             f"(rounding={mode!r})")
        return
    if (seed is None) == (rbits is None):
        raise ValueError("rounding='stochastic' needs exactly one source of random bits: "
                         "seed=<int> (counter-based Philox) or rbits=<unsigned int array>")
    if seed is not None:
        check_seed(seed)


def philox4x32(counter, key):
    """Philox4x32-10 of one 4-word ``counter`` and 2-word ``key``; returns 4 ints (the stream's
    one rule, ``lowprec.xstep.philox``, on NumPy)."""
    from .xstep import philox  # noqa: PLC0415
    words = philox(*[np.array([int(c) & 0xFFFFFFFF]) for c in counter],
                   *[int(k) & 0xFFFFFFFF for k in key])
    return tuple(int(w[0]) for w in words)


SMALL = 1 << 14     # below this many words, the NumPy stream (no compiled kernel)


def random_bits(seed, shape, wide=False, offset=0) -> np.ndarray:
    """The random words ``seed=`` gives an array of ``shape`` (elements ``offset`` onwards):
    uint32, or uint64 if ``wide``. Element i (flat C order) gets stream word S[i] (``wide``:
    S[2i] | S[2i+1] << 32), S[k] being word k % 4 of Philox4x32-10(key=(seed_lo, seed_hi),
    counter=(q_lo, q_hi, 0, 0)), q = k // 4 (module docstring)."""
    seed = check_seed(seed)
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
    n = int(np.prod(shape, dtype=np.int64))
    if n < SMALL:
        from .xstep import random_words  # noqa: PLC0415
        hi, lo = random_words(np, seed, n, wide, int(offset))
        out = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64) if wide else \
            lo.astype(np.uint32)
        return out.reshape(shape)
    from . import _kernels as K  # noqa: PLC0415
    out = np.empty(n, dtype=np.uint64 if wide else np.uint32)
    K.random_words(np.uint64(seed), np.int64(offset), n, bool(wide), out)
    return out.reshape(shape)
