"""Algebraic simplification: identities that remove a node without changing any value.

x * 1, 1 * x, x / 1, x + 0, 0 + x, x - 0 -> x (when the result has x's shape and dtype, so nothing
was broadcast); neg(neg(x)) -> x; reshape(reshape(x)) -> one reshape; a reshape or transpose that
changes nothing -> x; transpose(transpose(x)) -> one transpose (or x). Multiplying by 0 is left
alone: 0 * inf is nan, not 0.

Routed sums: a sum over every axis past the first m of an op that ``routes`` input k (its output is
zeros plus each value of k placed once, as a max pooling's gradient) sums k instead: the same numbers
in another order, read from the smaller array (a convolution's bias gradient behind a 2x2 max pooling
reads a quarter of the bytes). The routing node stays if something else reads it.
"""

from __future__ import annotations

import dataclasses

from graphdl.ir import COMPUTED_KINDS, IR, Node, NodeKind, make_attrs, node_of, value_info
from graphdl.registry import get_op
from passes.rewrite import is_pure, redirect, resolve

#: (op, position of the constant) -> the constant that makes the op an identity.
_IDENTITY = {("mul", 1): 1.0, ("mul", 0): 1.0, ("div", 1): 1.0, ("add", 1): 0.0, ("add", 0): 0.0, ("sub", 1): 0.0}


def _perm(node: Node, ndim: int) -> tuple[int, ...]:
    axes = node.attr.get("axes")
    return tuple(reversed(range(ndim))) if axes is None else tuple(a % ndim for a in axes)


def _routed_sum(n: Node, src: Node, by_name: dict[str, Node]) -> Node | None:
    """``n`` (a sum of ``src``'s output) as a sum of the input ``src`` routes, or None if it is not one."""
    route = get_op(src.op).routes if src.kind in COMPUTED_KINDS and is_pure(src) else None
    if callable(route):
        route = route(src.attr)
    if route is None or src.extra or n.attr.get("keepdims"):
        return None
    k, kept = route
    nd = len(src.shape)
    axis = n.attr.get("axis")
    axes = set(range(nd)) if axis is None else {a % nd for a in ((axis,) if isinstance(axis, int) else axis)}
    if not set(range(kept, nd)) <= axes or k >= len(src.inputs):
        return None
    routed = src.inputs[k]
    nd_routed = len(value_info(by_name, routed)[0])
    new_axes = (*sorted(a for a in axes if a < kept), *range(kept, nd_routed))
    return dataclasses.replace(n, inputs=(routed,), attrs=make_attrs({**n.attr, "axis": new_axes}))


def simplify_algebra(ir: IR) -> IR:
    """Apply the identities above once, in order; later rules see earlier results."""
    by_name: dict[str, Node] = {}
    keep = set(ir.outputs)
    forward: dict[str, str] = {}  # node -> the value it equals
    replace: dict[str, Node] = {}

    def node(value: str) -> Node:
        name = node_of(value)
        return replace.get(name, by_name[name])

    for n in ir.nodes:
        by_name[n.name] = n
        if not is_pure(n) or n.kind is NodeKind.CONSTANT or n.extra:
            continue
        if n.op == "sum":  # a new input, never a forward: so requested outputs too
            routed = _routed_sum(n, node(resolve(forward, n.inputs[0])), by_name)
            if routed is not None:
                replace[n.name] = dataclasses.replace(routed, inputs=(resolve(forward, routed.inputs[0]),))
            continue
        if n.name in keep:
            continue
        ins = [resolve(forward, i) for i in n.inputs]
        same = None  # the value this node equals, if any
        if len(ins) == 2:
            for k in (0, 1):
                c, x = node(ins[k]), ins[1 - k]
                ident = _IDENTITY.get((n.op, k))
                if (ident is not None and c.op == "scalar" and c.kind is NodeKind.CONSTANT
                        and c.attr["value"] == ident and value_info(by_name, x) == (n.shape, n.dtype)):
                    same = x
                    break
        elif n.op == "neg" and node(ins[0]).op == "neg" and is_pure(node(ins[0])):
            same = resolve(forward, node(ins[0]).inputs[0])
        elif n.op == "reshape":
            src = ins[0]
            if node(src).op == "reshape" and is_pure(node(src)):  # reshape(reshape(x)) -> reshape(x)
                src = resolve(forward, node(src).inputs[0])
                replace[n.name] = dataclasses.replace(n, inputs=(src,))
            if value_info(by_name, src)[0] == n.shape and n.shape.count(None) <= 1:  # same dims and size
                same = src
        elif n.op == "transpose":
            src, nd = ins[0], len(n.shape)
            perm = _perm(n, nd)
            if node(src).op == "transpose" and is_pure(node(src)):  # compose the two permutations
                inner = _perm(node(src), nd)
                perm = tuple(inner[p] for p in perm)
                src = resolve(forward, node(src).inputs[0])
                replace[n.name] = dataclasses.replace(n, inputs=(src,), attrs=make_attrs({"axes": perm}))
            if perm == tuple(range(nd)):
                same = src
        if same is not None:
            forward[n.name] = same
            replace.pop(n.name, None)
    return redirect(ir, forward, replace)
