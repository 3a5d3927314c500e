"""The package's import graph runs one way: each layer imports only the layers before it, with no cycle.

The layers, in pipeline order (``sim/__init__.py`` documents them):

    base (errors, fileio, progress, topology) -> config -> workload -> model | engine -> prune | analysis
      -> report -> pipeline -> study | testbed -> cli

``model`` and ``engine`` are siblings: neither imports the other. Imports inside functions count too, so a
function-local import cannot hide a back-edge; the only function-local imports allowed are those that keep
torch or matplotlib out of a command that does not need them, and each says so in a comment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

SIM = Path(__file__).resolve().parents[1] / "sim"
RANK = {
    "base": 0,
    "config": 1,
    "workload": 2,
    "model": 3,
    "engine": 3,
    "prune": 4,
    "analysis": 4,
    "report": 5,
    "pipeline": 6,
    "study": 7,
    "testbed": 7,
    "cli": 8,
}
BASE = {"sim.errors", "sim.fileio", "sim.progress", "sim.topology"}


def _module(path: Path) -> str:
    parts = path.relative_to(SIM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer of a ``sim`` module; ``None`` for the package root and ``__main__`` (entry points)."""
    if module in BASE:
        return "base"
    if module in ("sim", "sim.__main__"):
        return None
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported sim module, line, inside a function)`` for every import of a sim module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local_lines = {
        n.lineno
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sim") and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("sim")]
        for name in names:
            if (SIM.parent / Path(*name.split("."))).with_suffix(".py").exists() or (
                SIM.parent / Path(*name.split(".")) / "__init__.py"
            ).exists():
                found.append((name, node.lineno, node.lineno in local_lines))
    return found


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in SIM.rglob("*.py"):
        src = _module(path)
        g.add_node(src)
        for dst, line, local in _imports(path):
            if dst != src:
                g.add_edge(src, dst, line=line, local=local, file=path)
    return g


def test_no_import_cycles() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == [], f"import cycles: {cycles}"


def test_every_import_points_to_an_earlier_layer() -> None:
    wrong = []
    for src, dst, data in _graph().edges(data=True):
        a, b = _layer(src), _layer(dst)
        if a is None or b is None or a == b:
            continue
        if RANK[b] >= RANK[a]:
            wrong.append(f"{src} ({a}) imports {dst} ({b}) at line {data['line']}")
    assert wrong == [], "imports against the pipeline:\n" + "\n".join(wrong)


def test_function_local_imports_say_why() -> None:
    unexplained = []
    for src, _dst, data in _graph().edges(data=True):
        if data["local"]:
            line = data["file"].read_text(encoding="utf-8").splitlines()[data["line"] - 1]
            if "#" not in line and src != "sim":  # sim/__init__ loads run/sweep lazily by design
                unexplained.append(f"{src} line {data['line']}: {line.strip()}")
    assert unexplained == [], "function-local imports without a reason:\n" + "\n".join(unexplained)


def test_torch_free_layers_do_not_import_torch() -> None:
    for layer in ("config", "workload", "engine", "analysis", "report", "study"):
        for path in (SIM / layer).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                )
                assert not any(m == "torch" or m.startswith("torch.") for m in mods), f"{path} imports torch"


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_room_holds_more_than_15_percent_of_the_lines() -> None:
    """Each subpackage (and each top-level module) is one room of the house: none outgrows the others."""
    rooms: dict[str, int] = {}
    for path in SIM.rglob("*.py"):
        room = path.relative_to(SIM).parts[0]
        rooms[room] = rooms.get(room, 0) + _lines(path)
    total = sum(rooms.values())
    big = {room: f"{n / total:.1%}" for room, n in rooms.items() if n > 0.15 * total}
    assert big == {}, f"rooms over 15 % of the package's {total} lines: {big}"
