"""poller's imports point down: no module imports, even late, one that imports it back."""

from __future__ import annotations

import ast
import pathlib

import pytest

import poller

PACKAGE = pathlib.Path(poller.__file__).parent


def module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    """``poller.store.outbox`` for ``<root>/store/outbox.py``; a package is its ``__init__``."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(
    node: ast.Import | ast.ImportFrom, current: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The package's modules one import statement loads: ``from a import b`` is ``a.b`` if
    that is a module, else ``a``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = node.module or ""
    if node.level:
        parts = current.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
    targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return targets & modules


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports anywhere (top level, functions, TYPE_CHECKING)."""
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= imported(node, name, path.name == "__init__.py", set(files))
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def write_package(root: pathlib.Path, modules: dict[str, str]) -> pathlib.Path:
    package = root / "pkg"
    for name, source in modules.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return package


@pytest.mark.parametrize(
    ("modules", "cycle"),
    [
        ({"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "import pkg.a\n"}, True),
        (
            {
                "__init__.py": "",
                "a.py": "def f():\n    from pkg.b import g\n",
                "b.py": "from pkg import a\n",
            },
            True,
        ),
        (
            {
                "__init__.py": "",
                "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg import b\n",
                "b.py": "from pkg.a import x\n",
            },
            True,
        ),
        (
            {
                "__init__.py": "",
                "sub/__init__.py": "from . import one\n",
                "sub/one.py": "from .two import x\n",
                "sub/two.py": "from pkg.sub import one\n",
            },
            True,
        ),
        (
            {
                "__init__.py": "",
                "sub/__init__.py": "from pkg.sub import one, two\n",
                "sub/one.py": "from pkg.sub import two\n",
                "sub/two.py": "import json\nfrom pkg import base\n",
                "base.py": "",
            },
            False,
        ),
    ],
    ids=["top-level", "late", "type-checking", "relative", "downward"],
)
def test_cycle_detector(tmp_path: pathlib.Path, modules: dict[str, str], cycle: bool) -> None:
    """The detector finds a cycle through any kind of import, and none where imports point down."""
    found = find_cycle(import_graph(write_package(tmp_path, modules)))
    assert (found is not None) == cycle


def test_poller_has_no_import_cycle() -> None:
    """No module of poller imports, at any depth or time, a module that imports it back."""
    graph = import_graph(PACKAGE)
    assert "poller.store.outbox" in graph["poller.delivery.dispatcher"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])
