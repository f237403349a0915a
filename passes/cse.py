"""Common-subexpression elimination: one node per distinct (op, inputs, attributes, dtype)."""

from __future__ import annotations

from graphdl.ir import IR
from passes.rewrite import is_pure, redirect


def eliminate_common_subexpressions(ir: IR) -> IR:
    """Merge pure nodes that compute the same op of the same inputs with the same attributes.

    Nodes are visited in order (inputs first), so once a node's inputs are merged, its duplicates
    are found too. The first occurrence is kept; requested outputs are never merged away.
    """
    keep = set(ir.outputs)
    first: dict[tuple, str] = {}
    forward: dict[str, str] = {}
    for n in ir.nodes:
        if not is_pure(n):
            continue
        key = (n.op, tuple(forward.get(i, i) for i in n.inputs), n.attrs, n.dtype)
        seen = first.get(key)
        if seen is None:
            first[key] = n.name
        elif n.name not in keep:
            forward[n.name] = seen
    return redirect(ir, forward)
