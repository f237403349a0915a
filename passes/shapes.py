"""Shape and dtype inference: symbolic at compile time, concrete when a plan is specialised.

Shapes are per value: a multi-output node has one per output (keyed ``node``, ``node:1``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

from graphdl.builder import Builder, format_shape
from graphdl.errors import ShapeError
from graphdl.ir import COMPUTED_KINDS, IR, STORED_KINDS, Node, NodeKind, Shape, replace_node, value_info
from graphdl.registry import RuleError, get_op, infer


def _rule(node: Node, shapes: list[Shape], dtypes: list[str]) -> tuple[tuple[Shape, ...], tuple[str, ...]]:
    try:
        return infer(get_op(node.op), tuple(shapes), tuple(dtypes), dict(node.attrs))
    except RuleError as e:
        infos = list(zip(node.inputs, shapes, dtypes, strict=True))
        raise Builder.rule_error(e, node.name, node.op, infos, node.origin) from None


def _memo_key(*parts: object) -> tuple | None:
    """``parts`` as a dict key, or None if some attribute value is unhashable (then the rule just runs)."""
    try:
        hash(parts)
    except TypeError:
        return None
    return parts


def infer_shapes(ir: IR) -> IR:
    """Re-derive every node's symbolic shapes and dtypes from its inputs; disagreement is an error.

    Rules are pure functions of (op, input shapes, input dtypes, attributes), so each distinct
    combination is evaluated once (repeated layers repeat them). Returns ``ir`` itself if nothing changed."""
    by_name: dict[str, Node] = {}
    out = []
    memo: dict[tuple, tuple[tuple[Shape, ...], tuple[str, ...]]] = {}
    changed = False
    for n in ir.nodes:
        if n.kind in COMPUTED_KINDS:
            infos = [value_info(by_name, i) for i in n.inputs]
            in_shapes, in_dtypes = [s for s, _ in infos], [d for _, d in infos]
            key = _memo_key(n.op, *in_shapes, *in_dtypes, n.attrs)
            result = None if key is None else memo.get(key)
            if result is None:
                result = _rule(n, in_shapes, in_dtypes)
                if key is not None:
                    memo[key] = result
            shapes, dtypes = result
            if n.shapes != shapes or n.dtypes != dtypes:
                n = replace_node(n, shape=shapes[0], dtype=dtypes[0],
                                 extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)))
                changed = True
        by_name[n.name] = n
        out.append(n)
    return ir.replace(nodes=tuple(out)) if changed else ir


def concrete_shapes(ir: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Every value's concrete shape (keyed by reference), given the concrete shape of each placeholder.

    Only the shape rules run (dtypes are already known), once per distinct (op, input shapes, attributes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    memo: dict[tuple, tuple[tuple[int, ...], ...]] = {}
    for n in ir.nodes:
        if n.kind is NodeKind.PLACEHOLDER:
            shapes[n.name] = tuple(feed_shapes[n.name])
        elif n.kind in STORED_KINDS:
            if None in n.shape:
                raise ShapeError(f"stored value {n.describe()} has unknown shape {format_shape(n.shape)}")
            shapes[n.name] = n.shape
        else:
            in_shapes = [shapes[i] for i in n.inputs]
            key = _memo_key(n.op, *in_shapes, n.attrs)
            outs = None if key is None else memo.get(key)
            if outs is None:
                outs = _concrete_rule(ir, n, in_shapes)
                if key is not None:
                    memo[key] = outs
            if n.extra:
                shapes.update(zip(n.refs, outs, strict=True))
            else:
                shapes[n.name] = outs[0]
    return shapes


def _concrete_rule(ir: IR, node: Node, in_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    op = get_op(node.op)
    try:
        shape = op.shape(tuple(in_shapes), dict(node.attrs))
    except RuleError:  # explained with the inputs' dtypes too, as at build time
        by_name = ir.node_map()
        _rule(node, in_shapes, [value_info(by_name, i)[1] for i in node.inputs])
        raise
    return tuple(tuple(s) for s in shape) if op.multi_output else (tuple(shape),)
