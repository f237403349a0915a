"""Symbolic reverse-mode autodiff: gradient nodes are added to the same IR.

Each op's gradient rule (in its OpDef) returns one expression per input, built from ordinary graph
nodes, so gradients can be inspected, drawn, optimised and differentiated again. This pass walks the
nodes between the inputs of interest and the objective in reverse order, accumulates fan-out
contributions with ``add``, and sums broadcast gradients back to each input's shape (``sum_to``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphdl.builder import Builder, Tensor, format_shape
from graphdl.errors import GradientError
from graphdl.ir import IR, STORED_KINDS, NodeKind
from graphdl.ir import ancestors as ancestors_of
from graphdl.registry import GradContext, get_op


def build_gradients(
    ir: IR, objective: str, wrt: Sequence[str], *, unconnected: str = "error"
) -> tuple[IR, dict[str, str]]:
    """Add nodes computing d(sum of objective)/d(each of wrt); return the new IR and wrt -> grad node.

    ``unconnected`` decides what happens when the objective does not depend on an input:
    ``"error"`` (default) raises GradientError naming it, ``"zero"`` returns a zero gradient.
    """
    by_name = ir.node_map()
    for w in (objective, *wrt):
        if w not in by_name:
            raise GradientError(f"graph '{ir.name}' has no node '{w}'")
    obj = by_name[objective]
    if not np.issubdtype(np.dtype(obj.dtype), np.floating):
        raise GradientError(f"cannot differentiate {obj.describe()}: its dtype {obj.dtype} is not floating")
    ancestors = ancestors_of(by_name, objective)
    # Nodes on a path from some wrt to the objective, through floating-point values only.
    on_path: set[str] = set(wrt)
    for n in ir.nodes:
        if n.name in ancestors and np.issubdtype(np.dtype(n.dtype), np.floating) and any(
            i in on_path for i in n.inputs
        ):
            on_path.add(n.name)
    missing = [w for w in wrt if w not in ancestors]
    if missing and unconnected == "error":
        raise GradientError(
            f"'{objective}' does not depend on {missing}, so their gradient is undefined; "
            "remove them from the list, or pass unconnected='zero' to get zeros"
        )

    b = Builder(ir.name, obj.dtype, ir.nodes)
    b.default_kind = NodeKind.GRADIENT
    b.scope = f"grad/{objective}/"
    b.default_origin = obj.origin
    seed = b.scalar(1.0, obj.dtype)
    if obj.shape != ():  # like tf.gradients: differentiate the sum of a non-scalar objective
        seed = b.apply("expand_like", [seed, Tensor(b, objective)])
    contributions: dict[str, list[Tensor]] = {objective: [seed]}
    total: dict[str, Tensor] = {}
    for node in reversed([n for n in ir.nodes if n.name in on_path and n.name in ancestors]):
        parts = contributions.pop(node.name, None)
        if not parts:
            continue
        b.scope, b.default_origin = f"grad/{node.name}/", node.origin
        g = parts[0]
        for p in parts[1:]:
            g = g + p
        total[node.name] = g
        if node.kind in STORED_KINDS or node.kind is NodeKind.PLACEHOLDER:
            continue
        op = get_op(node.op)
        wanted = [i for k, i in enumerate(node.inputs) if i in on_path and k not in op.nondiff]
        if not wanted:
            continue
        if op.grad is None:
            raise GradientError(
                f"op '{node.op}' at node {node.describe()} has no gradient rule, but the gradient of "
                f"'{objective}' with respect to {list(wrt)} flows through it (into {wanted}); "
                "differentiate a different objective or stop the path before this node"
            )
        ctx = GradContext(node, tuple(Tensor(b, i) for i in node.inputs), Tensor(b, node.name), g,
                          dict(node.attrs))
        results = list(op.grad(ctx))
        for k, (inp, r) in enumerate(zip(node.inputs, results, strict=False)):
            if r is None or inp not in on_path or k in op.nondiff:
                continue
            target = by_name[inp].shape
            if r.shape != target:
                r = b.apply("sum_to", [r], {"shape": target})
            contributions.setdefault(inp, []).append(r)

    b.scope = f"grad/{objective}/"
    grads: dict[str, str] = {}
    for w in wrt:
        if w in total:
            grads[w] = total[w].name
        else:  # unconnected == "zero"
            node = by_name[w]
            if None in node.shape:
                raise GradientError(f"cannot build a zero gradient for '{w}' of unknown shape "
                                    f"{format_shape(node.shape)}")
            grads[w] = b.apply("mul", [Tensor(b, w), 0.0]).name
    return b.freeze(ir.outputs), grads
