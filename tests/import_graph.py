"""The import graph of the mgbench package, read from the source (AST), and its cycles.

Every ``import``/``from ... import`` of an mgbench module counts, at module level and inside
functions, except those under ``if TYPE_CHECKING:``. ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module, else of ``pkg``. Importing ``a.b.c`` also imports the packages
``a`` and ``a.b`` (their ``__init__`` runs) but those edges are left out: they are implied, and
counting them would make every package a member of the cycle through its own children.

    python tests/import_graph.py            # cycles (strongly connected components) and their sizes
    python tests/import_graph.py --edges    # also every edge inside a cycle, and function-level imports
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mgbench"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file for every module of the package (a package is its ``__init__``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """(node, at function level) for every import outside ``if TYPE_CHECKING:`` blocks."""

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    yield from walk_one(other, in_function)
                continue
            yield from walk_one(child, in_function)

    def walk_one(node, in_function):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from walk(node, inner)

    yield from walk(tree, False)


def graph(root: Path = ROOT):
    """(edges: module -> {module: [(line, function level)]}, module names)."""
    mods = modules(root)
    edges: dict[str, dict[str, list[tuple[int, bool]]]] = {m: {} for m in mods}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _imports(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                for alias in node.names:
                    sub = f"{prefix}.{alias.name}"
                    targets.append(sub if sub in mods else prefix)
            for target in targets:
                # `import a.b.c` names a.b.c; fall back to the longest known module prefix.
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                uses = edges[name].setdefault(target, []) if target and target != name and \
                    target.split(".")[0] == PACKAGE else None
                if uses is not None and (node.lineno, in_function) not in uses:
                    uses.append((node.lineno, in_function))
    return edges, sorted(mods)


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(found, key=len, reverse=True)


def function_level_imports(edges) -> list[tuple[str, str, int]]:
    return sorted({(src, line): dst for src, targets in edges.items() for dst, uses in targets.items()
                   for line, in_function in uses if in_function}.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list the edges inside each cycle")
    args = parser.parse_args(argv)
    edges, mods = graph()
    found = cycles(edges)
    local = function_level_imports(edges)
    print(f"{len(mods)} modules, {sum(len(t) for t in edges.values())} import edges, "
          f"{len(local)} function-level import statements of mgbench modules "
          f"({sum(not src.startswith(PACKAGE + '.cli') for (src, _), _ in local)} outside cli/)")
    print(f"{len(found)} cycle(s): sizes {[len(c) for c in found]}")
    for component in found:
        print(f"- {len(component)}: {', '.join(component)}")
        if args.edges:
            members = set(component)
            for src in component:
                for dst, uses in sorted(edges[src].items()):
                    if dst in members:
                        where = ", ".join(f"{line}{' (function)' if fn else ''}" for line, fn in uses)
                        print(f"    {src} -> {dst}  [line {where}]")
    if args.edges:
        print("function-level imports:")
        for (src, line), dst in local:
            print(f"    {src}:{line} -> {dst}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
