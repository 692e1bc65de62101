"""The command line: tables, value listings, rounding, and one-line errors."""
import subprocess
import sys

import numpy as np
import pytest

from lowprec.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "lowprec.cli", *args], capture_output=True,
                          text=True)


def test_formats_table(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    assert "float8_e4m3fn" in out and "448" in out and "hifloat8" in out


def test_show_lists_every_code(capsys):
    assert main(["show", "fp4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "0x7  0111  6.0" in out[-9]
    assert out[-1].strip() == "0xf  1111  -6.0"


def test_round_prints_code_error_and_neighbours(capsys):
    assert main(["round", "e4m3", "1.3", "464", "--rounding", "nearest_even"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1.3 -> 1.25  code 0x3a (00111010)")
    assert "neighbours [1.25, 1.375]" in out[0]
    assert out[1].startswith("464.0 -> 448.0  code 0x7e")


@pytest.mark.parametrize("args,msg", [
    (["round", "e4m3x", "1"], "unknown format 'e4m3x'"),
    (["round", "e4m3", "abc"], "VALUE must be numbers"),
    (["round", "e4m3", "1", "--overflow", "inf"], "has no Inf"),
])
def test_bad_arguments_give_one_line_and_non_zero_exit(args, msg):
    p = run(*args)
    assert p.returncode != 0
    assert msg in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_help():
    p = run("round", "--help")
    assert p.returncode == 0 and "--rounding" in p.stdout


def test_block_formats_table(capsys):
    assert main(["block-formats"]) == 0
    out = capsys.readouterr().out
    for name in ("mxfp4", "nvfp4_2d", "nvfp4_torchao", "nvfp4_4over6", "bfp16"):
        assert name in out
    assert any(line.split()[:3] == ["nvfp4", "float4_e2m1fn", "1x16"]
               for line in out.splitlines())


def test_quantize_prints_scales_and_errors_and_writes_npz(tmp_path, capsys):
    x = np.zeros((2, 32), np.float32)
    x[0, 0] = 3.0                  # OCP floor: 2^(1 - 2) = 0.5, code 126; 3 -> 6 exactly
    x[1, :2] = [1.0, 0.3]          # scale 2^(0 - 2) = 0.25, code 125; 0.3/0.25 = 1.2 -> 1
    f = tmp_path / "x.npy"
    np.save(f, x)
    out_npz = tmp_path / "q.npz"
    assert main(["quantize", "mxfp4", str(f), "--out", str(out_npz)]) == 0
    out = capsys.readouterr().out
    assert "2 blocks" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("(")]
    assert rows[0][2:4] == ["0x7e", "0.5"] and rows[1][2:4] == ["0x7d", "0.25"]
    # the only error is 0.3 -> 0.25
    assert f"max |err| {abs(0.25 - float(np.float32(0.3))):.6g}" in out
    z = np.load(out_npz)
    assert z["scale_codes"].tolist() == [[126], [125]]
    assert z["dequantized"][1, :2].tolist() == [1.0, 0.25]
    assert str(z["format"]) == "mxfp4"


def test_quantize_errors_are_one_line(tmp_path):
    f = tmp_path / "x.npy"
    np.save(f, np.zeros((2, 20), np.float32))
    r = run("quantize", "nvfp4_torchao", str(f))
    assert r.returncode == 2 and "multiple of k=16" in r.stderr and "Traceback" not in r.stderr
    r = run("quantize", "mxfp9", str(f))
    assert r.returncode == 2 and "unknown block format" in r.stderr


def test_output_into_a_closed_pipe_is_not_an_error():
    values = " ".join(str(i) for i in range(4000))          # ~400 KB, beyond a pipe buffer
    r = subprocess.run(f"{sys.executable} -m lowprec.cli round e4m3 {values} | head -1",
                       shell=True, capture_output=True, text=True)
    assert r.stdout.startswith("0.0 -> 0.0")
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("h100-fp8", "deepseek-v3-fp8", "b200-fp8", "exact", "fp32-sequential"):
        assert name in out
    assert "fused N=32 F=13, promote every 128 to float32" in out


def test_presets_per_instruction(capsys):
    assert main(["presets", "--instructions"]) == 0
    out = capsys.readouterr().out
    assert "sm_90   wgmma        f32.e4m3.e5m2   e8m13    toward_zero   fused N=32 F=13" in out
    assert "gfx942  v_mfma       f32.fp8.bf8     float32  nearest_even  fused N=16 F=24 " \
           "c-unaligned floored join 31 split 2" in out


def test_version():
    import lowprec
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"lowprec {lowprec.__version__}"
