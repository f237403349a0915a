"""Shape and dtype inference: symbolic at compile time, concrete when a plan is specialised.

Shapes are per value: a multi-output node has one per output (keyed ``node``, ``node:1``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from graphdl.builder import Builder, format_shape
from graphdl.errors import ShapeError
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, Shape, value_info
from graphdl.registry import RuleError, get_op, infer


def _rule(node: Node, shapes: list[Shape], dtypes: list[str]) -> tuple[tuple[Shape, ...], tuple[str, ...]]:
    try:
        return infer(get_op(node.op), tuple(shapes), tuple(dtypes), dict(node.attrs))
    except RuleError as e:
        infos = list(zip(node.inputs, shapes, dtypes, strict=True))
        raise Builder.rule_error(e, node.name, node.op, infos, node.origin) from None


def infer_shapes(ir: IR) -> IR:
    """Re-derive every node's symbolic shapes and dtypes from its inputs; disagreement is an error."""
    by_name: dict[str, Node] = {}
    out = []
    for n in ir.nodes:
        if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER:
            infos = [value_info(by_name, i) for i in n.inputs]
            shapes, dtypes = _rule(n, [s for s, _ in infos], [d for _, d in infos])
            if n.shapes != shapes or n.dtypes != dtypes:
                n = dataclasses.replace(n, shape=shapes[0], dtype=dtypes[0],
                                        extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)))
        by_name[n.name] = n
        out.append(n)
    return ir.replace(nodes=tuple(out))


def concrete_shapes(ir: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Every value's concrete shape (keyed by reference), given the concrete shape of each placeholder."""
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes = {r: d for n in ir.nodes for r, d in zip(n.refs, n.dtypes, strict=True)}
    for n in ir.nodes:
        if n.kind is NodeKind.PLACEHOLDER:
            shapes[n.name] = tuple(feed_shapes[n.name])
        elif n.kind in STORED_KINDS:
            if None in n.shape:
                raise ShapeError(f"stored value {n.describe()} has unknown shape {format_shape(n.shape)}")
            shapes[n.name] = n.shape
        else:
            outs = _rule(n, [shapes[i] for i in n.inputs], [dtypes[i] for i in n.inputs])[0]
            shapes.update(zip(n.refs, outs, strict=True))
    return shapes
