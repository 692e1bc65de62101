"""torchao's public MXFP8 golden cases (tests/data/torchao_mxfp8_cases.json, transcribed from
pytorch/ao torchao/testing/_mxfp8_test_utils.py with its BSD-3-Clause licence): named 32-element
blocks in float32 and bfloat16 with the expected E8M0 scale byte and E4M3 element bytes for the
FLOOR and RCEIL scale rules, and float32 values around the E8M0 round-up boundaries."""
import json
import pathlib

import ml_dtypes
import numpy as np
import pytest

import lowprec as lp

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "torchao_mxfp8_cases.json")
                  .read_text())
# torchao's MXFP8: OCP floor, or rceil; a block holding Inf or NaN, and a scale above 2^127,
# make the scale NaN (0xFF) and the elements NaN (0x7F)
TORCHAO = {"floor": lp.block_format("mxfp8_e4m3"),
           "rceil": lp.BlockFormat("float8_e4m3fn", scale_rule="rceil", name="torchao_rceil")}
UINT = {"float32": (np.uint32, np.float32), "bfloat16": (np.uint16, ml_dtypes.bfloat16)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("mode", ["floor", "rceil"])
def test_torchao_mxfp8_semantic_cases(dtype, mode):
    rows = [r for r in DATA["blocks"] if r["dtype"] == dtype and r["mode"] == mode]
    assert len(rows) == 18
    ut, ft = UINT[dtype]
    x = np.empty((len(rows), 32), ut)
    want_data = np.empty((len(rows), 32), np.uint8)
    for i, r in enumerate(rows):
        x[i] = int(r["fill"], 16)
        want_data[i] = r["data"]
        if r["first"] is not None:
            x[i, 0] = int(r["first"], 16)
        if r["data_first"] is not None:
            want_data[i, 0] = r["data_first"]
    bt = lp.quantize(x.view(ft), TORCHAO[mode])
    for i, r in enumerate(rows):
        assert int(bt.scale_codes[i, 0]) == r["scale"], r["name"]
        assert bt.codes[i, 0].tolist() == want_data[i].tolist(), r["name"]


def test_torchao_f32_to_e8m0_round_up_boundaries():
    """The E8M0 conversion inside rceil: round a float32 up to a power of two, 2^-127 at the
    bottom (zero included, as an all-zero block's scale), NaN (0xFF) above 2^127 and for Inf
    and NaN."""
    vals = np.array([int(v, 16) for v, _ in DATA["f32_to_e8m0_rceil"]], np.uint32)
    want = [s for _, s in DATA["f32_to_e8m0_rceil"]]
    x = vals.view(np.float32)
    nz = x != 0
    got = lp.encode(x[nz], "float8_e8m0fnu", rounding="up", overflow="nan")
    assert got.tolist() == [w for w, keep in zip(want, nz) if keep]
    # zero: an all-zero block gets scale code 0 under every rule
    for rule in ("floor", "rceil"):
        bt = lp.quantize(np.zeros(32, np.float32), lp.BlockFormat("float8_e4m3fn",
                                                                  scale_rule=rule))
        assert int(bt.scale_codes[0]) == want[0] == 0
