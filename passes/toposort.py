"""Topological ordering with networkx; a cycle is an error naming its nodes."""

from __future__ import annotations

import networkx as nx

from graphdl.errors import CompileError, GraphError
from graphdl.ir import IR
from graphdl.registry import get_op


def dependency_graph(ir: IR) -> nx.DiGraph:
    """Data edges input -> node, plus control edges so an update runs after every other reader of
    the array it writes (an optimizer step must not change a weight the backward pass still reads)."""
    names = {n.name for n in ir.nodes}
    g = nx.DiGraph()
    g.add_nodes_from(names)
    readers: dict[str, list[str]] = {}
    for n in ir.nodes:
        for i in n.inputs:
            if i not in names:
                raise GraphError(f"node {n.describe()} reads '{i}', which is not in graph '{ir.name}'")
            g.add_edge(i, n.name)
            readers.setdefault(i, []).append(n.name)
    for n in ir.nodes:
        if n.kind.value in ("placeholder", "param", "state", "constant"):
            continue
        for idx in get_op(n.op).writes:
            if idx >= len(n.inputs):  # an optional state input (e.g. SGD without momentum)
                continue
            for r in readers.get(n.inputs[idx], ()):
                if r != n.name:
                    g.add_edge(r, n.name)
    return g


def toposort(ir: IR) -> IR:
    """Reorder nodes so every input comes before its readers; ties keep definition order."""
    g = dependency_graph(ir)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise CompileError(f"graph '{ir.name}' has a cycle: {path}; a value cannot depend on itself")
    position = {n.name: i for i, n in enumerate(ir.nodes)}
    order = nx.lexicographical_topological_sort(g, key=position.__getitem__)
    by_name = ir.node_map()
    return ir.replace(nodes=tuple(by_name[name] for name in order))
