"""Dead-code elimination: only what the outputs and the updates need stays."""

from __future__ import annotations

from graphdl.ir import IR, NodeKind


def eliminate_dead_code(ir: IR) -> IR:
    """Keep the outputs, every update node, and everything they read, transitively."""
    by_name = ir.node_map()
    live: set[str] = set()
    # One traversal from all roots at once: per-root ancestor sets would revisit shared ancestors
    # (quadratic with one update node per parameter).
    stack = [*ir.outputs, *(n.name for n in ir.nodes if n.kind is NodeKind.UPDATE)]
    while stack:
        name = stack.pop()
        if name not in live:
            live.add(name)
            stack.extend(by_name[name].inputs)
    return ir.replace(nodes=tuple(n for n in ir.nodes if n.name in live))
