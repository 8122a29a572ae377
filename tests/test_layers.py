"""The house's layering, read from the source: no import cycle between nnbin's modules
(imports inside functions count), the math layer imports only the array-API helpers and
the errors, and no chain of imports is longer than eight rooms (a room: one module of
nnbin, or a subpackage, cli or nnbin_backends, taken whole). ``python tests/test_layers.py``
prints the graph and the longest chain."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"nnbin": ROOT / "src" / "nnbin", "nnbin_backends": ROOT / "backends"}
#: the math: forward, loss, backward (model.py; the optimizers, optim.py, read the options
#: table for their hyperparameters, so they sit a floor above). It may import only these.
MATH = {"nnbin.model"}
MATH_MAY_IMPORT = MATH | {"nnbin.errors"}
#: the most rooms one chain of imports may pass through, top (``python -m nnbin``) to ground
LONGEST_CHAIN = 8
#: subpackages drawn as one room each
ROOMS = ("nnbin.cli", "nnbin_backends")


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = [package, *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the nnbin modules it imports anywhere in its text (top level or not)."""
    modules = {
        _module_name(pkg, folder, p): (pkg, p)
        for pkg, folder in PACKAGES.items()
        for p in sorted(folder.rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, (_pkg, path) in modules.items():
        here = name if path.stem == "__init__" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")
                    parent = parent[: len(parent) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                # "from . import x" and "from .a import b" (b a module or a name in a)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t not in PACKAGES and not name.startswith(f"{t}."):
                    found.add(t)
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def rooms(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each of ROOMS taken as one node (imports inside a room dropped)."""

    def room(m: str) -> str:
        return next((r for r in ROOMS if m == r or m.startswith(f"{r}.")), m)

    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        here = room(name)
        out.setdefault(here, set()).update(room(t) for t in targets if room(t) != here)
    return out


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest path of imports in an acyclic graph, from the importing end."""

    @functools.cache
    def longest(v: str) -> tuple[str, ...]:
        below = [longest(w) for w in graph.get(v, ())]
        return (v, *max(below, key=len, default=()))

    return list(max((longest(v) for v in graph), key=len))


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_math_layer_imports_only_the_math_and_the_errors():
    graph = import_graph()
    for name in MATH:
        assert graph[name] <= MATH_MAY_IMPORT, (name, graph[name] - MATH_MAY_IMPORT)


def test_no_chain_of_imports_is_longer_than_eight_rooms():
    chain = longest_chain(rooms(import_graph()))
    assert len(chain) <= LONGEST_CHAIN, " -> ".join(chain)


def test_the_graph_is_read_correctly():
    """The reader itself: a known edge of each kind (top level, relative, in a function)."""
    graph = import_graph()
    assert "nnbin.model" in graph["nnbin.loop"]  # from .model import ...
    assert "nnbin.backend" in graph["nnbin_backends.numpy"]  # from nnbin.backend import ...
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(planted) == [["a", "b", "c"]]
    assert longest_chain({"a": {"b", "d"}, "b": {"c"}, "c": set(), "d": set()}) == ["a", "b", "c"]
    merged = rooms({"nnbin.cli.train": {"nnbin.cli.common", "nnbin.training"}})
    assert merged == {"nnbin.cli": {"nnbin.training"}}


if __name__ == "__main__":
    g = import_graph()
    for k in sorted(g):
        print(f"{k}: {', '.join(sorted(g[k])) or '-'}")
    print("cycles:", cycles(g) or "none")
    print("longest chain:", " -> ".join(longest_chain(rooms(g))))
