"""The package's layers: a lower layer never imports a higher one (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stemqd"

#: Rank of each top-level module or subpackage, bottom up. ``aimd`` sits beside the image
#: side: it may import only the bottom layers (rank <= 2), and of the image side only
#: ``simulation`` (the MD-snapshot phonons) and ``cli`` import it.
RANK = {
    "errors": 0,
    "files": 1,
    "jit": 1,
    "provenance": 1,
    "optics": 2,
    "materials": 2,
    "io": 3,
    "preprocess": 4,
    "columns": 5,
    "simulation": 6,
    "analysis": 7,
    "config": 8,
    "pipeline": 9,
    "summary": 9,
    "batch": 10,
    "report": 11,
    "cli": 12,
}
AIMD_MAX_RANK = 2
AIMD_USERS = {"simulation", "cli"}


def _layer(path):
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imports(path):
    """stemqd layers imported anywhere in a module (top-level and inside functions)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = (*base, *(node.module.split(".") if node.module else ()))
                names = [target] if node.module else [(*base, a.name) for a in node.names]
            elif node.module and node.module.split(".")[0] == "stemqd":
                names = [tuple(node.module.split("."))]
            else:
                continue
            for t in names:
                if len(t) > 1 and t[0] == "stemqd":
                    found.add(t[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "stemqd" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _modules():
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py" and p != PACKAGE / "__init__.py"
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import(path):
    layer = _layer(path)
    for target in _imports(path) - {layer, "__version__"}:
        if target not in RANK and target != "aimd":
            continue  # a name imported from the package root (``__version__``)
        if layer == "aimd":
            assert RANK[target] <= AIMD_MAX_RANK, f"aimd imports {target}"
        elif target == "aimd":
            assert layer in AIMD_USERS, f"{layer} imports aimd"
        else:
            assert RANK[target] <= RANK[layer], f"{layer} (rank {RANK[layer]}) imports {target}"


def test_imports_are_seen():
    # The check above is only as good as the import reader: it must see relative imports
    # at every depth, imports inside functions, and absolute ones.
    assert {"preprocess", "columns", "analysis", "config"} <= _imports(PACKAGE / "pipeline.py")
    assert {"columns", "optics", "materials", "errors"} <= _imports(
        PACKAGE / "simulation" / "parameters.py"
    )
    assert "aimd" in _imports(PACKAGE / "simulation" / "snapshot_phonons.py")


def test_every_layer_is_ranked():
    layers = {_layer(p) for p in _modules()}
    assert layers - set(RANK) - {"aimd", "chain_bias"} == set()


@pytest.mark.parametrize("package", ["aimd", "analysis", "columns", "preprocess", "simulation"])
def test_every_module_of_a_lazy_package_is_an_attribute(package):
    """``stemqd.<package>.<module>`` works for every module file, without an import of it
    (the lazy loader lists the submodules by hand)."""
    import importlib

    pkg = importlib.import_module(f"stemqd.{package}")
    files = sorted(p.stem for p in Path(pkg.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert files and all(
        getattr(pkg, name).__name__ == f"stemqd.{package}.{name}" for name in files
    )
