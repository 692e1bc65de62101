"""Golden files: make / save / load / check, the CLI, and files that are corrupt, hostile or
from another version (they fail to load with a clear error and never run code)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import lowprec as lp
from lowprec import golden as G


def run(*args):
    return subprocess.run([sys.executable, "-m", "lowprec.cli", *args], capture_output=True,
                           text=True)


@pytest.mark.parametrize("op,fmt,rounding", [("round", "float8_e4m3fn", "nearest_even"),
                                             ("encode", "float4_e2m1fn", "toward_zero"),
                                             ("round", "bfloat16", "stochastic"),
                                             ("quantize", "nvfp4", "nearest_even"),
                                             ("quantize", "mxfp8_e4m3", "stochastic")])
def test_make_save_load_check(tmp_path, op, fmt, rounding):
    g = G.make(op, fmt, (8, 64), seed=11, rounding=rounding)
    path = tmp_path / "g.npz"
    G.save(g, path)
    h = G.load(path)
    assert h["metadata"] == json.loads(json.dumps(g["metadata"]))
    for k, v in g.items():
        if k != "metadata":
            assert v.dtype == h[k].dtype and np.array_equal(v.view(np.uint8), h[k].view(np.uint8))
    x = h["input"]
    assert np.isnan(x).any() and np.isinf(x).any()          # specials are in the inputs
    kw = {"seed": 11} if rounding == "stochastic" else {}
    if op == "quantize":
        want = lp.fake_quantize(x, fmt, rounding=rounding, **kw)
        assert G.check(h["codes"], h, "codes").ok and G.check(h["scale_codes"], h,
                                                              "scale_codes").ok
    else:
        want = (lp.round if op == "round" else lp.encode)(x, fmt, rounding, **kw)
    assert G.check(want, h).ok
    bad = want.copy()
    bad.reshape(-1)[5] = bad.reshape(-1)[6] if bad.reshape(-1)[5] != bad.reshape(-1)[6] else 0
    r = G.check(bad, path)
    assert r.mismatches == 1 and r.worst[0]["index"] == np.unravel_index(5, bad.shape)


def test_hostile_corrupt_and_foreign_files(tmp_path):
    pickled = tmp_path / "p.npz"
    np.savez(pickled, metadata=np.zeros(3, np.uint8), input=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="metadata is not UTF-8 JSON"):
        G.load(pickled)
    junk = tmp_path / "j.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        G.load(junk)
    g = G.make("round", "float8_e5m2", (4,), seed=1)
    for change, msg in [(dict(lowprec_golden=2), "version 2"), (dict(op="sum"), "unknown op"),
                        (dict(arrays={"input": ["float32", [4]]}), "metadata says nothing")]:
        bad = dict(g, metadata=dict(g["metadata"], **change))
        G.save(bad, tmp_path / "b.npz")
        with pytest.raises(ValueError, match=msg):
            G.load(tmp_path / "b.npz")
    np.savez(tmp_path / "m.npz", input=np.zeros(2))
    with pytest.raises(ValueError, match="no 'metadata'"):
        G.load(tmp_path / "m.npz")
    np.savez(tmp_path / "t.npz", metadata=np.frombuffer(b"\xff\xfe", np.uint8))
    with pytest.raises(ValueError, match="not UTF-8 JSON"):
        G.load(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="op='conv' is not supported"):
        G.make("conv", "float32", (2,), 0)


def test_cli_make_and_check(tmp_path):
    out = tmp_path / "g.npz"
    r = run("golden", "make", "round", "float8_e4m3fn", "--shape", "16,32", "--seed", "5",
            "--out", str(out))
    assert r.returncode == 0 and "wrote" in r.stdout
    g = G.load(out)
    np.save(tmp_path / "ok.npy", g["expected"])
    np.save(tmp_path / "bad.npy", lp.round(g["input"], "float8_e4m3fn", "toward_zero"))
    r = run("check", str(tmp_path / "ok.npy"), str(out))
    assert r.returncode == 0 and "0 bit mismatches" in r.stdout
    r = run("check", str(tmp_path / "bad.npy"), str(out))
    assert r.returncode == 1 and "bit mismatches" in r.stdout and "at (" in r.stdout
    r = run("check", str(tmp_path / "ok.npy"), str(tmp_path / "missing.npz"))
    assert r.returncode == 2 and "cannot be read" in r.stderr and "Traceback" not in r.stderr
    r = run("golden", "make", "round", "e4m3", "--shape", "4,x", "--seed", "1", "--out", "o")
    assert r.returncode == 2 and "give sizes like 4,64" in r.stderr


def test_matmul_golden_file_holds_the_unit_outputs(tmp_path):
    """A matmul golden file of h100-fp8: inputs in E4M3, expected values equal to the rational
    model of the unit (tests/oracle_mma.py), and a kernel's output off by one ulp is caught."""
    from fractions import Fraction as Fr

    import oracle_mma as om
    g = G.make("matmul", "h100-fp8", (3, 70, 2), seed=5)
    path = tmp_path / "mm.npz"
    G.save(g, path)
    h = G.load(path)
    a, b, c, want = h["a"], h["b"], h["c"], h["expected"]
    assert a.shape == (3, 70) and b.shape == (70, 2) and want.dtype == np.float32
    assert np.all(lp.format("float8_e4m3fn").is_representable(a))
    for i in range(3):
        for j in range(2):
            r = om.fused_dot([Fr(float(v)) for v in a[i]], [Fr(float(v)) for v in b[:, j]],
                             Fr(float(c[i, j])), 32, 13, True, "truncate", -6, -6, -126,
                             (14, -126, 127, "toward_zero"))
            assert want[i, j] == np.float32(float(r))
    assert G.check(want.copy(), h).ok
    bad = want.copy()
    bad.view(np.uint32)[1, 1] += 1
    rep = G.check(bad, h)
    assert not rep.ok and rep.mismatches == 1
    out = run("golden", "make", "matmul", "a100-fp16", "--shape", "4,3", "--seed", "1",
              "--out", str(tmp_path / "x.npz"))
    assert out.returncode == 2 and "(M, K, N)" in out.stderr
