"""Structural checks run after each pass: unique names, inputs defined before use, known ops."""

from __future__ import annotations

from graphdl.errors import CompileError
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, parse_ref, ref
from graphdl.registry import get_op


def _check_ref(value: str, seen: dict[str, Node], reader: str) -> None:
    node, k = parse_ref(value)
    if node not in seen:
        raise CompileError(f"{reader} reads '{value}' before it is defined")
    if ref(node, k) != value or k >= len(seen[node].shapes):
        raise CompileError(f"{reader} reads '{value}', but {seen[node].describe()} has "
                           f"{len(seen[node].shapes)} output(s): {', '.join(seen[node].refs)}")


def verify(ir: IR) -> IR:
    """Raise CompileError if the graph is malformed; return it unchanged otherwise."""
    seen: dict[str, Node] = {}
    defined: set[str] = set()  # every reference to an output seen so far: the fast, common case
    for n in ir.nodes:
        if n.name in seen:
            raise CompileError(f"node name '{n.name}' appears twice")
        for i in n.inputs:
            if i not in defined:
                _check_ref(i, seen, f"node {n.describe()}")
        if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER:
            op = get_op(n.op)
            if op.arity is not None and len(n.inputs) != op.arity:
                raise CompileError(f"node {n.describe()} has {len(n.inputs)} inputs; {n.op} takes {op.arity}")
        seen[n.name] = n
        defined.add(n.name)
        if n.extra:
            defined.update(n.refs)
    for o in ir.outputs:
        if parse_ref(o)[0] not in seen:
            raise CompileError(f"output '{o}' is not a node of graph '{ir.name}'")
        _check_ref(o, seen, "the output list")
    return ir
