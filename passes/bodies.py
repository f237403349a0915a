"""Optimise sub-graphs (scan bodies) with the graph's own rewrites: constant folding, algebraic
simplification, common-subexpression elimination and dead-code elimination, nested bodies first.

A body runs once per time step, so a node removed there is removed T times. It runs after
``merge_scan_history`` and ``prune_scan_outputs``: the first matches a scan with its gradient's copy by
their identical bodies, and the second drops outputs whose computation dead-code elimination then drops
here. A body's placeholders are its inputs by position, so they all stay, read or not; its outputs are
never merged or removed (the rewrites keep requested outputs).
"""

from __future__ import annotations

from graphdl.ir import IR, NodeKind, make_attrs, replace_node
from graphdl.registry import get_op
from passes.constant_fold import fold_constants
from passes.cse import eliminate_common_subexpressions
from passes.dce import eliminate_dead_code
from passes.rewrite import LEAF_KINDS
from passes.simplify import simplify_algebra


def optimize_body(body: IR) -> IR:
    """``body`` with its own bodies optimised, then folded, simplified, de-duplicated and pruned."""
    out = eliminate_common_subexpressions(simplify_algebra(fold_constants(optimize_bodies(body))))
    live = {n.name for n in eliminate_dead_code(out).nodes}
    nodes = tuple(n for n in out.nodes if n.kind is NodeKind.PLACEHOLDER or n.name in live)
    if nodes == body.nodes and out.outputs == body.outputs:
        return body
    return out.replace(nodes=nodes)


def optimize_bodies(ir: IR) -> IR:
    """Every node's sub-graphs optimised with ``optimize_body``; the graph itself unchanged otherwise."""
    nodes, changed = [], False
    for n in ir.nodes:
        op = None if n.kind in LEAF_KINDS else get_op(n.op)
        if op is not None and op.bodies:
            attrs = dict(n.attr)
            for key in op.bodies:
                attrs[key] = optimize_body(attrs[key])
            if any(attrs[k] is not n.attr[k] for k in op.bodies):
                n = replace_node(n, attrs=make_attrs(attrs))
                changed = True
        nodes.append(n)
    return ir.replace(nodes=tuple(nodes)) if changed else ir
