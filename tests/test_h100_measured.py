"""Every row this project measured on a real H100 (tests/data/h100_measured, made by
gpu/tensor_cores.py) reproduced bit for bit by the lp.hardware presets: fp16, bf16, tf32 and
both fp8 inputs, c non-zero, K up to 512 chained through the fused adder's steps; and Triton's
``max_num_imprecise_acc=32`` fp8 dot = the h100-fp8 step promoted into float32 every 32
products (the DeepSeek-V3 scheme, with 32 in place of 128)."""
import pathlib

import numpy as np
import pytest

import lowprec as lp

DATA = np.load(pathlib.Path(__file__).parent / "data" / "h100_measured" / "H100_measured.npz")
CASES = sorted({k.rsplit(".", 1)[0] for k in DATA.files})
FMT = {"fp16": "float16", "bf16": "bfloat16", "tf32": "tfloat32", "e4m3": "float8_e4m3fn",
       "e5m2": "float8_e5m2"}


def accumulator(case):
    kind = case.split("_")[0]
    fmt = FMT[kind]
    if kind in ("e4m3", "e5m2"):
        h = lp.hardware.preset("h100-fp8", inputs=(fmt, fmt))
        if "imprecise32" in case:
            return lp.Accumulator(h.fmt, h.rounding, fused=h.fused, input_formats=h.input_formats,
                                  addend_format="float32", promote_every=32,
                                  promote_to=lp.Accumulator("float32"))
        return h
    return lp.hardware.preset(f"h100-{kind}")


def test_every_case_is_here():
    assert len(CASES) == 12 and sum(DATA[f"{c}.a"].shape[0] for c in CASES) >= 6000


@pytest.mark.parametrize("case", CASES)
def test_every_measured_row(case):
    a, b, c = (DATA[f"{case}.{k}"].view(np.float32) for k in ("a", "b", "c"))
    assert (c != 0).any() and a.shape[1] >= 16
    d = lp.matmul(a[:, None, :], b[:, :, None], accumulator(case), c[:, None, None])[:, 0, 0]
    match = d.view(np.uint32) == DATA[f"{case}.d_fp32"]
    assert match.all(), f"{case}: {match.sum()}/{match.size} rows"


def test_the_promoted_rows_are_not_the_plain_chain():
    """The data tells the two fp8 accumulations apart: the plain h100-fp8 chain misses most
    rows that Triton accumulated with max_num_imprecise_acc=32."""
    case = "e4m3_k512_imprecise32"
    a, b, c = (DATA[f"{case}.{k}"].view(np.float32) for k in ("a", "b", "c"))
    d = lp.matmul(a[:, None, :], b[:, :, None], "h100-fp8", c[:, None, None])[:, 0, 0]
    assert (d.view(np.uint32) != DATA[f"{case}.d_fp32"]).mean() > 0.5
