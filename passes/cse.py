"""Common-subexpression elimination: one node per distinct (op, inputs, attributes, dtype)."""

from __future__ import annotations

from graphdl.ir import IR
from passes.rewrite import is_pure, redirect, resolve


def eliminate_common_subexpressions(ir: IR) -> IR:
    """Merge pure nodes that compute the same op of the same inputs with the same attributes.

    A multi-output node merges as a whole: readers of ``b:k`` then read ``a:k``.

    Nodes are visited in order (inputs first), so once a node's inputs are merged, its duplicates
    are found too. The first occurrence is kept; requested outputs are never merged away.
    """
    keep = set(ir.outputs)
    first: dict[tuple, str] = {}
    forward: dict[str, str] = {}
    for n in ir.nodes:
        if not is_pure(n):
            continue
        key = (n.op, tuple([resolve(forward, i) for i in n.inputs]), n.attrs, n.dtypes)
        seen = first.get(key)
        if seen is None:
            first[key] = n.name
        elif not any(r in keep for r in n.refs):
            forward[n.name] = seen
    return redirect(ir, forward)
