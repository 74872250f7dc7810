"""The package's import structure: the layers documented in ``starling_lib/__init__.py``, no cycles.

Every ``import`` / ``from ... import`` in every module counts, including the lazy ones inside
functions (they still make one stage depend on another). The checker is exercised on a small
made-up package first, so a green run means the real one is clean, not that the checker is blind.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import starling_lib

PACKAGE = Path(starling_lib.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (a ``from pkg import name`` of a submodule
    counts as importing the submodule)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    targets.add(sub if sub in modules else target)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def parse_layers(docstring: str) -> dict[str, int]:
    """``{top-level name: layer}`` from the ``layer N: a, b`` lines of the package docstring."""
    layers = {}
    for number, names in re.findall(r"^\s*layer (\d+): (.+)$", docstring, flags=re.MULTILINE):
        for name in names.split(","):
            layers[name.strip()] = int(number)
    return layers


def component(module: str) -> str:
    """The top-level name a module belongs to: ``starling_lib.judge.client`` -> ``judge``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layering_problems(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    problems = [f"{m}: not placed in the package docstring's layers" for m in sorted(graph)
                if component(m) not in layers]
    for source in sorted(graph):
        for target in sorted(graph[source]):
            a, b = component(source), component(target)
            if a == b or a not in layers or b not in layers:
                continue
            if layers[a] < layers[b]:
                problems.append(f"{source} imports {target}: upward (layer {layers[a]} -> {layers[b]})")
            elif layers[a] == layers[b]:
                problems.append(f"{source} imports {target}: sideways within layer {layers[a]}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_upward_sideways_and_circular_imports(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    files = {
        "__init__.py": '"""A toy package.\n\n    layer 0: toy, low\n    layer 1: high, side\n"""\n',
        "low/__init__.py": "",
        "low/a.py": "from toy.low import b\n",                     # a <-> b: a cycle
        "low/b.py": "def f():\n    from . import a\n    from toy import high\n",  # lazy, and upward
        "low/c.py": "",
        "high.py": "from toy.low.c import x\nimport toy.side\n",   # down (fine), then sideways
        "side.py": "",
        "loose.py": "",                                            # in no layer
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert graph["toy.low.b"] == {"toy.low.a", "toy.high"} and graph["toy.high"] == {"toy.low.c", "toy.side"}
    layers = parse_layers(files["__init__.py"])
    assert layers == {"toy": 0, "low": 0, "high": 1, "side": 1}
    assert layering_problems(graph, layers) == [
        "toy.loose: not placed in the package docstring's layers",
        "toy.high imports toy.side: sideways within layer 1",
        "toy.low.b imports toy.high: upward (layer 0 -> 1)",
    ]
    assert cycles(graph) == [["toy.low.a", "toy.low.b"]]


def test_starling_lib_imports_only_downward_as_its_docstring_says():
    layers = parse_layers(starling_lib.__doc__)
    assert {"paths", "data", "judge", "evaluation", "cli"} <= set(layers)
    graph = import_graph(PACKAGE)
    assert "starling_lib.judge.client" in graph["starling_lib.judge.endpoint"]  # the walk sees real imports
    assert layering_problems(graph, layers) == []


def test_starling_lib_has_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []
