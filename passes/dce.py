"""Dead-code elimination: only what the outputs and the side effects need stays."""

from __future__ import annotations

from graphdl.ir import IR, node_of
from passes.rewrite import writes


def eliminate_dead_code(ir: IR) -> IR:
    """Keep the outputs, every node that writes (its op declares ``effects.writes``), and everything
    they read, transitively.

    A node lives if any of its outputs is read: it computes all of them in one kernel."""
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
