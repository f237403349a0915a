"""Dead-code elimination: only what the outputs and the updates need stays."""

from __future__ import annotations

from graphdl.ir import IR, NodeKind, ancestors


def eliminate_dead_code(ir: IR) -> IR:
    """Keep the outputs, every update node, and everything they read, transitively."""
    by_name = ir.node_map()
    live: set[str] = set()
    for root in [*ir.outputs, *(n.name for n in ir.nodes if n.kind is NodeKind.UPDATE)]:
        if root not in live:
            live |= ancestors(by_name, root)
    return ir.replace(nodes=tuple(n for n in ir.nodes if n.name in live))
