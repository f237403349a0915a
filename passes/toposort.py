"""Topological ordering (Kahn's algorithm, ties by definition order); a cycle is an error naming its nodes.

Plain Python with a heap: O((V + E) log V). (networkx did the same job but cost ~15 MB of resident
memory on import, as much as a whole MLP's activations, and its ``find_cycle`` was quadratic.)
"""

from __future__ import annotations

import heapq

from graphdl.errors import CompileError, GraphError
from graphdl.ir import IR
from graphdl.registry import get_op


def dependency_graph(ir: IR) -> dict[str, list[str]]:
    """Successors of each node: data edges input -> node, plus control edges so an update runs after
    every other reader of the array it writes (an optimizer step must not change a weight the
    backward pass still reads)."""
    succ: dict[str, list[str]] = {n.name: [] for n in ir.nodes}
    readers: dict[str, list[str]] = {}
    for n in ir.nodes:
        for i in n.inputs:
            if i not in succ:
                raise GraphError(f"node {n.describe()} reads '{i}', which is not in graph '{ir.name}'")
            succ[i].append(n.name)
            readers.setdefault(i, []).append(n.name)
    for n in ir.nodes:
        if n.kind.value in ("placeholder", "param", "state", "constant"):
            continue
        for idx in get_op(n.op).writes:
            if idx >= len(n.inputs):  # an optional state input (e.g. SGD without momentum)
                continue
            for r in readers.get(n.inputs[idx], ()):
                if r != n.name:
                    succ[r].append(n.name)
    return succ


def _find_cycle(succ: dict[str, list[str]], stuck: set[str]) -> list[str]:
    """A cycle among the nodes the sort could not place: each of them still has a predecessor among
    them, so walking predecessors from any of them must come back to a node already on the path."""
    pred: dict[str, list[str]] = {v: [] for v in stuck}
    for v in stuck:
        for t in succ[v]:
            if t in stuck:
                pred[t].append(v)
    start = min(stuck)
    path, on_path = [start], {start: 0}
    while True:
        prev = pred[path[-1]][0]
        if prev in on_path:
            return list(reversed(path[on_path[prev]:]))
        on_path[prev] = len(path)
        path.append(prev)


def toposort(ir: IR) -> IR:
    """Reorder nodes so every input comes before its readers; ties keep definition order."""
    succ = dependency_graph(ir)
    position = {n.name: i for i, n in enumerate(ir.nodes)}
    indegree = dict.fromkeys(succ, 0)
    for targets in succ.values():
        for t in targets:
            indegree[t] += 1
    ready = [position[v] for v, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = ir.nodes[heapq.heappop(ready)]
        order.append(node)
        for t in succ[node.name]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, position[t])
    if len(order) < len(ir.nodes):
        stuck = {v for v, d in indegree.items() if d > 0}
        cycle = _find_cycle(succ, stuck)
        path = " -> ".join([*cycle, cycle[0]])
        raise CompileError(f"graph '{ir.name}' has a cycle: {path}; a value cannot depend on itself")
    return ir.replace(nodes=tuple(order))
