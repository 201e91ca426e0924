"""The package's shape: no import cycle (TYPE_CHECKING and function-local imports count), a pure
``market/``, and the engine and runner imported only from above them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Module name -> file, by the package-dir mapping that pyproject.toml installs."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out: dict[str, Path] = {}
    for package, folder in mapping.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = f
    return out


def _imports(mods: dict[str, Path]) -> nx.DiGraph:
    """Every import statement anywhere in a module, resolved to the package's own modules."""
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rsplit(".", 1)[0] if "." in n else ""
                # a submodule naming its own package (``from tokenomy import registry``) runs the
                # package's __init__ first in any case: not a dependency of design
                if n and n != m and not m.startswith(n + "."):
                    g.add_edge(m, n)
    return g


MODULES = _modules()
IMPORTS = _imports(MODULES)


def test_the_walk_sees_the_whole_package() -> None:
    assert {"tokenomy.simulation", "tokenomy.agents.firm", "tokenomy.market.ledger", "tokenomy.registry"} <= set(
        MODULES
    )
    assert IMPORTS.has_edge("tokenomy.runner", "tokenomy.simulation")  # the walk finds real edges


def test_no_import_cycle() -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(IMPORTS) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_market_imports_nothing_from_the_core() -> None:
    def in_market(name: str) -> bool:
        return name == "tokenomy.market" or name.startswith("tokenomy.market.")

    for m in filter(in_market, MODULES):
        outside = [n for n in IMPORTS.successors(m) if not in_market(n)]
        assert not outside, f"{m} imports {outside}: market/ must stay pure"


def test_engine_and_runner_are_imported_only_from_above() -> None:
    """Functions take what they read (world, view, outcome, scenario): no module below the round
    graph reaches for the whole simulation, nor for the runner."""
    # the public face, the command line, and sweeps (which drive whole runs, as the command line does)
    above = {"tokenomy", "tokenomy.cli", "tokenomy.sweep", "tokenomy.sweep_executors"}
    assert set(IMPORTS.predecessors("tokenomy.simulation")) <= above | {"tokenomy.rounds", "tokenomy.runner"}
    assert set(IMPORTS.predecessors("tokenomy.runner")) <= above
