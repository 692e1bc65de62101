"""The README's Python quick start runs as written, and its commented results are true."""
import pathlib
import re

import numpy as np

import lowprec as lp

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_block_runs():
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})


def test_quick_start_comments_hold():
    x = np.float32([1.3, 464.0, 500.0, -0.0])
    b = lambda a: np.asarray(a, np.float32).view(np.uint32).tolist()  # noqa: E731
    assert b(lp.round(x, "float8_e4m3fn")) == b([1.25, 448.0, np.nan, -0.0])
    assert b(lp.round(x, "e4m3", overflow="saturate")) == b([1.25, 448.0, 448.0, -0.0])
    assert b(lp.round(x, "e4m3", "up")) == b([1.375, np.nan, np.nan, -0.0])
    assert lp.encode(x, "e4m3").tolist() == [0x3A, 0x7E, 0x7F, 0x80]
