"""Issue 21's bad-input probes of the adapters: each refuses what the core refuses, with the
core's message (checked by running both), or, under jax.jit where nothing can raise, marks the
result (NaN) as documented."""
import numpy as np
import pytest

import lowprec as lp

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import lowprec_jax as lj  # noqa: E402


def _core_error(fn):
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("a,b,acc,kw", [
    ([[1.3] * 32], [[1.0]] * 32, "h100-fp8", {}),                 # not an E4M3 value
    ([[np.nan, 1.0]], [[1.0], [1.0]], "int8", {}),                 # NaN into an integer unit
    ([[1.5, 1.0]], [[1.0], [1.0]], "int8", {}),                    # not an integer
    ([[np.nan, 1.0]], [[1.0], [1.0]], "float4_e2m1fn", {}),        # NaN sum, no NaN code
    ([[-100.0, 1.0]], [[1.0], [1.0]], "int8", dict(dtype=np.uint8)),
])
def test_jax_matmul_refuses_what_the_core_refuses(a, b, acc, kw):
    acc = lp.Accumulator(acc) if acc in ("int8", "float4_e2m1fn") else acc
    A, B = np.array(a), np.array(b)
    want = _core_error(lambda: lp.matmul(A, B, acc, **kw))
    with jax.enable_x64(True):
        got = _core_error(lambda: lj.matmul(jnp.asarray(A), jnp.asarray(B), acc, **kw))
    assert got == want


def test_jax_matmul_under_jit_marks_nan_sums():
    acc = lp.Accumulator("float4_e2m1fn")
    A = np.array([[np.nan, 1.0], [1.0, 2.0], [np.inf, 1.0]])
    B = np.array([[1.0, 0.0], [1.0, -np.inf]])
    want_nan = lp.accumulate.nan_sums(A, B, np.zeros((3, 2)))
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(lambda a, b: lj.matmul(a, b, acc))(A, B))
    assert np.array_equal(np.isnan(out), want_nan) and want_nan.any() and not want_nan.all()
    assert out[1, 0] == lp.matmul(A[1:2], B[:, :1], acc)[0, 0]


def test_torch_zero_d_tensors_keep_their_shape():
    torch = pytest.importorskip("torch")
    import lowprec_torch as lt
    x = torch.tensor(1.3)
    for backend in ("auto", "torch", "core"):
        assert lt.round(x, "e4m3", backend=backend).shape == ()
        assert lt.encode(x, "e4m3", backend=backend).shape == ()
        assert lt.round(x, "e4m3", backend=backend).item() == 1.25


def test_torch_matmul_refuses_nan_sums_as_the_core():
    torch = pytest.importorskip("torch")
    import lowprec_torch as lt
    acc = lp.Accumulator("float4_e2m1fn")
    A, B = np.array([[np.nan, 1.0]]), np.ones((2, 1))
    want = _core_error(lambda: lp.matmul(A, B, acc))
    assert _core_error(lambda: lt.matmul(torch.tensor(A), torch.tensor(B), acc)) == want


def test_jax_matmul_refuses_a_product_table_beyond_max_bytes():
    acc = lp.Accumulator("float32", order="pairwise")
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"forms all 134217728 products at once .* \(about "
                                             r"16.00 GiB .*\), above max_bytes=4294967296"):
            lj.matmul(jnp.ones((512, 512)), jnp.ones((512, 512)), acc)
        with pytest.raises(ValueError, match="max_bytes=0 must be an int > 0"):
            lj.matmul(jnp.ones((4, 4)), jnp.ones((4, 4)), acc, max_bytes=0)
        out = lj.matmul(jnp.ones((4, 4)), jnp.ones((4, 4)), acc, max_bytes=1 << 20)
        assert np.asarray(out).tolist() == [[4.0] * 4] * 4        # exact: sums of ones
        # the sequential order streams over K: no table, no limit
        lj.matmul(jnp.ones((64, 64)), jnp.ones((64, 64)), "fp32-sequential", max_bytes=1)


@pytest.mark.parametrize("fmt", [None, "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                 "float4_e2m1fn", "float6_e3m2fn", "bfloat16", "float16",
                                 "tfloat32", "float8_e8m0fnu"])
def test_jax_members_is_the_cores_representability(fmt):
    """lowprec_jax's traced membership test against the core's ``is_representable`` (table
    lookups of the format's values), on every value of the format, its neighbours in float64,
    midpoints, values past the range and the float32 corner cases."""
    from lowprec_jax.fused import members
    from lowprec_jax.sums import _f64_bits
    f = lp.format(fmt or "float32")
    v = f.values() if f.bits <= 16 else np.float64(
        [0.0, 1.0, 1 + 2.0**-f.man_bits, f.min_subnormal, f.min_normal, f.max])
    x = np.concatenate([v, -v, np.nextafter(v, np.inf), np.nextafter(v, -np.inf),
                        (v[1:] + v[:-1]) / 2, [v.max() * 2, 2.0**-160, 1.3, np.inf, np.nan]])
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(lambda b: members(b, lp.format(fmt) if fmt else None))(
            _f64_bits(jnp.asarray(x))))
    want = ~np.isfinite(x) | (np.asarray(f.is_representable(x)) if fmt else
                              (x.astype(np.float32).astype(np.float64) == x))
    assert np.array_equal(got, want)


def test_jax_matmul_under_jit_marks_values_outside_the_input_formats():
    A = np.ones((3, 32))
    A[0, 5] = 1.3                                                 # not an E4M3 value
    B = np.ones((32, 2))
    B[4, 1] = 500.0                                               # beyond E4M3's 448
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(lambda a, b: lj.matmul(a, b, "h100-fp8"))(A, B))
    assert np.isnan(out[0]).all() and np.isnan(out[:, 1]).all()
    assert out[1, 0] == out[2, 0] == 32.0


def test_triton_matmul_refuses_nan_sums_as_the_core():
    torch = pytest.importorskip("torch")
    from lowprec_torch import triton as tk
    acc = lp.Accumulator("float4_e2m1fn", fused=lp.FusedAdder(4, 10),
                         input_formats=("float16", "float16"))
    A, B = np.array([[np.nan, 1.0, 0.0, 0.0]]), np.ones((4, 1))
    want = _core_error(lambda: lp.matmul(A, B, acc))
    assert _core_error(lambda: tk.matmul(torch.tensor(A, dtype=torch.float32),
                                         torch.tensor(B, dtype=torch.float32), acc)) == want
