"""Structural checks run after each pass: unique names, inputs defined before use, known ops."""

from __future__ import annotations

from graphdl.errors import CompileError
from graphdl.ir import IR, STORED_KINDS, NodeKind
from graphdl.registry import get_op


def verify(ir: IR) -> IR:
    """Raise CompileError if the graph is malformed; return it unchanged otherwise."""
    seen: set[str] = set()
    for n in ir.nodes:
        if n.name in seen:
            raise CompileError(f"node name '{n.name}' appears twice")
        for i in n.inputs:
            if i not in seen:
                raise CompileError(f"node {n.describe()} reads '{i}' before it is defined")
        if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER:
            op = get_op(n.op)
            if op.arity is not None and len(n.inputs) != op.arity:
                raise CompileError(f"node {n.describe()} has {len(n.inputs)} inputs; {n.op} takes {op.arity}")
        seen.add(n.name)
    for o in ir.outputs:
        if o not in seen:
            raise CompileError(f"output '{o}' is not a node of graph '{ir.name}'")
    return ir
