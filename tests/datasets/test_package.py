"""The ``medseg.datasets`` package has no import cycles, counting imports made inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import medseg.datasets

PACKAGE = Path(medseg.datasets.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules of ``medseg.datasets`` that ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medseg.datasets."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("medseg.datasets.")}
    return found


def test_no_import_cycles() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path[path.index(module) :], module))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert graph["openkbp"] >= {"msd"} and "validate" not in graph["msd"]  # the cycle this test was written for
