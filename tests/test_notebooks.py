"""The committed notebooks are built from their sources (notebooks/src/*.py) and carry outputs:
a stale .ipynb (source edited, notebook not rebuilt) or one committed without running fails
here. `make test` also re-executes every notebook (nbmake, LOWPREC_NB_QUICK=1)."""
import importlib.util
import pathlib

import nbformat
import pytest

NB = pathlib.Path(__file__).parents[1] / "notebooks"
SOURCES = sorted((NB / "src").glob("*.py"))
spec = importlib.util.spec_from_file_location("nb_build", NB / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def test_five_notebooks():
    assert [s.stem[:2] for s in SOURCES] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_source_and_has_outputs(src):
    nb = nbformat.read(NB / (src.stem + ".ipynb"), as_version=4)
    want = [(c.cell_type, c.source) for c in build.cells(src.read_text())]
    assert [(c.cell_type, c.source) for c in nb.cells] == want
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
