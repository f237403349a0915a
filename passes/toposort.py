"""Topological ordering with networkx; a cycle is an error naming its nodes.

Graphs built with the Builder are already in a valid order (a node can only read nodes that exist),
and so are graphs after autodiff and the optimizer, which append. Checking that takes one linear
scan, so the common case leaves the graph as it is and never imports networkx (whose import alone
costs about 16 MB of resident memory and 0.2 s, as much as a small model's activations). Any graph
that needs reordering — hand-built, edited, loaded with its nodes shuffled, or cyclic — is sorted by
networkx, ties kept in definition order.
"""

from __future__ import annotations

from graphdl.errors import CompileError, GraphError
from graphdl.ir import IR, node_of
from passes.rewrite import writes


def dependency_edges(ir: IR) -> list[tuple[str, str]]:
    """Data edges input -> node, plus control edges so an update runs after every other reader of
    the array it writes (an optimizer step must not change a weight the backward pass still reads)."""
    names = {n.name for n in ir.nodes}
    edges: list[tuple[str, str]] = []
    readers: dict[str, list[str]] = {}
    for n in ir.nodes:
        for value in n.inputs:
            i = node_of(value)
            if i not in names:
                raise GraphError(f"node {n.describe()} reads '{value}', which is not in graph '{ir.name}'")
            edges.append((i, n.name))
            readers.setdefault(i, []).append(n.name)
    for n in ir.nodes:
        for idx in writes(n):
            if idx >= len(n.inputs):  # an optional state input (e.g. SGD without momentum)
                continue
            edges.extend((r, n.name) for r in readers.get(node_of(n.inputs[idx]), ()) if r != n.name)
    return edges


def _in_order(ir: IR) -> bool:
    """Whether the definition order already satisfies every edge of ``dependency_edges``, checked in
    one walk without building the edges: each input defined earlier, and no node reads an array
    after a node (other than itself) that writes it.

    One table, looked up once per input: node name -> whether a node so far wrote it (lookups in
    tables of 100k names cost several times more than in small ones, so each one counts)."""
    written: dict[str, bool] = {}
    for n in ir.nodes:
        for value in n.inputs:
            was_written = written.get(value)
            if was_written is None:
                was_written = written.get(node_of(value))  # output k of a multi-output node
                if was_written is None:
                    return False
            if was_written:  # read after another node wrote it
                return False
        written[n.name] = False
        for k in writes(n):  # after its own reads: a node may read what it writes
            if k < len(n.inputs):
                written[node_of(n.inputs[k])] = True
    return True


def toposort(ir: IR) -> IR:
    """Reorder nodes so every input comes before its readers; ties keep definition order."""
    if _in_order(ir):
        return ir  # already a topological order (and so acyclic)
    edges = dependency_edges(ir)
    position = {n.name: i for i, n in enumerate(ir.nodes)}
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(position)
    g.add_edges_from(edges)
    try:
        order = list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(g)
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise CompileError(f"graph '{ir.name}' has a cycle: {path}; a value cannot depend on itself") from None
    by_name = ir.node_map()
    return ir.replace(nodes=tuple(by_name[name] for name in order))
