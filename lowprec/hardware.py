"""Named matrix-unit presets: ``lp.hardware.preset(name)``, ``lp.hardware.presets()``, and the
same models per instruction: ``lp.hardware.instruction(arch, op, a, b, d)`` (PTX spelling,
e.g. ``instruction("sm_90", "wgmma", "e4m3", "e5m2", "f32")``), ``lp.hardware.instructions()``.

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

__all__ = ["preset", "presets", "resolve", "E8M13", "instruction", "instructions"]

E8M13 = FloatFormat(exp_bits=8, man_bits=13, name="e8m13")
_FP8 = ("float8_e4m3fn", "float8_e4m3fn")
_IN = {"fp16": ("float16", "float16"), "bf16": ("bfloat16", "bfloat16"),
       "tf32": ("tfloat32", "tfloat32"), "fp8": _FP8}


def _tc(name, inputs, n, F, doc, *, fmt="float32", rounding="toward_zero", align=True,
        addend="float32"):
    return Accumulator(fmt, rounding, fused=FusedAdder(n, F, align_addend=align),
                       input_formats=_IN[inputs], addend_format=addend, name=name), doc


# How NVIDIA units return special results (MMA-Sim ``ldexp_and_normalize`` / ``t_fdpa``):
# every NaN all ones, a zero +0; a truncated float32 result past the largest value is Inf.
_NV_SPECIALS = dict(nan="all_ones", positive_zero=True)
_NV_F32_OUT = dict(_NV_SPECIALS, overflow="inf_always")


def _named(acc, name):
    import dataclasses  # noqa: PLC0415
    return dataclasses.replace(acc, name=name)


def _table():
    t = {}
    nv = [  # (gpu, inputs, PTX type, arch, instruction, source)
        ("v100", "fp16", "f16", "sm_70", "mma.sync", "V100 (Volta) HMMA: 4-term fused adder, 23 fraction bits"),
        ("a100", "fp16", "f16", "sm_80", "mma.sync", "A100 (Ampere): 8-term, 24 bits"),
        ("a100", "bf16", "bf16", "sm_80", "mma.sync", "A100 (Ampere): 8-term, 24 bits"),
        ("a100", "tf32", "tf32", "sm_80", "mma.sync", "A100 (Ampere) tf32: 4-term, 24 bits"),
        ("ada", "fp16", "f16", "sm_89", "mma.sync", "Ada / L40S: as Ampere (MMA-Sim; no GPU data here)"),
        ("ada", "bf16", "bf16", "sm_89", "mma.sync", "Ada / L40S: as Ampere (MMA-Sim; no GPU data here)"),
        ("ada", "tf32", "tf32", "sm_89", "mma.sync", "Ada / L40S tf32: 4-term, 24 bits (MMA-Sim; no GPU data here)"),
        ("ada", "fp8", "e4m3", "sm_89", "mma.sync", "Ada fp8: 16-term, 13 fraction bits, each step's sum kept as e8m13 (toward zero) (MMA-Sim; no GPU data here)"),
        ("h100", "fp16", "f16", "sm_90", "wgmma", "H100/H200 (Hopper) wgmma: 16-term, 25 bits"),
        ("h100", "bf16", "bf16", "sm_90", "wgmma", "H100/H200 (Hopper) wgmma: 16-term, 25 bits"),
        ("h100", "tf32", "tf32", "sm_90", "wgmma", "H100/H200 (Hopper) wgmma tf32: 8-term, 25 bits"),
        ("h100", "fp8", "e4m3", "sm_90", "wgmma", "H100/H200 wgmma fp8: 32-term, 13 fraction bits, each step's sum kept as e8m13 (toward zero): about 14 significant bits"),
        ("b200", "fp16", "f16", "sm_100", "tcgen05.mma", "B200 (Blackwell) tcgen05.mma: 16-term, 25 bits"),
        ("b200", "bf16", "bf16", "sm_100", "tcgen05.mma", "B200 (Blackwell) tcgen05.mma: 16-term, 25 bits"),
        ("b200", "tf32", "tf32", "sm_100", "tcgen05.mma", "B200 (Blackwell) tcgen05.mma tf32: 8-term, 25 bits"),
        ("b200", "fp8-tcgen05", "e4m3", "sm_100", "tcgen05.mma", "B200 tcgen05.mma kind::f8f6f4 as MMA-Sim models it: 32-term, 25 bits, c aligned, toward zero (b200-fp8 is the path the published B200 rows were measured on)"),
        ("rtx5090", "fp8", "e4m3", "sm_120", "mma.sync", "RTX Blackwell (sm_120) mma fp8: 32-term, 25 bits (MMA-Sim; no GPU data here)"),
        ("rtx5090", "fp4", "e2m1", "sm_120", "mma.sync", "RTX Blackwell (sm_120) mma kind::f8f6f4 with fp4 elements: 32-term, 25 bits (MMA-Sim; no GPU data here)"),
    ]
    src = " Source: Khattak & Mikaitis, arXiv:2512.07004; MMA-Sim, arXiv:2511.10909; docs/matrix-units.md."
    for gpu, inp, ptx, arch, op, doc in nv:
        name = f"{gpu}-{inp}"
        t[name] = (_named(instruction(arch, op, ptx, ptx, "f32"), name),
                   doc + f"; float32 out. = instruction({arch!r}, {op!r}, {ptx!r}, {ptx!r}, "
                   "'f32')." + src)
        if inp == "fp16":
            t[name + "-out-fp16"] = (
                _named(instruction(arch, op, ptx, ptx, "f16"), name + "-out-fp16"),
                doc + f"; float16 out, nearest-even, c in float16. = instruction({arch!r}, "
                f"{op!r}, 'f16', 'f16', 'f16')." + src)
    t["b200-fp8"] = _tc("b200-fp8", "fp8", 32, 25, "B200 fp8: 32 products fused with 25 "
                        "fraction bits below the largest product, c added exactly, one "
                        "nearest-even rounding to float32 (fitted to the real-GPU rows; see "
                        "the module docstring)." + src, rounding="nearest_even", align=False)
    t["b200-mxf8f6f4"] = (Accumulator(
        "float32", "toward_zero", fused=FusedAdder(32, 25, zero_exponent=-133),
        input_formats=_FP8, addend_format="float32", block_scales="product",
        name="b200-mxf8f6f4", **_NV_F32_OUT),
        "B200 tcgen05 kind::mxf8f6f4: MX fp8/fp6/fp4 BlockTensors (E8M0 scales per 32 along "
        "K); each product's exponent is e_a + e_b plus both scale exponents, 32 products per "
        "step, 25 fraction bits, toward zero. docs/matrix-units.md (MMA-Sim); no hardware data here.")
    t["b200-mxf4nvf4"] = (Accumulator(
        "float32", "toward_zero", fused=FusedAdder(64, 35), input_formats=(
            "float4_e2m1fn", "float4_e2m1fn"), addend_format="float32", block_scales="group",
        group=16, name="b200-mxf4nvf4", **_NV_F32_OUT),
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
    amd = ("AMD CDNA3 (MI300) v_mfma as MMA-Sim models it: steps of {n} products{split} truncated "
           "to 24 fraction bits, c joined through floors (the products' sum to 32 fraction bits "
           "below the joint largest exponent, c to 24, their sum to 31), nearest-even float32. "
           "= instruction('gfx942', 'v_mfma', {t!r}, {t!r}, 'f32'). Source: MMA-Sim, "
           "arXiv:2511.10909; docs/matrix-units.md. Checked against MMA-Sim, not against GPU data.")
    for inp, ptx in (("fp16", "f16"), ("bf16", "bf16"), ("xf32", "xf32"), ("fp8", "fp8")):
        acc = instruction("gfx942", "v_mfma", ptx, ptx, "f32")
        t[f"mi300-{inp}"] = (_named(acc, f"mi300-{inp}"), amd.format(
            n=acc.fused.n, t=ptx, split=", even and odd positions summed apart,"
            if acc.fused.split == 2 else "") + (
            " Inputs E4M3FNUZ (fp8) or E5M2FNUZ (bf8: pass inputs=)." if ptx == "fp8" else ""))
    t["exact"] = (Accumulator("float32", order="exact", name="exact"),
                  "The exact sum of all products and c, rounded once to nearest-even float32.")
    t["fp32-sequential"] = (Accumulator("float32", name="fp32-sequential"),
                            "c, then each product added in order with one nearest-even "
                            "float32 rounding per addition (a fused multiply-add per step).")
    return t




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
    if isinstance(inputs, str) or not hasattr(inputs, "__len__") or len(inputs) != 2:
        raise ValueError(f"inputs={inputs!r} is not allowed: a pair (format of A, format of "
                         f"B), e.g. inputs=('float8_e5m2', 'float8_e4m3fn')")
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


# ---------------------------------------------------------------------------------------------
# Instructions (docs/matrix-units.md, "Per instruction"). The rule of every NVIDIA instruction
# below is the fused dot-add above with parameters that depend on the architecture, the
# instruction and the types (MMA-Sim 2.1.1, arXiv:2511.10909: ``nv_ptx/sim.py``; checked against
# the ``mmasim`` package in tests/test_mmasim.py): F fraction bits kept below the largest
# exponent, N = L / (bytes of one A element) products per step, c in the alignment; float32
# output toward zero (E8M13 where F = 13), float16 output nearest-even with c in float16.

NV_ARCHS = {"sm_70": "Volta", "sm_75": "Turing", "sm_80": "Ampere", "sm_86": "Ampere",
            "sm_89": "Ada", "sm_90": "Hopper", "sm_100": "Blackwell",
            "sm_120": "RTX Blackwell"}
_F_BITS = {"sm_70": 23, "sm_75": 24, "sm_80": 24, "sm_86": 24, "sm_89": 24, "sm_90": 25,
           "sm_100": 25, "sm_120": 25}
# MMA-Sim's ``e_zero``: the exponent a zero product (or zero c) takes in the alignment
_E_ZERO = {"f32": {"sm_70": -131, "sm_75": -132, "sm_80": -132, "sm_86": -132, "sm_89": -132,
                   "sm_90": -133, "sm_100": -133, "sm_120": -133},
           "f16": {"sm_70": -19, "sm_75": -20, "sm_80": -20, "sm_86": -20, "sm_89": -20,
                   "sm_90": -21, "sm_100": -21, "sm_120": -21}}
_MMA_STEP_BYTES = {"sm_70": 8, "sm_75": 16, "sm_80": 16, "sm_86": 16, "sm_89": 16,
                   "sm_90": 32, "sm_100": 32, "sm_120": 32}
PTX_TYPES = {"f64": "float64", "f32": "float32", "tf32": "tfloat32", "f16": "float16",
             "bf16": "bfloat16", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2",
             "e3m2": "float6_e3m2fn", "e2m3": "float6_e2m3fn", "e2m1": "float4_e2m1fn"}
_BYTES = {"f64": 8, "tf32": 4, "f16": 2, "bf16": 2, "e4m3": 1, "e5m2": 1, "e3m2": 1, "e2m3": 1,
          "e2m1": 1}           # fp6 / fp4 occupy a byte each in the operand registers
_FP8 = ("e4m3", "e5m2")
_F8F6F4 = ("e4m3", "e5m2", "e3m2", "e2m3", "e2m1")

# (arch, op) -> {input type: allowed output types}; a and b of one instruction share a family
_NV_TYPES = {
    ("sm_70", "mma.sync"): {"f16": ("f32", "f16")},
    ("sm_75", "mma.sync"): {"f16": ("f32", "f16")},
    ("sm_80", "mma.sync"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",)},
    ("sm_89", "mma.sync"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",),
                            **{t: ("f32", "f16") for t in _FP8}},
    ("sm_90", "mma.sync"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",)},
    ("sm_90", "wgmma"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",),
                         **{t: ("f32", "f16") for t in _FP8}},
    ("sm_100", "mma.sync"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",)},
    ("sm_100", "tcgen05.mma"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",),
                                **{t: ("f32", "f16") for t in _F8F6F4}},
    ("sm_120", "mma.sync"): {"f16": ("f32", "f16"), "bf16": ("f32",), "tf32": ("f32",),
                             **{t: ("f32", "f16") for t in _F8F6F4}},
}
for _key in (("sm_80", "mma.sync"), ("sm_89", "mma.sync"), ("sm_90", "mma.sync"),
             ("sm_100", "mma.sync"), ("sm_120", "mma.sync")):
    _NV_TYPES[_key]["f64"] = ("f64",)       # the f64 mma: a chain of float64 FMAs
_NV_TYPES[("sm_86", "mma.sync")] = _NV_TYPES[("sm_80", "mma.sync")]
_FAMILY = {"f64": "f64", "f16": "f16", "bf16": "bf16", "tf32": "tf32",
           **{t: "f8f6f4" for t in _F8F6F4}}


def _fma_chain(t, name):
    """The float64 / float32 matrix instructions as MMA-Sim models them (``fma.MMA_FMA``):
    d = c, then d = fma(a_k, b_k, d) for k = 0, 1, ... (one IEEE rounding per product)."""
    f = {"f64": "float64", "f32": "float32"}[t]
    return Accumulator(f, "nearest_even", input_formats=(f, f), addend_format=f, name=name)


# AMD ``v_mfma``, as MMA-Sim models it (``amd/sim.py``). f32 and f64 inputs: a chain of
# FMAs (every CDNA). CDNA1 (MI100, gfx908) f16 / bf16: the exact sum of 4 (f16) or 2 (bf16)
# products and c, rounded once to nearest-even float32 (``order="exact", block=``). CDNA2
# (MI200, gfx90a) f16 / bf16 / bf16_1k: float32 products and float32 sums of pairs (2 for
# bf16, 4 for f16 and bf16_1k), every subnormal flushed (``ftz=True``). CDNA3
# (MI300, gfx942) f16 / bf16 / xf32 / fp8 / bf8: steps of 8 products (4 for xf32, 16 for
# fp8/bf8 with even and odd positions summed apart), F = 24, and the floored join with c
# (``FusedAdder.sum_bits`` = 31), rounded to nearest-even float32.
AMD_ARCHS = {"gfx908": "CDNA1", "gfx90a": "CDNA2", "gfx942": "CDNA3"}
AMD_TYPES = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
             "bf16_1k": "bfloat16", "xf32": "tfloat32", "fp8": "float8_e4m3fnuz",
             "bf8": "float8_e5m2fnuz"}
_AMD_ARCH_TYPES = {"gfx908": ("f32", "f16", "bf16"),
                   "gfx90a": ("f64", "f32", "f16", "bf16", "bf16_1k"),
                   "gfx942": ("f64", "f32", "f16", "bf16", "xf32", "fp8", "bf8")}
_AMD_STEP = {"f16": 8, "bf16": 8, "xf32": 4, "fp8": 16, "bf8": 16}
_CDNA1_STEP = {"f16": 4, "bf16": 2}


def _amd(arch, op, a, b, d):
    _check_choice("op", op, ["v_mfma"], f" on {arch}")
    _check_choice("a", a, _AMD_ARCH_TYPES[arch], f" for {arch} {op}")
    fp8 = ("fp8", "bf8")
    _check_choice("b", b, fp8 if a in fp8 else (a,), f" with a={a!r} for {arch} {op}")
    _check_choice("d", d, ["f64"] if a == "f64" else ["f32"], f" for {arch} {op}")
    name = f"{arch} {op} {d}.{a}.{b}"
    if a in ("f32", "f64"):
        return _fma_chain(a, name)
    if arch == "gfx90a":        # CDNA2: float32 products and sums, flushed, in pairs
        return Accumulator("float32", "nearest_even", order="blocked_pairwise",
                           block=2 if a == "bf16" else 4, products="float32", ftz=True,
                           input_formats=(AMD_TYPES[a], AMD_TYPES[b]), addend_format="float32",
                           name=name)
    if arch == "gfx908":
        return Accumulator("float32", "nearest_even", order="exact", block=_CDNA1_STEP[a],
                           input_formats=(AMD_TYPES[a], AMD_TYPES[b]), addend_format="float32",
                           positive_zero=True, name=name)
    fz = FusedAdder(_AMD_STEP[a], 24, align_addend=False, sum_bits=31,
                    split=2 if a in fp8 else 1, drop_small_addend=a in fp8,
                    inf_products=a not in fp8)
    return Accumulator("float32", "nearest_even", fused=fz,
                       input_formats=(AMD_TYPES[a], AMD_TYPES[b]), addend_format="float32",
                       nan="all_ones", name=name)


def _check_choice(name, value, allowed, where=""):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed{where}; choose one of "
                         f"{sorted(allowed)}")


def instruction(arch, op, a, b=None, d="f32") -> Accumulator:
    """The accumulator model of one NVIDIA matrix instruction, named as PTX names it:
    ``arch`` ("sm_70" ... "sm_120"), ``op`` ("mma.sync", "wgmma" on sm_90, "tcgen05.mma" on
    sm_100), the A and B element types (``a``, ``b``: "f16", "bf16", "tf32", "e4m3", "e5m2",
    "e3m2", "e2m3", "e2m1", and "f64" from sm_80 with ``d`` "f64": a chain of float64 fused
    multiply-adds; ``b`` defaults to ``a``) and the D / C type ``d`` ("f32" or "f16"). Every
    NaN result is 0x7FFFFFFF (0x7FFF) and a float32 result past the largest value is Inf
    (``nan="all_ones"``, ``overflow="inf_always"``). The block-scaled kinds are the presets
    ``b200-mxf8f6f4`` and ``b200-mxf4nvf4``. The parameters follow MMA-Sim (arXiv:2511.10909) and the preset table
    (docs/matrix-units.md): F fraction bits by architecture (23 Volta, 24 Turing to Ada, 25
    Hopper on), N = (8, 16 or 32 bytes) / (bytes of an A element) products per step, Ada's
    ``mma`` and Hopper's ``wgmma`` fp8 keep F = 13 (E8M13 toward zero for float32 D). Raises ValueError naming what the architecture
    offers when the combination does not exist.

    AMD: ``arch`` "gfx908" (CDNA1), "gfx90a" (CDNA2) or "gfx942" (CDNA3, MI300), ``op``
    "v_mfma", ``a`` / ``b`` "f32" and "f64" (FMA chains; f64 from CDNA2, ``d`` "f64"), "f16",
    "bf16" (CDNA1: exact sums of 4 / 2 products; CDNA2: see below; CDNA3: the floored join), "xf32" or the fnuz
    fp8 types "fp8" (E4M3FNUZ) and "bf8" (E5M2FNUZ) on CDNA3 (``FusedAdder.sum_bits``), ``d``
    "f32". CDNA2 "f16", "bf16" (``v_mfma_f32_*bf16``) and "bf16_1k": float32 products and
    pairwise float32 sums with subnormals flushed to zero (``ftz=True``)."""
    b = a if b is None else b
    if arch in AMD_ARCHS:
        return _amd(arch, op, a, b, d)
    _check_choice("arch", arch, {**NV_ARCHS, **AMD_ARCHS})
    ops = sorted({o for (ar, o) in _NV_TYPES if ar == arch})
    _check_choice("op", op, ops, f" on {arch}")
    table = _NV_TYPES[(arch, op)]
    _check_choice("a", a, table, f" for {arch} {op}")
    _check_choice("b", b, [t for t in table if _FAMILY[t] == _FAMILY[a]],
                  f" with a={a!r} for {arch} {op}")
    _check_choice("d", d, table[a], f" for {arch} {op} with {a} inputs")
    name = f"{arch} {op} {d}.{a}.{b}"
    if a == "f64":
        return _fma_chain("f64", name)
    ins = (PTX_TYPES[a], PTX_TYPES[b])
    step = 32 if op != "mma.sync" else _MMA_STEP_BYTES[arch]
    n = step // _BYTES[a]
    F = _F_BITS[arch]
    narrow = a in _FP8 and ((arch, op) in (("sm_89", "mma.sync"), ("sm_90", "wgmma")))
    if narrow:
        F = 13
    fz = FusedAdder(n, F, zero_exponent=_E_ZERO[d][arch])
    if d == "f16":
        return Accumulator("float16", "nearest_even", fused=fz,
                           input_formats=ins, addend_format="float16", **_NV_SPECIALS,
                           name=name)
    return Accumulator(E8M13 if narrow else "float32", "toward_zero", fused=fz,
                       input_formats=ins, addend_format="float32", name=name,
                       **_NV_F32_OUT)


def instructions() -> list:
    """Every (arch, op, a, b, d) that ``instruction`` models."""
    out = []
    for (arch, op), table in _NV_TYPES.items():
        for a, ds in table.items():
            for b in table:
                if _FAMILY[b] == _FAMILY[a]:
                    out.extend((arch, op, a, b, d) for d in ds)
    for arch, types in _AMD_ARCH_TYPES.items():
        for a in types:
            for b in (("fp8", "bf8") if a in ("fp8", "bf8") else (a,)):
                out.append((arch, "v_mfma", a, b, "f64" if a == "f64" else "f32"))
    return out


_PRESETS = _table()
