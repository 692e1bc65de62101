"""The command line: tables, value listings, rounding, and one-line errors."""
import subprocess
import sys

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
