"""The house rules of the code base, checked on the source: no import circles (lazy imports
inside functions count), each adapter's ``__init__.py`` only hands names on, the adapters use
only the core's public names, and every file the code or docs cite exists."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lowprec", "lowprec_jax", "lowprec_torch")


def _module(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """Modules of our packages that ``path`` imports (top-level or inside functions)."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    known = {_module(p) for p in _files()}
    return {m for m in out if m in known and m != mod and not mod.startswith(m + ".")
            and not (m in PACKAGES and mod.split(".")[0] == m)}


def _files():
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))]


def test_no_import_circles():
    graph = {_module(p): _imports(p) for p in _files()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("pkg", ["lowprec_jax", "lowprec_torch"])
def test_adapter_init_only_hands_names_on(pkg):
    tree = ast.parse((ROOT / pkg / "__init__.py").read_text())
    for node in tree.body:
        ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
            isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"])
        assert ok, f"{pkg}/__init__.py line {node.lineno} does more than hand names on"


def test_adapters_use_only_the_public_core():
    """No private core name in the adapters: neither in text (the two greps of issue 18) nor as
    an attribute of an imported core module or a name imported from one."""
    text = re.compile(r"lowprec\.[a-z_]*\._[a-z]|from lowprec\._")
    bad = []
    for pkg in ("lowprec_jax", "lowprec_torch"):
        for p in sorted((ROOT / pkg).rglob("*.py")):
            src = p.read_text()
            bad += [f"{p.name}:{i}: {line.strip()}" for i, line in
                    enumerate(src.splitlines(), 1) if text.search(line)]
            core = set()
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == \
                        "lowprec":
                    bad += [f"{p.name}:{node.lineno}: imports {a.name}" for a in node.names
                            if a.name.startswith("_")]
                    core |= {a.asname or a.name for a in node.names}
                elif isinstance(node, ast.Import):
                    core |= {a.asname or a.name for a in node.names
                             if a.name.split(".")[0] == "lowprec"}
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id in core and node.attr.startswith("_") and \
                        not node.attr.startswith("__"):
                    bad.append(f"{p.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, "private core names used by an adapter:\n" + "\n".join(bad)


# The rules written once (lowprec/xstep.py, lowprec/xscale.py): no NumPy, JAX or torch module
# defines them again (the Numba, JAX-lane and Triton kernels mirror the names by design).
ONCE = {"lowprec/xscale.py": ("scale_exp", "pow2_scales", "times_pow2", "floor_log2",
                              "is_pow2", "te_tensor_scales", "te_block_scales",
                              "torchao_tensor_scales", "torchao_block_scales"),
        "lowprec/xstep.py": ("round_bits", "round_parts", "philox")}
KERNELS = ("lowprec/_kernels.py", "lowprec/_fast.py", "lowprec/_blockfast.py",
           "lowprec_jax/_round.py", "lowprec_jax/stream.py", "lowprec_torch/triton/")


def test_each_rule_is_defined_once():
    bad = []
    for home, names in ONCE.items():
        for p in sorted(ROOT.glob("lowprec*/**/*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel == home or rel.startswith(KERNELS):
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in names:
                    bad.append(f"{rel}:{node.lineno}: {node.name} (written in {home})")
    assert not bad, "\n".join(bad)


def test_every_cited_document_exists():
    cited = re.compile(r"\b(docs/[a-z0-9_-]+\.md|SPECS\.md)")
    missing = []
    for p in [*_files(), ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in set(cited.findall(p.read_text())):
            if not (ROOT / name).exists():
                missing.append(f"{p.relative_to(ROOT)} cites {name}")
    assert not missing, "\n".join(missing)
