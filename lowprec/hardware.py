"""Named matrix-unit presets: ``lp.hardware.preset(name)``, ``lp.hardware.presets()``.

NVIDIA tensor cores follow the fused dot-add model of Fasi, Higham, Mikaitis & Pranesh (PeerJ
CS 7:e330, 2021), with the per-architecture parameters of Khattak & Mikaitis (arXiv:2512.07004)
and MMA-Sim (arXiv:2511.10909), docs/matrix-units.md: each step takes N products (exact, exponents of
the input formats), aligns them and the running sum c to the largest exponent, truncates each
to F fraction bits, adds exactly and rounds once: toward zero into float32, nearest-even into
float16 (``-out-fp16``: c must then hold float16 values). Steps chain along K.

Checked bit for bit against every row of the real-GPU data in tests/data/tensor_cores
(V100 fp16; A100 fp16/bf16/tf32; H100 and B200 fp16/bf16/tf32/E4M3); the one deviation from
the published model table that the data forced: **B200 fp8** rounds the final sum to nearest-even (a
toward-zero model misses 1/3 of the rows) and c does not join the alignment (with F = 25; an
aligned c matches too once F >= 30: the data cannot tell the two apart).
AMD MI300 presets follow the description of MMA-Sim's CDNA3 model and are not checked
against hardware data here.
"""
from __future__ import annotations

from .accumulator import Accumulator, FusedAdder
from .formats import FloatFormat, format as _format

__all__ = ["preset", "presets", "resolve", "E8M13"]

E8M13 = FloatFormat(exp_bits=8, man_bits=13, name="e8m13")
_FP8 = ("float8_e4m3fn", "float8_e4m3fn")
_IN = {"fp16": ("float16", "float16"), "bf16": ("bfloat16", "bfloat16"),
       "tf32": ("tfloat32", "tfloat32"), "fp8": _FP8}


def _tc(name, inputs, n, F, doc, *, fmt="float32", rounding="toward_zero", align=True,
        addend="float32"):
    return Accumulator(fmt, rounding, fused=FusedAdder(n, F, align_addend=align),
                       input_formats=_IN[inputs], addend_format=addend, name=name), doc


def _table():
    t = {}
    nv = [  # (gpu, inputs, N, F, source)
        ("v100", "fp16", 4, 23, "V100 (Volta) HMMA: 4-term fused adder, 23 fraction bits"),
        ("a100", "fp16", 8, 24, "A100 (Ampere): 8-term, 24 bits"),
        ("a100", "bf16", 8, 24, "A100 (Ampere): 8-term, 24 bits"),
        ("a100", "tf32", 4, 24, "A100 (Ampere) tf32: 4-term, 24 bits"),
        ("ada", "fp16", 8, 24, "Ada / L40S: as Ampere (docs/matrix-units.md; no data here)"),
        ("ada", "bf16", 8, 24, "Ada / L40S: as Ampere (docs/matrix-units.md; no data here)"),
        ("ada", "tf32", 4, 24, "Ada / L40S tf32: 4-term, 24 bits (docs/matrix-units.md; no data here)"),
        ("h100", "fp16", 16, 25, "H100/H200 (Hopper): 16-term, 25 bits"),
        ("h100", "bf16", 16, 25, "H100/H200 (Hopper): 16-term, 25 bits"),
        ("h100", "tf32", 8, 25, "H100/H200 (Hopper) tf32: 8-term, 25 bits"),
        ("b200", "fp16", 16, 25, "B200 (Blackwell): 16-term, 25 bits"),
        ("b200", "bf16", 16, 25, "B200 (Blackwell): 16-term, 25 bits"),
        ("b200", "tf32", 8, 25, "B200 (Blackwell) tf32: 8-term, 25 bits"),
    ]
    src = " Source: Khattak & Mikaitis, arXiv:2512.07004; docs/matrix-units.md."
    for gpu, inp, n, F, doc in nv:
        name = f"{gpu}-{inp}"
        t[name] = _tc(name, inp, n, F, doc + "; float32 out, toward zero." + src)
        if inp == "fp16":
            t[name + "-out-fp16"] = _tc(name + "-out-fp16", inp, n, F,
                                        doc + "; float16 out, nearest-even, c in float16." + src,
                                        fmt="float16", rounding="nearest_even",
                                        addend="float16")
    t["ada-fp8"] = _tc("ada-fp8", "fp8", 16, 13, "Ada fp8: 16-term, 13 fraction bits, each "
                       "step's sum kept as e8m13 (toward zero). docs/matrix-units.md; no data here.",
                       fmt=E8M13)
    t["h100-fp8"] = _tc("h100-fp8", "fp8", 32, 13, "H100/H200 wgmma fp8: 32-term, 13 fraction "
                        "bits, each step's sum kept as e8m13 (toward zero): about 14 "
                        "significant bits." + src, fmt=E8M13)
    t["b200-fp8"] = _tc("b200-fp8", "fp8", 32, 25, "B200 fp8: 32 products fused with 25 "
                        "fraction bits below the largest product, c added exactly, one "
                        "nearest-even rounding to float32 (fitted to the real-GPU rows; see "
                        "the module docstring)." + src, rounding="nearest_even", align=False)
    t["b200-mxf8f6f4"] = (Accumulator(
        "float32", "toward_zero", fused=FusedAdder(32, 25), input_formats=_FP8,
        addend_format="float32", block_scales="product", name="b200-mxf8f6f4"),
        "B200 tcgen05 kind::mxf8f6f4: MX fp8/fp6/fp4 BlockTensors (E8M0 scales per 32 along "
        "K); each product's exponent is e_a + e_b plus both scale exponents, 32 products per "
        "step, 25 fraction bits, toward zero. docs/matrix-units.md (MMA-Sim); no hardware data here.")
    t["b200-mxf4nvf4"] = (Accumulator(
        "float32", "toward_zero", fused=FusedAdder(64, 35), input_formats=(
            "float4_e2m1fn", "float4_e2m1fn"), addend_format="float32", block_scales="group",
        group=16, name="b200-mxf4nvf4"),
        "B200 tcgen05 kind::mxf4nvf4: FP4 BlockTensors (UE4M3 scales per 16, or E8M0 per "
        "32); each group of 16 products summed exactly and multiplied by both scales, the 4 "
        "group terms of a 64-long step aligned with 35 fraction bits, toward zero; NVFP4 "
        "tensor scales in the epilogue. docs/matrix-units.md (MMA-Sim); no hardware data here.")
    h = t["h100-fp8"][0]
    t["deepseek-v3-fp8"] = (Accumulator(
        h.fmt, h.rounding, fused=h.fused, input_formats=h.input_formats,
        addend_format="float32", promote_every=128, promote_to=Accumulator("float32"),
        name="deepseek-v3-fp8"),
        "h100-fp8 steps; every 128 products (4 wgmma steps) the partial sum is added into a "
        "float32 accumulator (nearest-even) that starts at c. DeepSeek-V3 report, "
        "arXiv:2412.19437 §3.3.2.")
    amd = "AMD CDNA3 (MI300): groups of 8 products truncated to 24 fraction bits, c outside " \
          "the alignment, sum rounded to nearest-even float32. From docs/matrix-units.md (MMA-Sim " \
          "amd_*); not checked against hardware data; the floors of the product sum to 31 " \
          "fraction bits and of c to 24 bits that MMA-Sim describes are not modelled."
    for inp in ("fp16", "bf16", "fp8"):
        t[f"mi300-{inp}"] = _tc(f"mi300-{inp}", inp, 8, 24, amd + (
            " fp8: assumed to share the fp16 datapath." if inp == "fp8" else ""),
            rounding="nearest_even", align=False)
    t["exact"] = (Accumulator("float32", order="exact", name="exact"),
                  "The exact sum of all products and c, rounded once to nearest-even float32.")
    t["fp32-sequential"] = (Accumulator("float32", name="fp32-sequential"),
                            "c, then each product added in order with one nearest-even "
                            "float32 rounding per addition (a fused multiply-add per step).")
    return t


_PRESETS = _table()


def presets() -> dict:
    """Preset name -> one-line description with its source."""
    return {k: doc for k, (_, doc) in _PRESETS.items()}


def preset(name, inputs=None) -> Accumulator:
    """The ``Accumulator`` of a named matrix unit. ``inputs``: (format of A, format of B) to
    override the preset's input formats (e.g. ``("float8_e5m2", "float8_e4m3fn")`` for the fp8
    units, which take E4M3 or E5M2)."""
    if not isinstance(name, str) or name not in _PRESETS:
        import difflib  # noqa: PLC0415
        close = difflib.get_close_matches(str(name), list(_PRESETS), n=3)
        raise ValueError(f"unknown preset {name!r}" + (f"; did you mean {close}?" if close else
                                                       "") + f" All: {sorted(_PRESETS)}")
    acc = _PRESETS[name][0]
    if inputs is None:
        return acc
    ins = tuple(_format(f) for f in inputs)
    import dataclasses  # noqa: PLC0415
    return dataclasses.replace(acc, input_formats=ins)


def resolve(acc) -> Accumulator:
    """``acc`` itself if it is an ``lp.Accumulator``, else the preset of that name."""
    if isinstance(acc, Accumulator):
        return acc
    if isinstance(acc, str):
        return preset(acc)
    raise TypeError(f"acc must be an lp.Accumulator or a preset name (lp.hardware.presets()), "
                    f"got {acc!r}")
