"""Dead-code elimination: only what the outputs and the side effects need stays."""

from __future__ import annotations

from graphdl.ir import IR, node_of
from passes.rewrite import writes


def eliminate_dead_code(ir: IR) -> IR:
    """Keep the outputs, every node that writes (its op declares ``effects.writes``), and everything
    they read, transitively.

    A node lives if any of its outputs is read: it computes all of them in one kernel. One walk from
    the last node back marks what the live nodes read; a node read by a later one in the list is
    already marked when the walk reaches it, which holds unless some input comes after its reader
    (then the graph-order-free traversal below decides)."""
    live: dict[str, bool] = dict.fromkeys(map(node_of, ir.outputs), True)  # node -> live (True) or dead
    kept = []
    for n in reversed(ir.nodes):
        if not live.get(n.name) and not writes(n):
            live[n.name] = False
            continue
        for i in n.inputs:
            i = node_of(i)
            mark = live.get(i)
            if mark is None:
                live[i] = True
            elif not mark:  # read by a node after it: not in definition order
                return _by_traversal(ir)
        kept.append(n)
    if len(kept) == len(ir.nodes):
        return ir
    return ir.replace(nodes=tuple(reversed(kept)))


def _by_traversal(ir: IR) -> IR:
    by_name = ir.node_map()
    live: set[str] = set()
    # One traversal from all roots at once: per-root ancestor sets would revisit shared ancestors
    # (quadratic with one update node per parameter).
    stack = [*map(node_of, ir.outputs), *(n.name for n in ir.nodes if writes(n))]
    while stack:
        name = stack.pop()
        if name not in live:
            live.add(name)
            stack.extend(node_of(i) for i in by_name[name].inputs)
    return ir.replace(nodes=tuple(n for n in ir.nodes if n.name in live))
