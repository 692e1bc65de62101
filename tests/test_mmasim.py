"""Every instruction ``lp.hardware.instruction`` models, against MMA-Sim 2.1.1 (the ``mmasim``
package, microsoft/MMA-Sim, arXiv:2511.10909: bit-accurate simulators of NVIDIA mma / wgmma /
tcgen05.mma and AMD v_mfma that its authors validated on the GPUs; it shares no code with
lowprec). Random
element codes (every finite value, subnormals and signed zeros included), a non-zero c with
spread exponents, one instruction (K = one step) and a chain of four along K; and values
within a few binades, where the alignment's truncation decides low bits. D compared as bits."""
import zlib

import numpy as np
import pytest

import mmasim.amd as amd
import mmasim.nv_ptx as nv
import torch
from mmasim.nv_ptx import isa_mma

import helpers
import lowprec as lp

MMASIM_ARCH = {"sm_70": "Volta", "sm_75": "Turing", "sm_80": "Ampere", "sm_86": "Ampere",
               "sm_89": "Ada Lovelace", "sm_90": "Hopper", "sm_100": "Blackwell",
               "sm_120": "RTX Blackwell"}
TORCH = {"f64": torch.float64, "f32": torch.float32, "tf32": torch.float32, "xf32": torch.float32,
         "f16": torch.float16, "bf16": torch.bfloat16, "bf16_1k": torch.bfloat16,
         "e4m3": torch.float8_e4m3fn,
         "e5m2": torch.float8_e5m2, "fp8": torch.float8_e4m3fnuz, "bf8": torch.float8_e5m2fnuz}
TYPES = {**lp.hardware.PTX_TYPES, **lp.hardware.AMD_TYPES}
AMD_SHAPE = {"f16": "32x32x8_f16", "bf16": "32x32x8_bf16", "xf32": "32x32x4_xf32",
             "f32": "32x32x2_f32", "f64": "16x16x4_f64"}
AMD_OLD = {"gfx908": ("CDNA1", {"f32": "f32_32x32x2f32", "f16": "f32_32x32x8f16",
                                "bf16": "f32_32x32x4bf16"}),
           "gfx90a": ("CDNA2", {"f32": "f32_32x32x2f32", "f64": "f64_16x16x4f64",
                                "f16": "f32_32x32x8f16", "bf16": "f32_32x32x4bf16",
                                "bf16_1k": "f32_32x32x8bf16_1k"})}
SUB_BYTE_SHIFT = {"e3m2": 0, "e2m3": 0, "e2m1": 2}   # MMA-Sim: fp6 in bits 5:0, fp4 in 5:2
K_STEP = {"tf32": 8, "f16": 16, "bf16": 16}


def mmasim_op(arch, op, a, b, d):
    """The MMA-Sim object of the same instruction (a shape from its tables)."""
    if arch in AMD_OLD:
        return amd.MFMA(AMD_OLD[arch][0], AMD_OLD[arch][1][a])
    if arch == "gfx942":
        return amd.MFMA("CDNA3", f"{d}_" + AMD_SHAPE.get(a, f"16x16x32_{a}_{b}"))
    name = MMASIM_ARCH[arch]
    if op == "wgmma":
        return nv.WGMMA(name, f"m64n8k{K_STEP.get(a, 32)}.{d}.{a}.{b}")
    if op == "tcgen05.mma":
        kind = {"f16": "f16", "bf16": "f16", "tf32": "tf32"}.get(a, "f8f6f4")
        return nv.TCGen05MMA(name, f"m64n8k{K_STEP.get(a, 32)}.kind::{kind}.{d}.{a}.{b}")
    shapes = [s for s in isa_mma.mma_shape_and_type[name] if s.endswith(f".{d}.{a}.{b}.{d}")]
    if arch != "sm_70":                      # m8n8k4 on later GPUs runs Volta's datapath
        shapes = [s for s in shapes if not s.startswith("m8n8k4")] or shapes
    return nv.MMA(name, shapes[0])


def operand(rng, t, shape, wide):
    """(lowprec values as float64, the MMA-Sim tensor) of type t: random finite codes
    (``wide``), else normal-distributed values rounded to t (products within a few binades,
    where the alignment's truncation decides low bits)."""
    fmt = lp.format(TYPES[t])
    if wide and fmt.exp_bits > 8:            # float64: full significands, exponents +-40
        v = np.ldexp(rng.uniform(-2, 2, shape), rng.integers(-40, 40, shape))
        v.flat[:2] = [5e-324, -2.0**-1060]     # subnormals
    elif wide:
        codes = rng.integers(0, 2**fmt.bits, size=shape, dtype=np.uint64)
        v = lp.decode(codes.astype(fmt.code_dtype), fmt, dtype=np.float64)
        v = np.where(np.isfinite(v), v, 0.0)
        if fmt.emax > 20:                    # wide formats: exponents within +-40 (no overflow)
            v = np.where(np.abs(v) > 2.0**40, 0.0, v)
    else:
        v = lp.round(rng.standard_normal(shape) * min(fmt.max / 8, 4.0), fmt, "nearest_even",
                     "saturate", dtype=np.float64)
    return v, as_sim(v, t)


def as_sim(v, t):
    """Values of type t as MMA-Sim takes them (fp6 / fp4 as shifted codes in uint8)."""
    if t in SUB_BYTE_SHIFT:
        c = lp.encode(v, lp.format(TYPES[t])).astype(np.int64) << SUB_BYTE_SHIFT[t]
        return torch.tensor(c, dtype=torch.uint8)
    return torch.tensor(v).to(TORCH[t])


def addend(rng, d, shape):
    fmt = lp.format(TYPES[d])
    e = rng.integers(-24 if d == "f16" else -40, 8, size=shape)
    v = lp.round(np.ldexp(rng.standard_normal(shape), e), fmt, dtype=np.float64)
    return v, torch.tensor(v).to(TORCH[d])


def bits(v, d):
    return ({"f16": np.uint16, "f32": np.uint32, "f64": np.uint64}[d],
            {"f16": np.float16, "f32": np.float32, "f64": np.float64}[d])


def compare(arch, op, a, b, d, seed, M=8, N=8):
    acc = lp.hardware.instruction(arch, op, a, b, d)
    sim = mmasim_op(arch, op, a, b, d)
    k = sim.k
    rng = np.random.default_rng(seed)
    for chain, wide in ((1, True), (4, True), (1, False), (4, False)):
        A, tA = operand(rng, a, (M, k * chain), wide)
        B, tB = operand(rng, b, (k * chain, N), wide)
        C, tC = addend(rng, d, (M, N))
        want = sim(tA, tB, tC).numpy()
        ut, ft = bits(want, d)
        got = helpers.matmul_both_paths(A, B, acc, c=C, dtype=ft)
        w, g = want.view(ut), got.view(ut)
        bad = np.argwhere(w != g)
        assert not bad.size, (f"{acc.name}, K={k * chain}: {len(bad)} of {w.size} differ, "
                              f"first at {tuple(bad[0])}: MMA-Sim {want[tuple(bad[0])]!r}, "
                              f"lowprec {got[tuple(bad[0])]!r}")


def with_specials(A, B, C, a, b, d):
    """NaN, +-Inf, Inf - Inf, 0 * Inf, overflow and an all -0 sum planted in rows 0..6 of
    (A, B, C), as far as the formats have them (MMA-Sim: every NaN result is all ones but the
    sign; a float32 result past the largest value is Inf even when truncated; NVIDIA's zero
    results are +0)."""
    fa, fb, fd = (lp.format(TYPES[t]) for t in (a, b, d))
    A, B, C = A.copy(), B.copy(), C.copy()
    if fa.has_nan:
        A[0, 0] = np.nan
    if fa.has_inf:
        A[1, 0], A[2, 0], A[2, 1] = np.inf, np.inf, -np.inf
        B[0, 3] = 0.0                       # 0 * Inf in column 3 of row 1
    if fd.has_inf:
        C[3, 3], C[4, 4] = np.inf, -np.inf
    A[5], B[:, 5] = float(fa.max), float(fb.max)   # the largest products
    C[5, 5] = float(fd.max)
    if fa.has_neg_zero:                             # row 6: -0 products and c = -0
        A[6], B[:, 6], C[6, 6] = -0.0, 1.0, -0.0
    if fd.has_nan:
        C[4, 0] = np.nan
    return A, B, C


INSTRUCTIONS = lp.hardware.instructions()


@pytest.mark.parametrize("arch, op, a, b, d", INSTRUCTIONS,
                         ids=[" ".join(i) for i in INSTRUCTIONS])
def test_instruction_specials_equal_mmasim(arch, op, a, b, d):
    acc = lp.hardware.instruction(arch, op, a, b, d)
    sim = mmasim_op(arch, op, a, b, d)
    rng = np.random.default_rng(7)
    A, _ = operand(rng, a, (8, sim.k * 2), False)
    B, _ = operand(rng, b, (sim.k * 2, 8), False)
    C, _ = addend(rng, d, (8, 8))
    A, B, C = with_specials(A, B, C, a, b, d)
    want = sim(as_sim(A, a), as_sim(B, b), torch.tensor(C).to(TORCH[d])).numpy()
    ut, ft = bits(want, d)
    got = helpers.matmul_both_paths(A, B, acc, c=C, dtype=ft)
    differ = want.view(ut) != got.view(ut)
    if acc.nan == "quiet":     # MMA-Sim's FMA and exact-sum models keep the host CPU's NaN bits
        differ &= ~(np.isnan(want) & np.isnan(got))
    bad = np.argwhere(differ)
    assert not bad.size, (f"{acc.name}: {len(bad)} differ, first at {tuple(bad[0])}: MMA-Sim "
                          f"{hex(want.view(ut)[tuple(bad[0])])}, lowprec "
                          f"{hex(got.view(ut)[tuple(bad[0])])}")


@pytest.mark.parametrize("arch, op, a, b, d", INSTRUCTIONS,
                         ids=[" ".join(i) for i in INSTRUCTIONS])
def test_instruction_equals_mmasim(arch, op, a, b, d):
    compare(arch, op, a, b, d, seed=zlib.crc32(" ".join((arch, op, a, b, d)).encode()))


# Block-scaled FP4 (tcgen05.mma kind::mxf4nvf4 / kind::mxf4, one instruction is K = 64):
# lp.matmul of two BlockTensors with the b200-mxf4nvf4 preset (block_scales="group").
BLOCK_SCALED = [("mxf4nvf4", 16, "ue4m3"), ("mxf4nvf4", 16, "ue8m0"), ("mxf4nvf4", 32, "ue8m0"),
                ("mxf4", 32, "ue8m0")]


def fp4_block_operands(rng, M, K, N, blk, stype, sparse):
    """Element codes (zeros in whole groups where ``sparse``) and scale codes of A (M, K) and
    B (K, N) as lowprec BlockTensors and as MMA-Sim's packed uint8 / float8 tensors."""
    bf = lp.BlockFormat("float4_e2m1fn", blk, "ue4m3" if stype == "ue4m3" else
                        "float8_e8m0fnu", "nvfp4" if stype == "ue4m3" else "floor")
    ca = rng.integers(0, 16, (M, K)).astype(np.uint8)
    cb = rng.integers(0, 16, (K, N)).astype(np.uint8)
    if sparse:                       # whole 16-groups of zeros, and single zeros
        ca.reshape(M, K // 16, 16)[rng.random((M, K // 16)) < 0.3] = 0
        cb.reshape(K // 16, 16, N).transpose(0, 2, 1)[rng.random((K // 16, N)) < 0.3] = 8
    lo, hi = (0, 0x7F) if stype == "ue4m3" else (0x50, 0xA0)
    sa = rng.integers(lo, hi, (M, K // blk)).astype(np.uint8)
    sb = rng.integers(lo, hi, (K // blk, N)).astype(np.uint8)
    A = lp.BlockTensor(ca.reshape(M, K // blk, blk), sa, np.float32(1), (M, K), 1, bf)
    B = lp.BlockTensor(np.ascontiguousarray(cb.T).reshape(N, K // blk, blk),
                       np.ascontiguousarray(sb.T), np.float32(1), (K, N), 0, bf)
    tdt = torch.float8_e4m3fn if stype == "ue4m3" else torch.float8_e8m0fnu
    packed_a = torch.tensor((ca[:, 0::2] << 4) | ca[:, 1::2])          # first of a pair high
    packed_b = torch.tensor((cb[0::2, :] << 4) | cb[1::2, :])
    return A, B, packed_a, packed_b, torch.tensor(sa).view(tdt), torch.tensor(sb).view(tdt)


@pytest.mark.parametrize("unit", ["sm_100 tcgen05.mma", "sm_120 mma.sync"])
@pytest.mark.parametrize("kind, blk, stype", BLOCK_SCALED)
def test_block_scaled_fp4_equals_mmasim(kind, blk, stype, unit):
    """The b200-mxf4nvf4 preset is also RTX Blackwell's block-scaled ``mma`` (MMA-Sim gives
    both the same rule)."""
    if unit.startswith("sm_120"):
        sim = nv.MMABlockScale("RTX Blackwell",
                               f"m16n8k64.kind::{kind}.block{blk}.f32.e2m1.e2m1.f32.{stype}")
    else:
        sim = nv.TCGen05MMABlockScale(
            "Blackwell", f"m128n8k64.kind::{kind}.block{blk}.f32.e2m1.e2m1.{stype}")
    rng = np.random.default_rng(zlib.crc32(f"{kind}{blk}{stype}".encode()))
    for chain, sparse, c_zero in ((1, False, False), (4, False, False), (4, True, False),
                                  (2, True, True)):
        A, B, pa, pb, alpha, beta = fp4_block_operands(rng, 8, 64 * chain, 8, blk, stype,
                                                       sparse)
        C, tC = addend(rng, "f32", (8, 8))
        if c_zero:
            C, tC = np.zeros_like(C), torch.zeros_like(tC)
        want = sim(pa, pb, tC, alpha, beta).numpy()
        got = helpers.matmul_both_paths(A, B, "b200-mxf4nvf4", c=C, dtype=np.float32)
        bad = np.argwhere(want.view(np.uint32) != got.view(np.uint32))
        assert not bad.size, (f"{kind} block{blk} {stype}, K={64 * chain}, sparse={sparse}: "
                              f"{len(bad)} of 64 differ, first {want[tuple(bad[0])]!r} vs "
                              f"{got[tuple(bad[0])]!r}")


F16_OUT = [i for i in INSTRUCTIONS if i[4] == "f16" and i[2] == "f16"]


@pytest.mark.parametrize("arch, op, a, b, d", F16_OUT, ids=[" ".join(i) for i in F16_OUT])
def test_zero_products_align_at_the_units_zero_exponent(arch, op, a, b, d):
    """A zero product takes part in the alignment with MMA-Sim's e_zero (-19 / -20 / -21 for
    float16 D), so a 2^-48 product next to a 2^-25 tie is cut away and the tie rounds to even
    (0); aligned on the non-zero products alone, it would round up to 2^-24."""
    acc = lp.hardware.instruction(arch, op, a, b, d)
    sim = mmasim_op(arch, op, a, b, d)
    A, B, C = np.zeros((2, sim.k)), np.zeros((sim.k, 2)), np.zeros((2, 2))
    A[:, 1], B[1, :] = 2.0**-12, 2.0**-13          # 2^-25: half the float16 quantum
    A[:, 2], B[2, :] = 2.0**-24, 2.0**-24          # 2^-48
    A[1, 0], B[0, :] = 2.0**-20, 2.0**-20          # row 1: no zero product at position 0
    A[1, 3:], B[3:, :] = 2.0**-14, 2.0**-14
    want = sim(as_sim(A, a), as_sim(B, b), torch.tensor(C).to(torch.float16)).numpy()
    got = helpers.matmul_both_paths(A, B, acc, c=C, dtype=np.float16)
    assert np.array_equal(want.view(np.uint16), got.view(np.uint16)), (want, got)
    assert want[0, 0] == 0.0


MXF8F6F4 = [("e4m3", "e4m3"), ("e5m2", "e4m3"), ("e3m2", "e2m3"), ("e2m1", "e2m1"),
            ("e2m1", "e5m2")]


@pytest.mark.parametrize("unit", ["sm_100 tcgen05.mma", "sm_120 mma.sync"])
@pytest.mark.parametrize("a, b", MXF8F6F4)
def test_block_scaled_mxf8f6f4_equals_mmasim(a, b, unit):
    """tcgen05.mma kind::mxf8f6f4 (E8M0 scales per 32 along K), and RTX Blackwell's
    block-scaled mma, as the b200-mxf8f6f4 preset on BlockTensors: each product's exponent
    carries both scales' exponents."""
    if unit.startswith("sm_120"):
        sim = nv.MMABlockScale("RTX Blackwell",
                               f"m16n8k32.kind::mxf8f6f4.block32.f32.{a}.{b}.f32.ue8m0")
    else:
        sim = nv.TCGen05MMABlockScale("Blackwell", f"m128n8k32.kind::mxf8f6f4.block32.f32.{a}."
                                      f"{b}.ue8m0")
    rng = np.random.default_rng(zlib.crc32(f"mxf8f6f4 {a} {b}".encode()))
    for chain in (1, 4):
        M, K, N = 8, 32 * chain, 8
        ops = []
        for t, shape in ((a, (M, K)), (b, (K, N))):
            fmt = lp.format(TYPES[t])
            codes = rng.integers(0, 2**fmt.bits, shape).astype(fmt.code_dtype)
            v = lp.decode(codes, fmt, dtype=np.float64)
            codes = np.where(np.isfinite(v), codes, 0).astype(fmt.code_dtype)
            ops.append((fmt, codes, lp.decode(codes, fmt, dtype=np.float64)))
        sa = rng.integers(0x70, 0x90, (M, K // 32)).astype(np.uint8)
        sb = rng.integers(0x70, 0x90, (K // 32, N)).astype(np.uint8)
        (fa, ca, va), (fb, cb, vb) = ops
        A = lp.BlockTensor(ca.reshape(M, K // 32, 32), sa, np.float32(1), (M, K), 1,
                           lp.BlockFormat(fa, 32, "float8_e8m0fnu", "floor"))
        B = lp.BlockTensor(np.ascontiguousarray(cb.T).reshape(N, K // 32, 32),
                           np.ascontiguousarray(sb.T), np.float32(1), (K, N), 0,
                           lp.BlockFormat(fb, 32, "float8_e8m0fnu", "floor"))
        C, tC = addend(rng, "f32", (M, N))
        for s in range(chain):       # MMA-Sim takes one block per call: chain the calls
            ks = slice(32 * s, 32 * s + 32)
            tC = sim(as_sim(va[:, ks], a), as_sim(vb[ks], b), tC,
                     torch.tensor(sa[:, s:s + 1]).view(torch.float8_e8m0fnu),
                     torch.tensor(sb[s:s + 1]).view(torch.float8_e8m0fnu))
        want = tC.numpy()
        got = helpers.matmul_both_paths(A, B, "b200-mxf8f6f4", c=C, dtype=np.float32)
        bad = np.argwhere(want.view(np.uint32) != got.view(np.uint32))
        assert not bad.size, (f"{a} x {b}, K={K}: {len(bad)} of 64 differ, first "
                              f"{want[tuple(bad[0])]!r} vs {got[tuple(bad[0])]!r}")
