"""Every public function, class and method of qcoder_lib says what it is (a docstring), and
every module imports cleanly on its own."""

import ast
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "qcoder_lib"
MODULES = sorted(p for p in PKG.rglob("*.py"))
IMPORTABLE = [p for p in MODULES if p.name != "__main__.py"]  # __main__ runs a command line


def _public_defs(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("_"):
                continue
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for m in node.body:
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_"):
                        yield f"{node.name}.{m.name}", m


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_public_definitions_have_docstrings(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    missing = [name for name, node in _public_defs(tree) if not ast.get_docstring(node)]
    assert not missing, f"{path.relative_to(PKG.parent)}: no docstring on {missing}"


@pytest.mark.parametrize("path", IMPORTABLE, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_module_imports(path):
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    importlib.import_module(".".join(parts))
