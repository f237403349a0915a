"""Symbolic reverse-mode autodiff: gradient nodes are added to the same IR.

Each op's gradient rule (in its OpDef) returns one expression per input, built from ordinary graph
nodes, so gradients can be inspected, drawn, optimised and differentiated again. This pass walks the
nodes between the inputs of interest and the objective in reverse order, accumulates fan-out
contributions with ``add``, and sums broadcast gradients back to each input's shape (``sum_to``).
Gradients are per value: a multi-output node's rule receives one incoming gradient per output
(``GradContext.gouts``, ``None`` for outputs nothing differentiates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphdl.builder import Builder, Tensor, check_graph_dtype, format_shape
from graphdl.errors import GradientError
from graphdl.ir import IR, STORED_KINDS, NodeKind, node_of, parse_ref, value_info
from graphdl.ir import ancestors as ancestors_of
from graphdl.registry import GradContext, get_op


def build_gradients(
    ir: IR, objective: str, wrt: Sequence[str], *, unconnected: str = "error"
) -> tuple[IR, dict[str, str]]:
    """Add nodes computing d(sum of objective)/d(each of wrt); return the new IR and wrt -> grad node.

    ``unconnected`` decides what happens when the objective does not depend on an input:
    ``"error"`` (default) raises GradientError naming it, ``"zero"`` returns a zero gradient.
    """
    b, grads = gradient_builder(ir, objective, wrt, unconnected=unconnected)
    return b.freeze(ir.outputs), grads


def gradient_builder(
    ir: IR, objective: str, wrt: Sequence[str], *, unconnected: str = "error"
) -> tuple[Builder, dict[str, str]]:
    """``build_gradients``, returning the Builder holding ``ir`` and the gradients instead of freezing it,
    for a caller that adds more nodes (the optimizer): no second table of the graph's names."""
    b = Builder(ir.name, "float32", ir.nodes)
    by_name = b.nodes  # the table the builder keeps anyway
    for w in (objective, *wrt):
        if node_of(w) not in by_name or parse_ref(w)[1] >= len(by_name[node_of(w)].shapes):
            raise GradientError(f"graph '{ir.name}' has no node '{w}'")
    obj = by_name[node_of(objective)]
    obj_shape, obj_dtype = value_info(by_name, objective)
    if not np.issubdtype(np.dtype(obj_dtype), np.floating):
        raise GradientError(f"cannot differentiate {obj.describe()}: its dtype {obj_dtype} is not floating")
    b.dtype = check_graph_dtype(obj_dtype)
    b.default_kind = NodeKind.GRADIENT
    b.scope = f"grad/{obj.name}/"
    b.default_origin = obj.origin
    seed = b.scalar(1.0, obj_dtype)
    if obj_shape != ():  # like tf.gradients: differentiate the sum of a non-scalar objective
        seed = b.apply("expand_like", [seed, Tensor(b, objective)])
    total = _backprop(ir, b, {objective: [seed]}, wrt, unconnected, f"'{objective}'")
    b.scope = f"grad/{obj.name}/"
    grads: dict[str, str] = {}
    for w in wrt:
        if w in total:
            grads[w] = total[w].name
        else:  # unconnected == "zero"
            shape = value_info(by_name, w)[0]
            if None in shape:
                raise GradientError(f"cannot build a zero gradient for '{w}' of unknown shape "
                                    f"{format_shape(shape)}")
            grads[w] = b.apply("mul", [Tensor(b, w), 0.0]).name
    return b, grads


def vjp(ir: IR, cotangents: Sequence[tuple[str, str]], wrt: Sequence[str]) -> tuple[IR, dict[str, str]]:
    """Add nodes computing the vector-Jacobian product: the gradient of the sum over ``cotangents``
    pairs ``(v, c)`` of ``sum(v * c)`` w.r.t. each of ``wrt`` (``c`` is a value of ``ir`` shaped like ``v``;
    a value may appear in several pairs).
    A ``wrt`` nothing flows into gets zeros. Gradient rules of ops with sub-graphs (scan) receive this
    function as ``GradContext.vjp``, so graphdl itself never imports the passes."""
    by_name = ir.node_map()
    b = Builder(ir.name, value_info(by_name, cotangents[0][1])[1], ir.nodes)
    b.default_kind = NodeKind.GRADIENT
    b.scope = "vjp/"
    seeds: dict[str, list[Tensor]] = {}
    for v, c in cotangents:
        seeds.setdefault(v, []).append(Tensor(b, c))
    total = _backprop(ir, b, seeds, wrt, "zero", "the body outputs")
    b.scope = "vjp/"
    grads = {w: (total[w] if w in total else b.apply("expand_like", [0.0, Tensor(b, w)])).name for w in wrt}
    return b.freeze(ir.outputs), grads


def _backprop(ir: IR, b: Builder, contributions: dict[str, list[Tensor]], wrt: Sequence[str], unconnected: str,
              objective: str) -> dict[str, Tensor]:
    """Walk back from the seeded values (``contributions``) to ``wrt``, adding gradient nodes to ``b``;
    return the total gradient of every value reached."""
    by_name = b.nodes  # every node of ir (and the gradients added so far): no second map of the graph
    ancestors: set[str] = set()
    for v in contributions:
        ancestors |= ancestors_of(by_name, node_of(v))
    # Nodes on a path from some wrt to the objective, through floating-point values only.
    on_path: set[str] = {node_of(w) for w in wrt}
    floating: dict[str, bool] = {}  # per dtype name: np.issubdtype costs microseconds, per node
    for n in ir.nodes:
        if n.name not in ancestors:
            continue
        for d in n.dtypes:
            if d not in floating:
                floating[d] = bool(np.issubdtype(np.dtype(d), np.floating))
        if any(floating[d] for d in n.dtypes) and any(node_of(i) in on_path for i in n.inputs):
            on_path.add(n.name)
    missing = [w for w in wrt if node_of(w) not in ancestors]
    if missing and unconnected == "error":
        raise GradientError(
            f"{objective} does not depend on {missing}, so their gradient is undefined; "
            "remove them from the list, or pass unconnected='zero' to get zeros"
        )

    total: dict[str, Tensor] = {}
    for node in reversed([n for n in ir.nodes if n.name in on_path and n.name in ancestors]):
        b.scope, b.default_origin = f"grad/{node.name}/", node.origin
        gouts: list[Tensor | None] = []  # one incoming gradient per output; None where none flows
        for r in node.refs:
            parts = contributions.pop(r, None)
            g = None
            if parts:
                g = parts[0]
                for p in parts[1:]:
                    g = g + p
                total[r] = g
            gouts.append(g)
        if all(g is None for g in gouts):
            continue
        if node.kind in STORED_KINDS or node.kind is NodeKind.PLACEHOLDER:
            continue
        op = get_op(node.op)
        wanted = [i for k, i in enumerate(node.inputs) if node_of(i) in on_path and k not in op.nondiff]
        if not wanted:
            continue
        if op.grad is None:
            raise GradientError(
                f"op '{node.op}' at node {node.describe()} has no gradient rule, but the gradient of "
                f"{objective} with respect to {list(wrt)} flows through it (into {wanted}); "
                "differentiate a different objective or stop the path before this node"
            )
        outs = tuple(Tensor(b, r) for r in node.refs)
        needed = tuple(node_of(i) in on_path and k not in op.nondiff for k, i in enumerate(node.inputs))
        ctx = GradContext(node, tuple(Tensor(b, i) for i in node.inputs), outs[0], gouts[0],
                          dict(node.attrs), outs=outs, gouts=tuple(gouts), vjp=vjp, needed=needed)
        results = list(op.grad(ctx))
        for k, (inp, r) in enumerate(zip(node.inputs, results, strict=False)):
            if r is None or node_of(inp) not in on_path or k in op.nondiff:
                continue
            target, dtype = value_info(by_name, inp)
            if r.shape != target:
                r = b.apply("sum_to", [r], {"shape": target})
            if r.dtype != dtype:  # a promoted op (float32 * float64): the gradient takes the input's dtype
                r = b.apply("astype", [r], {"dtype": dtype})
            contributions.setdefault(inp, []).append(r)

    return total
