"""lowprec_torch.triton kernels under the Triton interpreter (TRITON_INTERPRET=1, set in
conftest.py) give the core's bits on random shapes, formats, modes and special values; and
every kernel compiles for an H100 (sm_90) with the interpreter off, so code that only the
interpreter accepts is caught."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import triton
import triton.language as tl
from hypothesis import given, settings, strategies as st

import lowprec as lp
from lowprec.testing import float_formats
from lowprec_torch import triton as tk

DEVICE = os.environ.get("LOWPREC_TEST_DEVICE", "cpu")

MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd", "stochastic"]


def data(rng, shape, specials=True):
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-60, 60, shape))).astype(np.float32)
    if specials and x.size >= 8:
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, 8, replace=False)
        flat[idx] = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -3.4e38]
    return x


def T(a):
    """A torch tensor of numpy array ``a`` on the device under test (CPU: the interpreter)."""
    return torch.from_numpy(a).to(DEVICE)


def u(a):
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.itemsize])


def float32_work(fmt):
    return lp.plan(fmt).work_bits == 32


@settings(max_examples=30, deadline=None)
@given(fmt=float_formats().filter(float32_work), mode=st.sampled_from(MODES),
       shape=st.sampled_from([(7,), (33, 5), (1500,), (2, 3, 4)]), seed=st.integers(0, 2**32 - 1),
       sr_bits=st.sampled_from([None, 3, 12]))
def test_round_and_encode_kernels_equal_the_core(fmt, mode, shape, seed, sr_bits):
    rng = np.random.default_rng(seed)
    x = data(rng, shape)
    if not fmt.has_nan:
        x = np.nan_to_num(x)
    kw = {}
    if mode == "stochastic":
        kw = dict(sr_bits=sr_bits)
        kw.update(seed=seed) if seed % 2 else kw.update(
            rbits=rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32))
    xt = T(x)
    assert np.array_equal(u(tk.encode(xt, fmt, mode, **kw)), u(lp.encode(x, fmt, mode, **kw)))
    assert np.array_equal(u(tk.round(xt, fmt, mode, **kw)), u(lp.round(x, fmt, mode, **kw)))


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "bfloat16",
                                 "float6_e3m2fn", "int8", "float8_e4m3fnuz"])
def test_named_formats_every_mode_and_half_inputs(fmt):
    rng = np.random.default_rng(3)
    x = data(rng, (4000,))
    x = x if lp.format(fmt).has_nan else np.nan_to_num(x)
    for mode in MODES[:-1]:
        assert np.array_equal(u(tk.encode(T(x), fmt, mode)),
                              u(lp.encode(x, fmt, mode)))
        if lp.format(fmt).has_inf:
            assert np.array_equal(u(tk.round(T(x), fmt, mode, overflow="inf_always")),
                                  u(lp.round(x, fmt, mode, overflow="inf_always")))
    h = x.astype(np.float16)
    got = tk.round(T(h), fmt)
    assert got.dtype == torch.float16 or fmt == "bfloat16"
    # compare the 16-bit patterns themselves: a CUDA float16 -> float32 conversion turns every
    # NaN into 0x7FFFFFFF, which would hide (or fake) a difference
    assert np.array_equal(got.view(torch.int16).cpu().numpy().view(np.uint16),
                          lp.round(h, fmt).view(np.uint16))
    g = torch.Generator().manual_seed(2)
    words = torch.randint(0, 2**32, x.shape, generator=torch.Generator().manual_seed(2),
                          dtype=torch.int64).numpy().astype(np.uint32)
    assert np.array_equal(u(tk.round(T(np.nan_to_num(x)), fmt, "stochastic",
                                     generator=g)),
                          u(lp.round(np.nan_to_num(x), fmt, "stochastic", rbits=words)))


BLOCKS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8",
          "mxfp8_e4m3_rceil", "mxfp8_e5m2_rceil", "bfp16", "nvfp4", "nvfp4_2d"]


@settings(max_examples=20, deadline=None)
@given(preset=st.sampled_from(BLOCKS), mode=st.sampled_from(["nearest_even", "toward_zero",
                                                             "odd", "stochastic"]),
       shape_axis=st.sampled_from([((4, 64), -1), ((64, 3), 0), ((2, 96, 2), 1), ((3, 40), -1),
                                   ((32, 48), -1)]),
       scale=st.sampled_from([1.0, 2.0**-120, 2.0**100]), seed=st.integers(0, 2**32 - 1),
       specials=st.booleans())
def test_block_kernel_equals_the_core(preset, mode, shape_axis, scale, seed, specials):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        x = (data(rng, shape, specials) * np.float32(scale)).astype(np.float32)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    try:
        want = lp.quantize(x, preset, axis, mode, **kw)
    except ValueError:
        with pytest.raises(ValueError):
            tk.quantize(T(x), preset, axis, mode, **kw)
        return
    q = tk.quantize(T(x), preset, axis, mode, **kw)
    assert np.array_equal(q.codes.cpu().numpy(), want.codes)
    assert np.array_equal(q.scale_codes.cpu().numpy(), want.scale_codes)
    assert np.float32(q.tensor_scale).view(np.uint32) == want.tensor_scale.view(np.uint32)
    got = tk.fake_quantize(T(x), preset, axis, mode, **kw)
    assert np.array_equal(u(got), u(lp.fake_quantize(x, preset, axis, mode, **kw)))


def test_errors_and_fallback():
    x = torch.ones(4, 32, device=DEVICE)
    with pytest.raises(ValueError, match="float32 work type"):
        tk.round(x, "float8_e8m0fnu")
    with pytest.raises(NotImplementedError, match="lowprec_torch.quantize"):
        tk.quantize(x, "nvfp4_torchao")
    with pytest.raises(ValueError, match="no NaN"):
        tk.round(torch.tensor([float("nan")], device=DEVICE), "float4_e2m1fn", overflow="saturate")
    env = dict(os.environ, TRITON_INTERPRET="0")
    code = ("import torch; from lowprec_torch import triton as t\n"
            "try:\n    t.round(torch.ones(3), 'float8_e4m3fn')\n"
            "except RuntimeError as e:\n    print('clear:', 'TRITON_INTERPRET' in str(e))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert "clear: True" in out.stdout, out.stderr[-2000:]


FUSED = ["h100-fp8", "b200-fp8", "b200-mxf8f6f4", "h100-fp16", "b200-fp8-tcgen05", "ada-bf16",
         "h100-fp16-out-fp16", "ada-tf32"]


def fmt_values(rng, shape, fmt, specials):
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(shape) * np.exp2(rng.integers(-12, 12, shape))).astype(
            np.float32)
    x = lp.round(x, fmt, overflow="saturate", dtype=np.float32)
    if specials:
        flat = x.reshape(-1)
        picks = ([-0.0] if fmt.has_neg_zero else []) + [0.0] + (
            [np.nan] if fmt.has_nan else []) + (
            [np.inf, -np.inf] if fmt.inf else [])
        picks = picks[:flat.size]
        flat[rng.choice(flat.size, len(picks), replace=False)] = picks
    return x


@settings(max_examples=8, deadline=None)
@given(preset=st.sampled_from(FUSED + ["epb"]), mkn=st.sampled_from(
    [(1, 1, 1), (5, 33, 7), (16, 64, 16), (20, 70, 18), (3, 100, 2)]),
       batch=st.sampled_from([(), (2,)]), seed=st.integers(0, 2**32 - 1),
       specials=st.booleans(), with_c=st.booleans())
def test_fused_matmul_kernel_equals_the_core(preset, mkn, batch, seed, specials, with_c):
    acc = lp.exact_per_block("float8_e4m3fn", "float8_e4m3fn") if preset == "epb" else \
        lp.hardware.preset(preset)
    rng = np.random.default_rng(seed)
    M, K, N = mkn
    fa, fb = acc.input_formats
    a = fmt_values(rng, batch + (M, K), fa, specials)
    b = fmt_values(rng, batch + (K, N), fb, specials and seed % 2)
    c = None
    if with_c:
        cf = acc.addend_format or acc.fmt
        c = fmt_values(rng, batch + (M, N), cf, specials)
    want = lp.matmul(a, b, acc, c)
    got = tk.matmul(T(a), T(b), acc,
                    None if c is None else T(c))
    assert np.array_equal(u(got), u(want))


@pytest.mark.parametrize("preset", ["mi300-fp16", "mi300-bf16", "mi300-xf32", "mi300-fp8"])
def test_fused_matmul_kernel_floored_join(preset):
    """The AMD CDNA3 floored join (FusedAdder sum_bits, split, drop_small_addend,
    inf_products) in the Triton kernel equals the core: chains, specials, a c near and far
    from the products, products past 2^128 (bf16 / xf32)."""
    acc = lp.hardware.preset(preset)
    fa, fb = acc.input_formats
    rng = np.random.default_rng(len(preset))
    for (M, K, N), specials in (((5, 40, 6), False), ((4, 64, 3), True)):
        a = fmt_values(rng, (M, K), fa, specials)
        b = fmt_values(rng, (K, N), fb, False)
        if fa.emax > 100:
            a[0, :3], b[:3, 0] = float(fa.max), float(fb.max)      # products past 2^128
            b[1, 0] = -float(fb.max)
        c = lp.round(rng.standard_normal((M, N)) * 2.0 ** rng.integers(-40, 20, (M, N)),
                     "float32", dtype=np.float32)
        want = lp.matmul(a, b, acc, c)
        got = tk.matmul(T(a), T(b), acc, T(c))
        assert np.array_equal(u(got), u(want)), preset


@pytest.mark.parametrize("bf", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp4"])
def test_fused_matmul_kernel_on_mx_operands(bf):
    import lowprec_torch as lt
    rng = np.random.default_rng(4)
    x = data(rng, (24, 96))
    w = (rng.standard_normal((96, 20)) * 1e3).astype(np.float32)
    x[3, :] = 0.0
    acc = lp.hardware.preset("b200-mxf8f6f4")
    want = lp.matmul(lp.quantize(x, bf), lp.quantize(w, bf, axis=-2), acc)
    got = tk.matmul(lt.quantize(T(x), bf),
                    lt.quantize(T(w), bf, axis=-2), acc)
    assert np.array_equal(u(got), u(want))


def test_fused_matmul_kernel_refuses_what_it_does_not_model():
    a = torch.ones(4, 32, device=DEVICE)
    for acc in ("fp32-sequential", "deepseek-v3-fp8"):
        with pytest.raises(NotImplementedError, match="lowprec_torch.matmul"):
            tk.matmul(a, a.T, acc)
    with pytest.raises(ValueError, match="not one of the float8_e4m3fn values"):
        tk.matmul(torch.full((4, 32), 1.1, device=DEVICE), a.T, "h100-fp8")


def test_every_kernel_compiles_for_sm90():
    env = dict(os.environ, TRITON_INTERPRET="0")
    code = ("import lowprec as lp\nfrom lowprec_torch import triton as t\n"
            "sizes = t.compile_kernels(90, matmul_models=('h100-fp8', 'b200-fp8', 'mi300-fp8', "
            "'b200-mxf4nvf4', "
            "lp.exact_per_block('float8_e4m3fn', 'float8_e4m3fn')))\n"
            "print(len(sizes), min(sizes.values()))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    n, smallest = map(int, out.stdout.split())
    assert n == 19 and smallest > 10000           # 19 kernels, each real PTX


@triton.jit
def _randint4x_kernel(out_ptr, seed, nq, BLOCK: tl.constexpr):
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = q < nq
    w0, w1, w2, w3 = tl.randint4x(seed, q)
    tl.store(out_ptr + 4 * q, w0.to(tl.int32, bitcast=True), mask=m)
    tl.store(out_ptr + 4 * q + 1, w1.to(tl.int32, bitcast=True), mask=m)
    tl.store(out_ptr + 4 * q + 2, w2.to(tl.int32, bitcast=True), mask=m)
    tl.store(out_ptr + 4 * q + 3, w3.to(tl.int32, bitcast=True), mask=m)


@pytest.mark.parametrize("seed", [0, 12345, 2**31 + 5, 2**44 + 2**32 + 9])
def test_seeded_stream_is_tritons_randint4x(seed):
    """Triton's own Philox (``tl.randint4x(seed, q)``, q < 2^32) gives stream words 4q..4q+3:
    element i of ``seed=`` is ``tl.randint4x(seed, i // 4)[i % 4]`` (lowprec.rounding)."""
    nq = 3000
    out = torch.empty(4 * nq, dtype=torch.int32, device=DEVICE)
    _randint4x_kernel[(triton.cdiv(nq, 256),)](out, seed, nq, BLOCK=256)
    assert np.array_equal(u(out), lp.random_bits(seed, (4 * nq,)))


@pytest.mark.parametrize("bf", ["nvfp4", "mxfp4"])
def test_group_rule_kernel_equals_the_core(bf):
    """block_scales="group" (b200-mxf4nvf4, the group terms aligned on their scales'
    exponents) in the Triton kernel equals lp.matmul: NVFP4 (UE4M3 scales, tensor scales in
    the epilogue) and MXFP4, chains of steps, whole zero groups, with and without c."""
    import lowprec_torch as lt
    rng = np.random.default_rng(8)
    x = data(rng, (6, 128), specials=False)
    w = (rng.standard_normal((128, 5)) * 4).astype(np.float32)
    x[2, 16:48] = 0.0
    acc = lp.hardware.preset("b200-mxf4nvf4")
    for c in (None, lp.round(rng.standard_normal((6, 5)), "float32", dtype=np.float32)):
        want = lp.matmul(lp.quantize(x, bf), lp.quantize(w, bf, axis=-2), acc, c)
        got = tk.matmul(lt.quantize(T(x), bf), lt.quantize(T(w), bf, axis=-2), acc,
                        None if c is None else T(c))
        assert np.array_equal(u(got), u(want)), bf
