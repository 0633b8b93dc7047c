"""No import cycle anywhere in ``dasslite/``: the module graph, read from the source, must be acyclic.

An edge A -> B is any ``import`` in A (at module level or inside a function: a deferred import that only works
because of the order things happen to load is still a cycle) that executes B: ``import a.b.c`` and
``from a.b import c`` (``c`` a module) execute ``a.b.c``; ``from a.b import name`` executes ``a.b``'s
``__init__``. Importing a module also runs the ``__init__`` of each package above it, except the packages the
importer itself lives in (they are already loading), so those edges are added too. A package ``__init__`` that
re-exports its submodules is fine, as long as the submodules import from each other and never through it.
"""
from __future__ import annotations

import ast
import os
import os.path as osp
from typing import Dict, List, Set, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def module_files(root: str, package: str) -> Dict[str, str]:
    """``{dotted module name: file}`` for every .py under ``root`` (the folder of ``package``)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
        for name in files:
            if name.endswith(".py"):
                rel = osp.relpath(osp.join(folder, name), root)[:-3].replace(os.sep, ".")
                dotted = package if rel == "__init__" else f"{package}.{rel}"
                if dotted.endswith(".__init__"):
                    dotted = dotted[: -len(".__init__")]
                found[dotted] = osp.join(folder, name)
    return found


def _ancestors(name: str) -> List[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: Dict[str, str]) -> Dict[str, Dict[str, int]]:
    """``{module: {imported module: line}}`` over ``modules`` (imports of anything else are ignored)."""

    def known(name: str):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: Dict[str, Dict[str, int]] = {}
    for module, path in modules.items():
        is_package = osp.basename(path) == "__init__.py"
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges: Dict[str, int] = {}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                target = known(target)
                if target is None:
                    continue
                own = set(_ancestors(module)) | {module}
                for executed in [a for a in _ancestors(target) if a not in own] + [target]:
                    if executed != module and executed in modules:
                        edges.setdefault(executed, node.lineno)
        graph[module] = edges
    return graph


def find_cycles(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    cycles: List[List[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: List[Tuple[str, iter]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def describe(cycle: List[str], graph: Dict[str, Dict[str, int]], modules: Dict[str, str]) -> str:
    members = set(cycle)
    lines = [f"import cycle among {len(cycle)} modules:"]
    for module in cycle:
        for target, line in sorted(graph[module].items()):
            if target in members:
                lines.append(f"  {osp.relpath(modules[module], REPO)}:{line}: {module} -> {target}")
    return "\n".join(lines)


def test_dasslite_has_no_import_cycle():
    modules = module_files(osp.join(REPO, "dasslite"), "dasslite")
    assert len(modules) > 50, "the walk found too few modules: is REPO right?"
    graph = import_graph(modules)
    cycles = find_cycles(graph)
    assert not cycles, "\n\n".join(describe(c, graph, modules) for c in cycles)


def _package(tmp_path, files: Dict[str, str]) -> Dict[str, str]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files(str(tmp_path / "pkg"), "pkg")


@pytest.mark.parametrize("files, cycle", [
    # a deferred (function-level) import closing the loop is still a cycle
    ({"__init__.py": "", "a.py": "from pkg import b\n",
      "b.py": "def f():\n    from pkg.a import x\n"}, ["pkg.a", "pkg.b"]),
    # a submodule importing a name through its package's re-export, the package importing it back
    ({"__init__.py": "", "sub/__init__.py": "from pkg.sub.m import thing\n",
      "sub/m.py": "thing = 1\n", "sub/n.py": "from pkg.sub import thing\n",
      "sub/other.py": ""}, None),
    ({"__init__.py": "", "sub/__init__.py": "from pkg.sub.n import y\n",
      "sub/m.py": "thing = 1\n", "sub/n.py": "from pkg.sub import thing\ny = 2\n"}, ["pkg.sub", "pkg.sub.n"]),
    # importing any module of another package runs that package's __init__
    ({"__init__.py": "", "p/__init__.py": "from pkg.p.x import v\n", "p/x.py": "from pkg.q.y import w\nv = 1\n",
      "q/__init__.py": "", "q/y.py": "w = 1\n", "q/z.py": "from pkg.p.x import v\n",
      "q/zz.py": ""}, None),
    ({"__init__.py": "", "p/__init__.py": "from pkg.p.x import v\n", "p/x.py": "from pkg.q.y import w\nv = 1\n",
      "q/__init__.py": "from pkg.q.z import u\n", "q/y.py": "w = 1\n",
      "q/z.py": "from pkg.p.x import v\nu = 1\n"}, ["pkg.p", "pkg.p.x", "pkg.q", "pkg.q.z"]),
    # relative imports resolve like absolute ones
    ({"__init__.py": "", "a.py": "from . import b\n", "b.py": "from .a import x\n"}, ["pkg.a", "pkg.b"]),
])
def test_the_cycle_finder_sees_what_python_executes(tmp_path, files, cycle):
    modules = _package(tmp_path, files)
    cycles = find_cycles(import_graph(modules))
    assert cycles == ([cycle] if cycle else [])


def test_the_data_modules_build_the_engines_datum_without_importing_compat():
    """base_dataset asks dasslite.backend (not compat, which imports it) which engine runs; both must agree."""
    from dasslite import backend, compat
    from dasslite.data.datasets.base_dataset import engine_datum_cls

    assert compat.BACKEND == backend.BACKEND
    assert engine_datum_cls() is compat.Datum
