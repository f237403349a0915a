"""Shape and dtype inference: symbolic at compile time, concrete when a plan is specialised."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from graphdl.builder import Builder, format_shape
from graphdl.errors import ShapeError
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind
from graphdl.registry import RuleError, get_op


def _rule(node: Node, inputs: list[Node], shapes: list[tuple]) -> tuple:
    op = get_op(node.op)
    attrs = dict(node.attrs)
    try:
        return tuple(op.shape(tuple(shapes), attrs)), op.dtype(tuple(n.dtype for n in inputs), attrs)
    except RuleError as e:
        shaped = [dataclasses.replace(n, shape=s) for n, s in zip(inputs, shapes, strict=True)]
        raise Builder.rule_error(e, node.name, node.op, shaped, node.origin) from None


def infer_shapes(ir: IR) -> IR:
    """Re-derive every node's symbolic shape and dtype from its inputs; disagreement is an error."""
    by_name: dict[str, Node] = {}
    out = []
    for n in ir.nodes:
        if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER:
            inputs = [by_name[i] for i in n.inputs]
            shape, dtype = _rule(n, inputs, [i.shape for i in inputs])
            if n.shape != shape or n.dtype != dtype:
                n = dataclasses.replace(n, shape=shape, dtype=dtype)
        by_name[n.name] = n
        out.append(n)
    return ir.replace(nodes=tuple(out))


def concrete_shapes(ir: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Every node's concrete shape, given the concrete shape of each placeholder."""
    shapes: dict[str, tuple[int, ...]] = {}
    by_name: dict[str, Node] = {}
    for n in ir.nodes:
        by_name[n.name] = n
        if n.kind is NodeKind.PLACEHOLDER:
            shapes[n.name] = tuple(feed_shapes[n.name])
        elif n.kind in STORED_KINDS:
            if None in n.shape:
                raise ShapeError(f"stored value {n.describe()} has unknown shape {format_shape(n.shape)}")
            shapes[n.name] = n.shape
        else:
            inputs = [by_name[i] for i in n.inputs]
            shapes[n.name] = _rule(n, inputs, [shapes[i] for i in n.inputs])[0]
    return shapes
