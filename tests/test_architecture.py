"""The layout holds: every import at module top, no circle, and no room imports from a room above it.

Rooms, lowest first (a room may import from its own and from lower rooms only):

    core → physics → nets → io → synth → training → methods → measure → evaluation → report → workflows → api
    → napari → cli

``api`` is one module (``neuradiff/api.py``), the Python API over the workflows; ``napari`` is the napari plugin.
``neuradiff/__init__.py`` (which re-exports the API), ``__main__.py`` and ``_version.py`` stand outside. The only
deferred imports are RosettaSciIO, an optional extra, loaded by name (``importlib``) when a microscope file is read,
and Dask distributed (seconds to import), loaded by name when a batch runs on a cluster.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "neuradiff"
ROOMS = [
    "core",
    "physics",
    "nets",
    "io",
    "synth",
    "training",
    "methods",
    "measure",
    "evaluation",
    "report",
    "workflows",
    "api",
    "napari",
    "cli",
]
RANK = {room: k for k, room in enumerate(ROOMS)}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _imports(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """(neuradiff modules imported at module level, (line, name) of imports inside functions or classes)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top, nested = [], []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        assert isinstance(node, ast.ImportFrom)
        if node.level:  # relative imports are not used in this package
            return [f".{node.module}"]
        base = node.module or ""
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (top if depth == 0 else nested).extend(
                    names(child) if depth == 0 else [(child.lineno, n) for n in names(child)]
                )
            inner = depth + isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, inner)

    visit(tree, 0)
    # ``try: import tomllib / except ImportError`` at module level is a top-level import too.
    return [n for n in top if n.startswith("neuradiff")], nested


def test_every_import_is_at_module_top():
    nested = {str(p.relative_to(ROOT)): _imports(p)[1] for p in MODULES.values()}
    assert {k: v for k, v in nested.items() if v} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_room_imports_from_a_room_above_it(module):
    room = _room(module)
    if room is None:
        return
    for target in _imports(MODULES[module])[0]:
        other = _room(target)
        assert other is None or RANK[other] <= RANK[room], f"{module} imports {target}: {other} is above {room}"


def test_no_import_circle_between_modules():
    graph = {m: {t for t in _imports(p)[0] if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " → ".join(stack[stack.index(t) :] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_room_table_names_every_room():
    rooms = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in ROOT.glob("*.py") if not p.name.startswith("_")}
    assert rooms == set(ROOMS)
