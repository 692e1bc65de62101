"""The README's Python quick start runs as written, and its commented results are true."""
import pathlib
import re

import numpy as np

import lowprec as lp

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_block_format_comments_hold():
    x = np.float32([0.5, -1.0, 3.0, 6.5] * 8)
    bt = lp.quantize(x, "mxfp4")
    assert bt.scale_codes.tolist() == [127]
    assert bt.dequantize()[:4].tolist() == [0.5, -1.0, 3.0, 6.0]


def test_quick_start_comments_hold():
    x = np.float32([1.3, 464.0, 500.0, -0.0])
    b = lambda a: np.asarray(a, np.float32).view(np.uint32).tolist()  # noqa: E731
    assert b(lp.round(x, "float8_e4m3fn")) == b([1.25, 448.0, np.nan, -0.0])
    assert b(lp.round(x, "e4m3", overflow="saturate")) == b([1.25, 448.0, 448.0, -0.0])
    assert b(lp.round(x, "e4m3", "up")) == b([1.375, np.nan, np.nan, -0.0])
    assert lp.encode(x, "e4m3").tolist() == [0x3A, 0x7E, 0x7F, 0x80]


def test_compare_comments_hold():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    golden = lp.round(x, "bfloat16")
    kernel = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    r = lp.compare(kernel, golden, "bfloat16")
    # oracle for the count: truncation differs from nearest-even exactly where the 16 dropped
    # bits round up: above half, or exactly half with an odd kept part
    low = x.view(np.uint32) & np.uint32(0xFFFF)
    odd = (x.view(np.uint32) >> np.uint32(16)) & np.uint32(1)
    ups = int(np.sum((low > 0x8000) | ((low == 0x8000) & (odd == 1))))
    assert (r.mismatches, r.max_ulp) == (ups, 1) == (470, 1)


def test_arithmetic_and_accumulator_comments_hold():
    assert lp.add(1.0, 2**-30, "bfloat16", "up") == 1.0078125
    assert lp.fma(1 + 2**-30, 1 + 2**-30, -1.0, "float32") == 2.0**-29
    assert lp.div(1.0, 3.0, "float8_e4m3fn") == 0.34375
    assert lp.sqrt(2.0, "float16") == 1.4140625
    a = np.float32([[448, 2**-6, 2**-6, -448]])
    b = np.ones((4, 1), np.float32)
    for preset, want in (("exact", 0.03125), ("fp32-sequential", 0.03125), ("h100-fp8", 0.0),
                         ("b200-fp8", 0.03125)):
        assert lp.matmul(a, b, preset)[0, 0] == want


def test_jax_comments_hold():
    import jax
    import lowprec_jax as lj
    x = np.float32([1.3, 464.0, -0.0, 3e-3])
    y = jax.jit(lambda v: lj.round(v, "float8_e4m3fn", "stochastic", seed=7))(x)
    assert np.array_equal(np.asarray(y).view(np.uint32),
                          lp.round(x, "float8_e4m3fn", "stochastic", seed=7).view(np.uint32))
    g = jax.grad(lambda v: lj.round(v, "float8_e4m3fn", grad_fmt="float8_e5m2").sum())(x)
    assert np.asarray(g).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_jax_block_and_matmul_comments_hold():
    import jax
    import lowprec_jax as lj
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    assert np.array_equal(lj.quantize(w, "nvfp4").to_core().codes,
                          lp.quantize(w, "nvfp4").codes)
    with jax.enable_x64(True):
        a = np.asarray(lj.round(w.T, "float8_e4m3fn", dtype=np.float32))
        d = np.asarray(jax.jit(lambda a, b: lj.matmul(a, b, "h100-fp8"))(a, a.T))
    assert np.array_equal(d.view(np.uint32), lp.matmul(a, a.T, "h100-fp8").view(np.uint32))


def test_torch_comments_hold():
    import torch  # noqa: PLC0415
    import lowprec_torch as lt  # noqa: PLC0415
    x = torch.randn(64, 128)
    y = lt.round(x, "float8_e4m3fn", "stochastic", seed=7)
    want = lp.round(x.numpy(), "float8_e4m3fn", "stochastic", seed=7)
    assert np.array_equal(y.numpy().view(np.uint32), want.view(np.uint32))
    assert np.array_equal(lt.quantize(x, "nvfp4").codes.numpy(), lp.quantize(x.numpy(),
                                                                               "nvfp4").codes)


def test_broken_kernel_report_is_what_the_commands_print(tmp_path):
    """README's "Checking a kernel": the three commands, run as written, print the report
    shown under them (the box of the wrong tile, the buckets, worst first)."""
    import subprocess
    import sys
    text = README.read_text()
    sec = text[text.index("## Checking a kernel's output"):]
    cmds = re.search(r"```\n(lowprec golden make matmul.*?)```", sec, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", sec, re.S).group(1)
    root = README.parent
    out = None
    for line in cmds.strip().splitlines():
        args = line.split()
        if args[0] == "lowprec":
            args = [sys.executable, "-m", "lowprec.cli"] + args[1:]
        else:
            args = [sys.executable, str(root / args[1])] + args[2:]
        out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert out.stdout == shown.replace("lowprec 0.1.0", f"lowprec {lp.__version__}")
    assert "every mismatch lies in rows 128-191 x columns 64-127 (100% of that box" in shown
