"""Imports go one way: ir <- registry/ops <- builder <- passes <- compile entry <- executable/loading.

Two checks: the import statements (parsed, module level and inside functions) form no circle among
the core modules and never point up the layers; and each core module imports cleanly as the very first
import of a fresh interpreter (a circle that Python would trip over shows up as an ImportError there).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Layer of each core module: a module may import modules of its own layer or below, never above.
LAYERS = {
    "graphdl.errors": 0,
    "graphdl.ir": 1, "graphdl.plan": 1,
    "graphdl.registry": 2, "graphdl.tensor": 2, "graphdl.dtypes": 2,
    "graphdl.ops": 3,
    "graphdl.builder": 4, "graphdl.subgraph": 4,
    "graphdl.printing": 5, "graphdl.graph": 5,
    "passes": 6, "graphdl.executor": 6, "graphdl.serialize": 6,
    "graphdl.executable": 7,
    "graphdl.compiler": 8, "graphdl.saving": 8,
}


#: Upward imports inside functions that are known and tolerated (none happens at import time), with why.
#: Each is a debt to pay back, listed so that no new one slips in.
KNOWN_UPWARD = {
    # Tensor's operator methods build ops when called; that is its job.
    ("graphdl.tensor", "graphdl.ops"),
    # gd.ops.scaled_dot_product_attention builds a constant mask with the user's Graph helpers.
    ("graphdl.ops.attention", "graphdl.graph"),
    # gd.ops.scan traces its body with a sub-graph Builder (graphdl/subgraph.py) when called.
    ("graphdl.ops.scan", "graphdl.subgraph"),
}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg in ("graphdl", "passes"):
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _layer(module: str) -> int | None:
    while module:
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import outside ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[str, bool]] = []

    def visit(nodes: list[ast.stmt], top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.extend((a.name, top) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.extend((f"{node.module}.{a.name}", top) for a in node.names)
            inner = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child], inner)

    visit(ast.parse(path.read_text()).body, True)
    return found


def _edges() -> dict[str, set[tuple[str, bool]]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[tuple[str, bool]]] = {}
    for m, path in mods.items():
        for target, top in _imports(path):
            r = resolve(target)
            if r is not None and r != m and not m.startswith(r + "."):  # a package's own parent: its __init__
                edges.setdefault(m, set()).add((r, top))
    return edges


def test_core_modules_import_in_one_direction() -> None:
    problems = []
    for m, targets in _edges().items():
        lm = _layer(m)
        for t, top in targets:
            lt = _layer(t)
            known = not top and any(m.startswith(a) and t.startswith(b) for a, b in KNOWN_UPWARD)
            if lm is not None and lt is not None and lt > lm and not known:
                problems.append(f"{m} (layer {lm}) imports {t} (layer {lt}){'' if top else ' inside a function'}")
    assert not problems, "imports pointing up the layers:\n  " + "\n  ".join(sorted(problems))


def test_no_import_circle_among_core_modules() -> None:
    import networkx as nx

    g = nx.DiGraph()
    for m, targets in _edges().items():
        for t, top in targets:
            known = not top and any(m.startswith(a) and t.startswith(b) for a, b in KNOWN_UPWARD)
            if _layer(m) is not None and _layer(t) is not None and not known:
                g.add_edge(m, t)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import circles: {[' -> '.join(c) for c in cycles]}"


def test_the_file_format_module_builds_no_executable() -> None:
    targets = {t for t, _ in _edges()["graphdl.serialize"]}
    assert not targets & {"graphdl.executable", "graphdl.saving", "graphdl.compiler"}, targets
    from graphdl import serialize
    from graphdl.saving import load

    assert serialize.load is load  # the old spelling still works


@pytest.mark.slow
def test_each_core_module_imports_first_in_a_fresh_interpreter() -> None:
    first = ["graphdl.ir", "graphdl.registry", "graphdl.builder", "passes", "graphdl.compiler",
             "graphdl.executable", "graphdl.serialize", "graphdl.saving", "graphdl.printing"]
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for m in first}
    failed = {m: p.communicate()[1][-400:] for m, p in procs.items() if p.wait() != 0}
    assert not failed, failed
