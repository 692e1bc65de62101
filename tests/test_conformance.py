"""One conformance suite for every backend: the NumPy array-API step (small arrays), the Numba
kernels (large arrays), JAX, torch, and the Pallas and Triton kernels (interpreters here, the
GPU with ``LOWPREC_TEST_DEVICE=cuda``). Each backend's codes are compared with the independent
oracle (``tests/oracle.py``, exact rationals and the format definitions), not with the core:

* every bfloat16 bit pattern (as float32: every midpoint and its neighbours for formats of at
  most 6 fraction bits, every binade, subnormals, +-0, +-Inf, NaN) into each format, in every
  deterministic mode, under the natural and the saturating overflow policy;
* seeded stochastic rounding (exact and few-bit, all four variants) against the oracle's
  definitions with the random words of the tests' own Philox (``test_stochastic.stream``).
"""
import ml_dtypes
import numpy as np
import pytest

import lowprec as lp
import oracle
from conftest import GPU
from helpers import oracle_floats, table
from test_stochastic import stream

FORMATS = ["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float6_e2m3fn", "float8_e8m0fnu",
           "float8_e4m3fnuz", "int8"]
MODES = oracle.MODES
BACKENDS = ["numpy", "numba", "jax", "torch", "pallas", "triton"]
INTERPRETED = ("pallas", "triton")          # slow on the CPU: one policy, fewer modes there


def _inputs(fmt):
    x = np.arange(1 << 16, dtype=np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
    if not lp.format(fmt).has_nan:
        x = x[~np.isnan(x)]                   # NaN into a format without NaN is an error
    return x


def _backend(backend, monkeypatch):
    """call(kind, x float32 array, fmt, mode, overflow, **stochastic) -> NumPy array, kind
    "encode" (codes) or "round" (values in the core's result dtype)."""
    if backend in ("numpy", "numba"):
        from lowprec import cast
        fns = {"encode": lp.encode, "round": lp.round}
        if backend == "numba":
            monkeypatch.setattr(cast, "SMALL", 0)   # every size through the compiled kernels
            return lambda kind, x, *a, **kw: fns[kind](x, *a, **kw)
        step = cast.SMALL - 1                       # every call below the compiled kernels' size

        def call(kind, x, *a, **kw):
            rb = kw.pop("rbits", None)
            return np.concatenate([fns[kind](x[i:i + step], *a, **kw, **(
                {} if rb is None else {"rbits": rb[i:i + step]})) for i in range(0, x.size, step)])
        return call
    if backend in ("jax", "pallas"):
        jax = pytest.importorskip("jax")
        import lowprec_jax as lj
        from lowprec_jax import pallas
        mod = lj if backend == "jax" else pallas
        dev = jax.devices("gpu")[0] if GPU and backend == "pallas" else None

        def call(kind, x, *a, **kw):
            kw = {k: (jax.device_put(v, dev) if dev and k == "rbits" else v)
                  for k, v in kw.items()}
            xj = jax.device_put(x, dev) if dev else x
            extra = {"interpret": not GPU} if backend == "pallas" else {}
            with jax.enable_x64(not _float32_work(a[0])):
                return np.asarray(getattr(mod, kind)(xj, *a, **kw, **extra))
        return call
    torch = pytest.importorskip("torch")
    import lowprec_torch as lt
    if backend == "torch":
        return lambda kind, x, *a, **kw: lt.to_numpy(getattr(lt, kind)(
            torch.from_numpy(x), *a, backend="torch", **kw))
    from lowprec_torch import triton as tk
    dev = "cuda" if GPU else "cpu"

    def call(kind, x, *a, **kw):
        if "rbits" in kw:
            kw["rbits"] = torch.from_numpy(kw["rbits"]).to(dev)
        return lt.to_numpy(getattr(tk, kind)(torch.from_numpy(x).to(dev), *a, **kw).cpu())
    return call


def _float32_work(fmt):
    return lp.plan(fmt).work_bits == 32


def _check(got, want, x, what, fmt=None):
    """Codes equal the oracle's; with ``fmt``, ``got`` are values: their bits equal the
    oracle's value of each code in the core's result dtype."""
    if fmt is not None:
        got = np.asarray(got)
        want_v = oracle_floats(want, table(fmt), got.dtype)
        u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.itemsize]
        got, want = got.view(u).astype(np.int64), want_v.view(u).astype(np.int64)
    got = np.asarray(got).astype(np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{what}: {bad.size} of {x.size} codes differ from the oracle; first "
                           f"x={x[bad[0]]!r}: got {got[bad[0]]:#x}, oracle {want[bad[0]]:#x}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_bfloat16_pattern_every_mode_equals_the_oracle(backend, fmt, monkeypatch):
    if backend in INTERPRETED and not _float32_work(fmt):
        pytest.skip(f"the {backend} kernels work in float32; {fmt} needs float64 (documented)")
    call = _backend(backend, monkeypatch)
    x = _inputs(fmt)
    t = table(fmt)
    slow = backend in INTERPRETED and not GPU
    modes = ("nearest_even", "toward_zero", "odd") if slow else MODES
    for overflow in ((None,) if slow else (None, "saturate")):
        if overflow is None and fmt == "int8":
            continue                          # int8's natural policy is saturate
        for mode in modes:
            want = oracle.round_table_f64(x, t, mode, overflow)
            what = f"{backend} {fmt} {mode} {overflow}"
            _check(call("encode", x, fmt, mode, overflow), want, x, what)
            _check(call("round", x, fmt, mode, overflow), want, x, what + " values", fmt)


SR_CASES = [("float8_e4m3fn", None, "srff"), ("bfloat16", 4, "srff"), ("float4_e2m1fn", 3, "srf"),
            ("float8_e5m2", 5, "src"), ("float6_e2m3fn", 2, "sr_odd"),
            ("float8_e4m3fn", 3, "sr_nearest_odd")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt,sr_bits,variant", SR_CASES)
def test_seeded_stochastic_rounding_equals_the_oracle(backend, fmt, sr_bits, variant,
                                                      monkeypatch):
    call = _backend(backend, monkeypatch)
    rng = np.random.default_rng(5)
    n = 600
    x = (rng.standard_normal(n) * np.exp2(rng.integers(-12, 12, n))).astype(np.float32)
    x[:4] = [0.0, -0.0, np.float32(2.0**-140), -3e30]
    seed = 0xC0FFEE_1234
    r = 32 if sr_bits is None else sr_bits
    t = table(fmt)
    want = np.array([oracle.round_exact(
        oracle.to_fraction(v), t, "stochastic", "saturate", sr=(stream(seed, i), r, variant))
        for i, v in enumerate(x)], dtype=np.int64)
    kw = dict(sr_bits=sr_bits, sr_variant=variant)
    _check(call("encode", x, fmt, "stochastic", "saturate", seed=seed, **kw), want, x,
           f"{backend} {fmt} seed")
    _check(call("round", x, fmt, "stochastic", "saturate", seed=seed, **kw), want, x,
           f"{backend} {fmt} seed values", fmt)
    words = np.array([stream(seed, i) for i in range(n)], dtype=np.uint32)
    _check(call("encode", x, fmt, "stochastic", "saturate", rbits=words, **kw), want, x,
           f"{backend} {fmt} rbits")
