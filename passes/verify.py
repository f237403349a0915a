"""Structural checks run after each pass: unique names, inputs defined before use, known ops."""

from __future__ import annotations

from graphdl.errors import CompileError
from graphdl.ir import COMPUTED_KINDS, IR, Node, parse_ref, ref
from graphdl.registry import get_op

_UNSEEN = object()


def _check_ref(value: str, seen: dict[str, Node], reader: str) -> None:
    node, k = parse_ref(value)
    if node not in seen:
        raise CompileError(f"{reader} reads '{value}' before it is defined")
    if ref(node, k) != value or k >= len(seen[node].shapes):
        raise CompileError(f"{reader} reads '{value}', but {seen[node].describe()} has "
                           f"{len(seen[node].shapes)} output(s): {', '.join(seen[node].refs)}")


def verify(ir: IR) -> IR:
    """Raise CompileError if the graph is malformed; return it unchanged otherwise.

    One pass over the nodes with one set of the references defined so far (node names and ``node:k``):
    the common case costs a set lookup per input. Anything unexpected is explained by ``_check_ref``
    from the nodes before the offending one."""
    defined: set[str] = set()
    arity: dict[str, object] = {}  # op name -> its arity, looked up once per op
    for position, n in enumerate(ir.nodes):
        name = n.name
        for i in n.inputs:
            if i not in defined:
                if name in defined:  # the duplicate is the first thing wrong with this node
                    raise CompileError(f"node name '{name}' appears twice")
                _check_ref(i, {m.name: m for m in ir.nodes[:position]}, f"node {n.describe()}")
        if n.kind in COMPUTED_KINDS:
            expected = arity.get(n.op, _UNSEEN)
            if expected is _UNSEEN:
                expected = arity[n.op] = get_op(n.op).arity
            if expected is not None and len(n.inputs) != expected:
                if name in defined:
                    raise CompileError(f"node name '{name}' appears twice")
                raise CompileError(f"node {n.describe()} has {len(n.inputs)} inputs; {n.op} takes {expected}")
        size = len(defined)
        defined.add(name)  # a name seen before leaves the set as it was: one table operation, not two
        if len(defined) == size:
            raise CompileError(f"node name '{name}' appears twice")
        if n.extra:
            defined.update(n.refs)
    for o in ir.outputs:
        if o not in defined:
            seen = {m.name: m for m in ir.nodes}
            if parse_ref(o)[0] not in seen:
                raise CompileError(f"output '{o}' is not a node of graph '{ir.name}'")
            _check_ref(o, seen, "the output list")
    return ir
