"""Issue 21's kernel checks: lp.compare's report on badly wrong outputs (worst first, bucketed
ulp histogram, errors, row/column pattern, values outside the format, codes vs values, the NaN
rule), kernel layouts (packed FP4, block codes as (rows, cols), cuBLAS's swizzled scales) and
golden files that are corrupt or hostile (exit status 2, never a traceback).

Expected values are built by construction (bit offsets written into float32 words, codes packed
by hand, the swizzle as torchao's reshape/permute), not by running lowprec."""
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import lowprec as lp
from lowprec import golden as G


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lowprec.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def _bump(x, idx, k):
    """x with the float32 at idx moved k ulps (toward +inf for positive values)."""
    x.view(np.uint32)[idx] += np.uint32(k)


def test_report_of_a_badly_wrong_gemm_output():
    rng = np.random.default_rng(3)
    e = (rng.standard_normal((64, 48)) + 4).astype(np.float32)     # all positive: ulps add
    a = e.copy()
    offsets = {}
    for r in range(16, 32):                                       # a wrong tile
        for c in range(8, 16):
            k = 1 + (r * 7 + c) % 40
            _bump(a, (r, c), k)
            offsets[(r, c)] = k
    a[40, 47] = np.nan                                            # NaN on one side
    rep = lp.compare(a, e, show=5)
    assert rep.mismatches == len(offsets) + 1 and rep.nan_mismatches == 1
    assert rep.max_ulp == max(offsets.values())
    want = {}
    for k in offsets.values():
        lab = "1" if k == 1 else f"{1 << (k.bit_length() - 1)}-{(1 << k.bit_length()) - 1}"
        want[lab] = want.get(lab, 0) + 1
    want["NaN vs number"] = 1
    assert rep.buckets == want
    # worst first: the NaN, then the largest distances, ties in index order
    assert rep.worst[0]["index"] == (40, 47) and rep.worst[0]["class"] == "NaN vs number"
    order = sorted(offsets, key=lambda i: (-offsets[i], i))[:4]
    assert [w["index"] for w in rep.worst[1:]] == order
    assert [w["ulp"] for w in rep.worst[1:]] == [offsets[i] for i in order]
    rows = [0] * 64
    cols = [0] * 48
    for r, c in list(offsets) + [(40, 47)]:
        rows[r] += 1
        cols[c] += 1
    assert list(rep.rows) == rows and list(rep.cols) == cols
    # errors: from the exact differences of the float32 values
    fin = ~np.isnan(a)
    d = a[fin].astype(np.float64) - e[fin].astype(np.float64)
    assert rep.mean_error == pytest.approx(d.mean(), rel=1e-12)
    assert rep.max_rel_error == pytest.approx(np.max(np.abs(d) / e[fin]), rel=1e-12)
    assert rep.mean_ulp_error == pytest.approx(sum(offsets.values()) / fin.sum(), rel=1e-12)
    text = str(rep)
    assert "rows with mismatches: 17 of 64: 16-31, 40" in text
    assert "columns with mismatches: 9 of 48: 8-15, 47" in text
    assert "worst first:" in text and "... 124 more" in text
    assert json.loads(rep.to_json())["mismatches"] == 129


def test_a_wrong_tile_is_named_as_a_box_and_a_wrong_lane_as_a_period():
    e = np.ones((64, 64), np.float32)
    a = e.copy()
    a[32:48, 16:32] = 2.0
    rep = lp.compare(a, e)
    assert "every mismatch lies in rows 32-47 x columns 16-31 (100% of that box " \
           "mismatches)" in rep.pattern
    a = e.copy()
    a[:, 3::8] = 0.5
    rep = lp.compare(a, e)
    assert "every mismatch lies in columns whose index mod 8 is in {3}" in rep.pattern


def test_values_outside_the_format_are_counted_not_raised():
    e = np.float32([1.0, 2.0, 448.0, 0.5])
    a = np.float32([1.0, 2.1, 500.0, 0.5])
    rep = lp.compare(a, e, "float8_e4m3fn")
    assert (rep.mismatches, rep.off_format) == (2, 2)
    assert rep.buckets == {"not a value of the format": 2}
    assert {w["actual_code"] for w in rep.worst} == {"nearest 0x40", "nearest 0x7e"}
    codes = np.float32([0x38, 0x40, 0x7E, 0x30])                  # codes saved as floats
    rep = lp.compare(codes, e, "float8_e4m3fn")
    assert any("codes of float8_e4m3fn stored as float32" in p for p in rep.pattern)


def test_codes_and_values_are_told_apart():
    e = np.float32([1.0, -2.0, 0.5])
    codes = np.uint8([0x38, 0xC0, 0x30])                          # E4M3 1.0, -2.0, 0.5
    rep = lp.compare(codes, e, "float8_e4m3fn")
    assert rep.ok and rep.inputs["actual"] == "uint8 codes of float8_e4m3fn"
    assert lp.compare(codes, codes, "e4m3").ok                   # was a TypeError
    bad = codes.copy()
    bad[1] = 0xC1
    assert lp.compare(bad, codes, "e4m3").max_ulp == 1
    with pytest.raises(ValueError, match="pass fmt= the format whose codes they hold"):
        lp.compare(codes, codes)
    with pytest.raises(ValueError, match="too narrow for codes of float32"):
        lp.compare(codes, e, "float32")
    with pytest.raises(ValueError, match="holds 16, beyond its 4-bit codes"):
        lp.compare(np.uint8([16]), np.float32([1.0]), "float4_e2m1fn")


def test_nan_rule():
    n1 = np.uint32([0x7FC00000, 0x7FC00001, 0xFFC00000]).view(np.float32)
    n0 = np.uint32([0x7FC00000, 0x7FC00000, 0x7FC00000]).view(np.float32)
    assert lp.compare(n1, n0).ok                                  # any NaN equals any NaN
    strict = lp.compare(n1, n0, strict_nan=True)
    assert strict.mismatches == 2 and strict.buckets == {"NaN sign/payload": 2}
    assert strict.nan_mismatches == 0


def _to_blocked(m):
    """torchao's to_blocked, written with NumPy reshapes (the oracle for the swizzle)."""
    rows, cols = m.shape
    nr, nc = -(-rows // 128), -(-cols // 4)
    p = np.zeros((nr * 128, nc * 4), m.dtype)
    p[:rows, :cols] = m
    blocks = p.reshape(nr, 128, nc, 4).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, 4, 32, 4).transpose(0, 2, 1, 3).reshape(-1)


@pytest.mark.parametrize("shape", [(128, 4), (130, 7), (256, 8), (1, 1)])
def test_swizzled_scales_match_torchaos_layout(shape):
    m = np.random.default_rng(1).integers(1, 256, shape).astype(np.uint8)
    sw = lp.packing.swizzle_scales(m)
    assert np.array_equal(sw, _to_blocked(m))
    assert np.array_equal(lp.packing.unswizzle_scales(sw, *shape), m)
    with pytest.raises(ValueError, match="take 512 bytes"):
        lp.packing.unswizzle_scales(np.zeros(100, np.uint8), 5, 3)


def test_golden_layouts(tmp_path):
    g = G.make("quantize", "nvfp4", (256, 64), seed=4)
    path = tmp_path / "nv.npz"
    G.save(g, path)
    codes = g["codes"]                                            # (256, 4, 16)
    flat = codes.reshape(256, 64)                                 # as a kernel writes them
    assert G.check(flat, path, "codes").ok
    packed = (flat[:, 0::2] | (flat[:, 1::2] << 4)).astype(np.uint8)   # low nibble first
    assert G.check(packed, path, "codes", layout="fp4x2").ok
    wrong = packed.copy()
    wrong[3, 5] ^= 0x10                                           # element (3, 11)
    rep = G.check(wrong, path, "codes", layout="fp4x2")
    assert rep.mismatches == 1 and rep.worst[0]["index"] == (3, 11)
    sw = _to_blocked(g["scale_codes"])
    assert G.check(sw, path, "scale_codes", layout="cublas-scales").ok
    np.save(tmp_path / "sw.npy", sw)
    r = run("check", str(tmp_path / "sw.npy"), str(path), "--key", "scale_codes",
            "--layout", "cublas-scales")
    assert r.returncode == 0, r.stderr
    with pytest.raises(ValueError, match="applies to key='scale_codes'"):
        G.check(sw, path, "codes", layout="cublas-scales")
    with pytest.raises(ValueError, match="layout='nope' is not known"):
        G.check(flat, path, "codes", layout="nope")


def _npz(path, members):
    """A zip written by hand: {name: raw bytes}."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(arr):
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _meta(meta):
    return _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


@pytest.fixture
def good(tmp_path):
    g = G.make("round", "float8_e4m3fn", (8, 16), seed=2)
    return g, dict(g["metadata"])


def test_corrupt_golden_files_exit_2_with_a_message(tmp_path, good):
    g, meta = good
    np.save(tmp_path / "ok.npy", g["expected"])
    arrays = {"input.npy": _npy(g["input"]), "expected.npy": _npy(g["expected"])}
    no_format = {k: v for k, v in meta.items() if k != "format"}
    huge = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    huge["shape"] = (1 << 40,)
    hb = io.BytesIO()
    np.lib.format.write_array_header_1_0(hb, huge)
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "no_format": ({"metadata.npy": _meta(no_format), **arrays}, "no 'format' field"),
        "arrays_list": ({"metadata.npy": _meta(dict(meta, arrays=[["float32", [8, 16]]])),
                         **arrays}, "field 'arrays' is"),
        "huge": ({"metadata.npy": _meta(dict(meta, arrays=dict(
            meta["arrays"], input=["float32", [1 << 40]]))),
            "input.npy": hb.getvalue() + b"\0" * 64, "expected.npy": _npy(g["expected"])},
            "above the limit"),
        "deep": ({"metadata.npy": _npy(np.frombuffer(deep, np.uint8)), **arrays},
                 "nested too deeply"),
        "wrong_format": ({"metadata.npy": _meta(dict(meta, format="bfloat16")), **arrays},
                         "is not round\\(input, 'bfloat16'"),
        "objects": ({"metadata.npy": _meta(meta), "input.npy": _npy(np.array([1, None])),
                     "expected.npy": _npy(g["expected"])}, "holds Python objects"),
    }
    for name, (members, msg) in cases.items():
        p = tmp_path / f"{name}.npz"
        _npz(p, members)
        with pytest.raises(ValueError, match=msg):
            G.load(p)
        r = run("check", str(tmp_path / "ok.npy"), str(p))
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
    np.save(tmp_path / "g.npy", g["expected"])
    r = run("check", str(tmp_path / "ok.npy"), str(tmp_path / "g.npy"))
    assert r.returncode == 2 and "is a .npy array, not a golden file" in r.stderr


def test_unused_members_are_not_decompressed(tmp_path, good):
    g, meta = good
    p = tmp_path / "extra.npz"
    _npz(p, {"metadata.npy": _meta(meta), "input.npy": _npy(g["input"]),
             "expected.npy": _npy(g["expected"]),
             "junk.npy": _npy(np.zeros(50_000_000, np.float32))})  # 200 MB, a few KB zipped
    with zipfile.ZipFile(p) as z:
        assert z.getinfo("junk.npy").file_size > 190e6
    h = G.load(p)
    assert "junk" not in h and G.check(g["expected"], h).ok
    with pytest.raises(ValueError, match="above the limit of 1000 bytes"):
        G.load(p, keys=("junk",), max_bytes=1000)


def test_cli_check_exit_codes_and_json(tmp_path, good):
    g, _ = good
    path = tmp_path / "g.npz"
    G.save(g, path)
    np.save(tmp_path / "ok.npy", g["expected"])
    bad = g["expected"].copy()
    bad[2, 3] = 0.0 if bad[2, 3] != 0 else 1.0
    np.save(tmp_path / "bad.npy", bad)
    assert run("check", str(tmp_path / "ok.npy"), str(path)).returncode == 0
    r = run("check", str(tmp_path / "bad.npy"), str(path), "--json")
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert rep["mismatches"] == 1 and rep["worst"][0]["index"] == [2, 3] and not rep["ok"]
    np.save(tmp_path / "codes.npy", lp.encode(g["expected"], "float8_e4m3fn"))
    r = run("check", str(tmp_path / "codes.npy"), str(path))
    assert r.returncode == 0 and "uint8 codes of float8_e4m3fn" in r.stdout
    r = run("check", str(tmp_path / "ok.npy"), str(path), "--fmt", "float32")
    assert r.returncode == 0 and "in float32" in r.stdout


def test_cli_rounding_flags_and_display():
    r = run("round", "fp4", "0.7", "--rounding", "stochastic")
    assert r.returncode == 2 and "needs --seed N" in r.stderr
    r = run("round", "fp4", "0.7", "--seed", "3")
    assert r.returncode == 2 and "--seed applies to --rounding stochastic" in r.stderr
    r = run("round", "fp4", "0.7", "--rounding", "stochastic", "--seed", "3")
    assert r.returncode == 0
    r = run("round", "e4m3", "nan", "500", "-1e39")
    lines = r.stdout.splitlines()
    assert "neighbours n/a (NaN)" in lines[0]
    assert "neighbours [448.0, none]" in lines[1]
    assert "neighbours [none, -448.0]" in lines[2]
    r = run("round", "bf16", "1e39")
    assert "neighbours [3.3895313892515355e+38, inf]" in r.stdout
    r = run("show", "fp4")
    assert "0x8  1000  -0.0" in r.stdout
    r = run("quantize", "nvfp4", "x.npy", "--rounding", "stochastic")
    assert r.returncode == 2 and "needs --seed N" in r.stderr


@pytest.mark.parametrize("cmd", [[], ["formats"], ["show"], ["round"], ["block-formats"],
                                 ["quantize"], ["presets"], ["golden", "make"], ["check"]])
def test_every_help_has_examples_and_defaults(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "example" in r.stdout
    if cmd in (["round"], ["quantize"], ["check"], ["golden", "make"]):
        assert "(default: " in r.stdout
