"""lowprec_torch.round / encode / decode give the core's bits (the core itself is checked against
the oracle) through both backends (torch integer operations and the core), for float32, float16,
bfloat16 and float64 tensors; torch's own float8 casts are compared with the overflow policies."""
import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lowprec as lp
from helpers import overflow_inputs, round_inputs as inputs
import lowprec_torch as lt
from lowprec.testing import float_formats

U = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
MODES = ["nearest_even", "nearest_away", "toward_zero", "up", "down", "odd"]
# the formats tests/test_conformance.py does not already check on torch against the oracle
FORMATS = ["float8_e3m4", "float6_e3m2fn", "bfloat16", "float16", "tfloat32", "float32", "uint4",
           "mxint8_element", "ue4m3"]
NO_NAN = ("int8", "uint4", "mxint8_element", "float6_e3m2fn", "float4_e2m1fn")
TORCH_OF = {np.dtype(np.float16): torch.float16, np.dtype(ml_dtypes.bfloat16): torch.bfloat16,
            np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}




def tensor(a):
    a = np.ascontiguousarray(a)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def numpy(t):
    return lt.to_numpy(t) if t.is_floating_point() else t.view(
        {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.itemsize]).numpy()


def same(got, want):
    got, want = numpy(got), np.asarray(want)
    assert got.itemsize == want.itemsize and got.shape == want.shape, (got.dtype, want.dtype)
    if got.dtype.kind == "f" or want.dtype.kind == "f":
        assert got.dtype == want.dtype
    bad = np.flatnonzero(got.view(U[got.itemsize]) != want.view(U[want.itemsize]))
    assert bad.size == 0, f"{bad.size} differ, first at {bad[:3]}"


def check(x, fmt, mode, backends=("torch", "core"), **kw):
    xs = np.nan_to_num(x) if fmt in NO_NAN and not lp.format(fmt).has_nan else x
    for b in backends:
        same(lt.encode(tensor(xs), fmt, mode, backend=b, **kw), lp.encode(xs, fmt, mode, **kw))
        same(lt.round(tensor(xs), fmt, mode, backend=b, **kw), lp.round(xs, fmt, mode, **kw))


@pytest.mark.parametrize("fmt", ["float8_e5m2", "bfloat16", "float16", "float32"])
def test_overflow_inf_always(fmt):
    """overflow="inf_always" (Inf even where the rounding goes toward zero), every mode."""
    for mode in MODES:
        check(overflow_inputs(float(lp.format(fmt).max)), fmt, mode, overflow="inf_always")


@pytest.mark.parametrize("fmt", FORMATS)
def test_float32_inputs_every_mode(fmt):
    x = inputs(np.float32)
    every = fmt in ("float8_e4m3fn", "int8", "bfloat16", "float6_e3m2fn", "float32")
    for mode in MODES if every else ("nearest_even", "up", "odd"):
        check(x, fmt, mode)
    check(x, fmt, "stochastic", seed=11)


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float4_e2m1fn", "bfloat16", "float16"])
def test_float16_and_bfloat16_inputs(fmt):
    for dt in (np.float16, ml_dtypes.bfloat16):
        x = inputs(np.float32).astype(dt)
        for mode in ("nearest_even", "toward_zero", "odd"):
            check(x, fmt, mode)


@pytest.mark.parametrize("variant", ["srff", "srf", "src", "sr_odd"])
@pytest.mark.parametrize("r", [1, 8, 31, 32])
def test_stochastic_variants_with_explicit_bits(variant, r):
    x = np.nan_to_num(inputs(np.float32, 2000, seed=r))
    rb = np.random.default_rng(r).integers(0, 2**32, x.shape, dtype=np.uint64).astype(np.uint32)
    for fmt in ("float8_e4m3fn", "float6_e2m3fn"):
        check(x, fmt, "stochastic", sr_bits=r, sr_variant=variant, rbits=rb)
        same(lt.round(tensor(x), fmt, "stochastic", sr_bits=r, sr_variant=variant,
                      rbits=torch.from_numpy(rb.view(np.int32)).view(torch.uint32),
                      backend="torch"),
             lp.round(x, fmt, "stochastic", sr_bits=r, sr_variant=variant, rbits=rb))


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e8m0fnu", "bfloat16", "float32",
                                 "float64", "ue4m3", "int8", "float8_e5m2fnuz"])
def test_float64_inputs(fmt):
    x = inputs(np.float64)
    for mode in MODES if fmt in ("float8_e4m3fn", "float64") else ("nearest_even", "down"):
        check(x, fmt, mode)
    xf = np.nan_to_num(x)
    check(xf, fmt, "stochastic", seed=2)
    rb = np.random.default_rng(1).integers(0, 2**63, x.shape, dtype=np.uint64) * np.uint64(2) + \
        np.uint64(1)
    check(xf, fmt, "stochastic", rbits=rb)
    check(xf, fmt, "stochastic", sr_bits=7, sr_variant="src", rbits=rb)


@settings(max_examples=30, deadline=None)
@given(fmt=float_formats(), mode=st.sampled_from(MODES + ["stochastic"]),
       seed=st.integers(0, 2**32 - 1), f32=st.booleans())
def test_random_formats(fmt, mode, seed, f32):
    x = inputs(np.float64, 500, seed)
    if f32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)
    if not fmt.has_nan:
        x = np.nan_to_num(x)
    kw = dict(seed=seed) if mode == "stochastic" else {}
    same(lt.encode(tensor(x), fmt, mode, backend="torch", **kw), lp.encode(x, fmt, mode, **kw))
    same(lt.round(tensor(x), fmt, mode, backend="torch", **kw), lp.round(x, fmt, mode, **kw))


def test_seed_words_and_generator_words():
    hi, lo = lt.random_bits(2**40 + 7, (3, 5), wide=True)
    w = lp.random_bits(2**40 + 7, (3, 5), wide=True)
    assert np.array_equal((hi.numpy().astype(np.uint64) << np.uint64(32))
                          | lo.numpy().astype(np.uint64), w)
    x = inputs(np.float32, 1000)
    words = torch.randint(0, 2**32, x.shape, generator=torch.Generator().manual_seed(5),
                          dtype=torch.int64).numpy().astype(np.uint32)
    want = lp.round(x, "bfloat16", "stochastic", rbits=words)
    for b in ("torch", "core"):
        same(lt.round(tensor(x), "bfloat16", "stochastic", backend=b,
                      generator=torch.Generator().manual_seed(5)), want)


def test_decode_dtypes_and_torch_float8():
    codes = torch.arange(256, dtype=torch.int64).to(torch.uint8)
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e8m0fnu"):
        want = lp.decode(np.arange(256, dtype=np.uint8), name)
        same(lt.decode(codes, name), want)
        tdt = {v: k for k, v in lt.TORCH_FORMATS.items()}[name]
        same(lt.decode(codes.view(tdt)), want)
    same(lt.decode(torch.arange(16), "float4_e2m1fn"), lp.decode(np.arange(16), "float4_e2m1fn"))
    c16 = np.arange(65536, dtype=np.uint16)
    same(lt.decode(torch.from_numpy(c16.view(np.int16)).view(torch.uint16), "bfloat16"),
         lp.decode(c16, "bfloat16"))
    c32 = np.random.default_rng(0).integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32)
    same(lt.decode(torch.from_numpy(c32.view(np.int32)).view(torch.uint32), "float32"),
         lp.decode(c32, "float32"))
    x = inputs(np.float32)
    y = lt.round(tensor(x), "float8_e4m3fn", dtype=torch.float8_e4m3fn)
    assert y.dtype == torch.float8_e4m3fn
    same(y.view(torch.uint8), lp.encode(x, "float8_e4m3fn"))
    assert lt.round(tensor(x), "bfloat16", dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="0..2"):
        lt.decode(torch.tensor([16]), "float4_e2m1fn")


@pytest.mark.parametrize("tdt,name,overflow", [
    (torch.float8_e4m3fn, "float8_e4m3fn", "saturate"), (torch.float8_e5m2, "float8_e5m2", None),
    (torch.float8_e4m3fnuz, "float8_e4m3fnuz", None),
    (torch.float8_e5m2fnuz, "float8_e5m2fnuz", None),
    (torch.bfloat16, "bfloat16", None), (torch.float16, "float16", None),
    (torch.float8_e8m0fnu, "float8_e8m0fnu", None)])
def test_torch_native_casts_equal_an_overflow_policy(tdt, name, overflow):
    """torch's x.to(float8) is lp.round with the policy named here (NaN excluded: its NaN
    payloads follow C++); every float16 and bfloat16 pattern and 10^5 float32 values."""
    xs = [np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32),
          np.arange(65536, dtype=np.uint16).view(ml_dtypes.bfloat16).astype(np.float32),
          inputs(np.float32, 100000)]
    for x in xs:
        x = x[~np.isnan(x)]
        if name == "float8_e8m0fnu":     # torch: |x| of negative inputs, 0 -> 2^-127, and
            x = np.abs(x[x != 0])         # (2^-127, 1.5 x 2^-127) up to 2^-126 (docstring)
            x = x[(x <= 2.0**-127) | (x >= 1.5 * 2.0**-127)]
        got = tensor(x).to(tdt)
        same(got.view({1: torch.uint8, 2: torch.int16}[got.itemsize]),
             lp.encode(x, name, overflow=overflow))


def test_errors():
    x = torch.tensor([1.0, float("nan")])
    for b in ("torch", "core"):
        with pytest.raises(ValueError, match="no NaN"):
            lt.round(x, "float4_e2m1fn", overflow="saturate", backend=b)
    with pytest.raises(TypeError, match="x must be"):
        lt.round(torch.tensor([1]), "float16")
    with pytest.raises(TypeError, match="torch.Tensor"):
        lt.round(np.float32([1]), "float16")
    with pytest.raises(ValueError, match="exactly one source"):
        lt.round(x, "float16", "stochastic")
    with pytest.raises(ValueError, match="one of seed=, rbits=, generator="):
        lt.round(x, "float16", "stochastic", seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="backend="):
        lt.round(x, "float16", backend="cuda")
    with pytest.raises(ValueError, match="cannot hold"):
        lt.round(x, "float32", dtype=torch.float16)
    with pytest.raises(ValueError, match="holds float8_e5m2"):
        lt.round(x, "float8_e4m3fn", dtype=torch.float8_e5m2)
    with pytest.raises(TypeError, match="unsigned"):
        lt.round(x, "float16", "stochastic", rbits=torch.tensor([1, 2]), backend="torch")
    with pytest.raises(ValueError, match="grad="):
        lt.round(x, "float16", grad="stochastic")


def test_input_is_not_modified_and_devices_match():
    x = tensor(inputs(np.float32, 100))
    before = x.clone()
    y = lt.round(x, "float8_e4m3fn", backend="torch")
    assert torch.equal(x.view(torch.int32), before.view(torch.int32)) and y.device == x.device


def test_straight_through_gradient_and_gradient_quantisation():
    x = tensor(inputs(np.float32, 64)[8:])
    w = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    wt = torch.from_numpy(w)

    def grad(**kw):
        v = x.clone().requires_grad_(True)
        (lt.round(v, "float8_e4m3fn", **kw) * wt).sum().backward()
        return v.grad

    same(grad(), w)
    same(grad(grad="none"), np.zeros_like(w))
    same(grad(grad_fmt="float8_e5m2"), lp.round(w, "float8_e5m2"))
    same(grad(grad_fmt="float8_e5m2", grad_rounding="stochastic", grad_kw=dict(seed=4)),
         lp.round(w, "float8_e5m2", "stochastic", seed=4))
    xb = x.to(torch.bfloat16).requires_grad_(True)
    lt.round(xb, "float8_e4m3fn").float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16


def test_torch_compile():
    x = tensor(np.nan_to_num(inputs(np.float32, 256)))
    f = torch.compile(lambda v: lt.round(v, "float8_e4m3fn", "toward_zero"))   # inductor
    same(f(x), lp.round(lt.to_numpy(x), "float8_e4m3fn", "toward_zero"))
    g = torch.compile(lambda v: lt.round(v, "float8_e4m3fn", "stochastic", seed=3),
                      backend="aot_eager")           # traced; inductor's C++ build is slow here
    same(g(x), lp.round(lt.to_numpy(x), "float8_e4m3fn", "stochastic", seed=3))


def test_float4_e2m1fn_x2_packing():
    """PyTorch's layout (c10/util/Float4_e2m1fn_x2.h: element 0 in bits 3..0, element 1 in
    bits 7..4), checked against lp.pack and against nibbles assembled by hand."""
    x = np.float32([[0.5, -6.0, 1.5, 0.0, 3.0, -0.25]])
    p = lt.round(tensor(x), "float4_e2m1fn", dtype=torch.float4_e2m1fn_x2)
    assert p.dtype == torch.float4_e2m1fn_x2 and p.shape == (1, 3)
    # E2M1 codes: 0.5 = 0x1, -6 = 0xF, 1.5 = 0x3, 0 = 0x0, 3 = 0x5, -0.25 -> -0 = 0x8
    assert p.view(torch.uint8).tolist() == [[0xF1, 0x03, 0x85]]
    y = inputs(np.float32, 4000).reshape(40, 100)
    q = lt.round(tensor(np.nan_to_num(y)), "float4_e2m1fn", dtype=torch.float4_e2m1fn_x2)
    codes = lp.encode(np.nan_to_num(y), "float4_e2m1fn")
    assert np.array_equal(q.view(torch.uint8).numpy(), lp.pack(codes, "float4_e2m1fn"))
    same(lt.decode(q), lp.round(np.nan_to_num(y), "float4_e2m1fn"))
    with pytest.raises(ValueError, match="even length"):
        lt.round(torch.ones(3), "float4_e2m1fn", dtype=torch.float4_e2m1fn_x2)
