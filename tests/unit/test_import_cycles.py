"""No import circles among the project's modules (STYLE.md): what two modules both need belongs in a
module below both. Every import counts, wherever it is written: at the top, inside a function (a lazy
import keeps start-up light, it does not make a circle right), or under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bridge", "workers", "config")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's project imports, as module names (``from a.b import c``: ``a.b.c`` if a module, else ``a.b``)."""
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                names += [f"{node.module}.{alias.name}" for alias in node.names]
        graph[module] = {target for name in names if (target := resolve(name)) not in (None, module)}
    return graph


def test_the_scan_sees_imports_of_every_kind() -> None:
    graph = _imports(_modules())
    assert "bridge.shop_commands" in graph["bridge.cli"]  # at the top
    assert "workers.platforms.shopify.api" in graph["workers.platforms"]  # inside a function
    assert "bridge.cli_state" in graph["bridge.shop_commands"]  # under TYPE_CHECKING


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _imports(_modules())
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None
