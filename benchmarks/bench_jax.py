"""make bench (part 4): jitted lowprec_jax.round beside the NumPy core on the same 10M float32
values (JAX on CPU). Prints a Markdown table; nothing is asserted."""
import os
import sys

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

import lowprec as lp  # noqa: E402
import lowprec_jax as lj  # noqa: E402
from bench_round import N, REPEAT, print_ratio_table, time_rows  # noqa: E402


def main():
    x = (np.random.default_rng(0).standard_normal(N) * 50).astype(np.float32)
    xj = jax.device_put(x)
    out = np.empty_like(x)
    rows = [("np.copyto (memory bound)", lambda: np.copyto(out, x))]
    for fmt, mode, kw in (("float8_e4m3fn", "nearest_even", {}),
                          ("float4_e2m1fn", "nearest_even", {}),
                          ("float8_e4m3fn", "stochastic", dict(seed=1))):
        f = jax.jit(lambda v, fmt=fmt, mode=mode, kw=kw: lj.round(v, fmt, mode, **kw))
        label = f"{fmt} {mode}"
        rows.append((f"lp.round {label}", lambda fmt=fmt, mode=mode, kw=kw: lp.round(
            x, fmt, mode, **kw)))
        rows.append((f"jit(lowprec_jax.round) {label}",
                     lambda f=f: f(xj).block_until_ready()))
    n512 = N // 512 * 512                     # whole rows of 512 (blocks of 32 and 16)
    x2, xj2 = x[:n512].reshape(-1, 512), xj[:n512].reshape(-1, 512)
    for bf in ("mxfp4", "nvfp4"):
        f = jax.jit(lambda v, bf=bf: lj.fake_quantize(v, bf))
        rows.append((f"lp.fake_quantize {bf}", lambda bf=bf: lp.fake_quantize(x2, bf)))
        rows.append((f"jit(lowprec_jax.fake_quantize) {bf}",
                     lambda f=f: f(xj2).block_until_ready()))
    res = dict(time_rows(rows))
    print(f"{N:,} float32 values, {os.cpu_count()} cores, JAX {jax.__version__} on CPU, median "
          f"of {REPEAT} interleaved runs\n")
    print_ratio_table(rows, res, 'np.copyto (memory bound)', 'x copy')
    pallas_interpret()
    matmuls()
    return 0


def pallas_interpret():
    """The Pallas kernels in interpret mode, for reference only (an interpreter is slow by
    nature): 64K values."""
    from lowprec_jax import pallas as lpp  # noqa: PLC0415
    small = jax.device_put((np.random.default_rng(1).standard_normal((128, 512)) * 50
                            ).astype(np.float32))
    f_jit = jax.jit(lambda v: lj.round(v, "float8_e4m3fn"))
    f_pal = jax.jit(lambda v: lpp.round(v, "float8_e4m3fn"))
    q_jit = jax.jit(lambda v: lj.fake_quantize(v, "nvfp4"))
    q_pal = jax.jit(lambda v: lpp.fake_quantize(v, "nvfp4"))
    rows = [(name, lambda f=f: f(small).block_until_ready()) for name, f in (
        ("jit(lowprec_jax.round) e4m3", f_jit), ("pallas.round e4m3 (interpret)", f_pal),
        ("jit(lowprec_jax.fake_quantize) nvfp4", q_jit),
        ("pallas.fake_quantize nvfp4 (interpret)", q_pal))]
    res = dict(time_rows(rows))
    print("\nPallas in interpret mode, 65,536 float32 values (reference only)\n")
    print("| operation | time (ms) |")
    print("|---|---:|")
    for name, _ in rows:
        print(f"| {name} | {res[name] * 1e3:.2f} |")


def matmuls():
    """A block-scaled (MXFP8) matmul, 64 x 512 x 64, through the B200 preset and the
    exact-per-block model: the core, jitted lowprec_jax.matmul, and the Pallas kernel in
    interpret mode (reference only)."""
    from lowprec_jax import blocks as jb, pallas as lpp  # noqa: PLC0415
    from lowprec_jax.matmul import matmul as jmm  # noqa: PLC0415
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(2)
    qa = jb.quantize(rng.standard_normal((64, 512)).astype(np.float32), "mxfp8_e4m3")
    qb = jb.quantize(rng.standard_normal((512, 64)).astype(np.float32), "mxfp8_e4m3", axis=-2)
    ca, cb = qa.to_core(), qb.to_core()
    rows = []
    for acc in (lp.hardware.preset("b200-mxf8f6f4"), lp.exact_per_block(qa.fmt.elem,
                                                                         qb.fmt.elem)):
        fj = jax.jit(lambda a, b, acc=acc: jmm(a, b, acc))
        fp = jax.jit(lambda a, b, acc=acc: lpp.matmul(a, b, acc))
        rows += [(f"lp.matmul {acc.name}", lambda acc=acc: lp.matmul(ca, cb, acc)),
                 (f"jit(lowprec_jax.matmul) {acc.name}",
                  lambda f=fj: f(qa, qb).block_until_ready()),
                 (f"pallas.matmul {acc.name} (interpret)",
                  lambda f=fp: f(qa, qb).block_until_ready())]
    res = dict(time_rows(rows))
    print("\nMXFP8 matmul 64 x 512 x 64 (2.1M products)\n")
    print("| operation | time (ms) |")
    print("|---|---:|")
    for name, _ in rows:
        print(f"| {name} | {res[name] * 1e3:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
