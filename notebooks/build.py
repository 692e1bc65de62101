"""Build the notebooks: notebooks/src/NN_name.py (cells split at "# %%" lines; "# %% [markdown]"
cells are Markdown written as "# " comments) -> notebooks/NN_name.ipynb, executed top to bottom
so the committed files carry their outputs. Usage: python notebooks/build.py [--text] [NAME ...]
(--text: only the Markdown cells, from the source, into the already executed notebook)

The .py files are the source to edit; `make notebooks` rebuilds every notebook and `make test`
re-executes the committed notebooks (nbmake)."""
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).parent


def cells(text):
    """The notebook cells of a "# %%" source."""
    out, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#")
                             for ln in body.splitlines())
            out.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "code" and body:
            out.append(nbformat.v4.new_code_cell(body))

    for ln in text.splitlines():
        if ln.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in ln else "code"), []
        elif kind is not None:
            lines.append(ln)
    flush()
    return out


def refresh_text(src):
    """Replace the Markdown cells of the built notebook by the source's, keeping the code cells
    and their outputs; refused when a code cell differs (then the notebook must be re-run)."""
    dest = HERE / (src.stem + ".ipynb")
    nb = nbformat.read(dest, as_version=4)
    new = cells(src.read_text())
    old_code = [(c.cell_type, c.source) for c in nb.cells if c.cell_type == "code"]
    if old_code != [(c.cell_type, c.source) for c in new if c.cell_type == "code"] or \
            [c.cell_type for c in nb.cells] != [c.cell_type for c in new]:
        sys.exit(f"{dest.name}: the code changed; rebuild it (python notebooks/build.py)")
    for c, n in zip(nb.cells, new):
        if c.cell_type == "markdown":
            c.source = n.source
    nbformat.write(nb, dest)
    print(f"{dest.name}: Markdown refreshed")


def build(src):
    nb = nbformat.v4.new_notebook(cells=cells(src.read_text()))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    t0 = time.time()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    dest = HERE / (src.stem + ".ipynb")
    nbformat.write(nb, dest)
    print(f"{dest.name}: {len(nb.cells)} cells, executed in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    text_only = "--text" in sys.argv
    names = [a for a in sys.argv[1:] if a != "--text"]
    chosen = [src for src in sorted((HERE / "src").glob("*.py"))
              if not names or any(n in src.stem for n in names)]
    if not chosen:
        sys.exit(f"no notebook source matches {names}; the sources are "
                 f"{[p.stem for p in sorted((HERE / 'src').glob('*.py'))]}")
    for src in chosen:
        (refresh_text if text_only else build)(src)
