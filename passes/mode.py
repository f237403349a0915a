"""Training or inference: fix how mode-dependent ops (Dropout, BatchNorm) behave in this plan.

Each node of a ``modal`` op gets a ``training`` attribute; in a training plan the op's
``training_updates`` hook adds the UPDATE nodes that advance its state (running statistics, the
dropout counter). Nodes that already carry the attribute (a reloaded model) are left as they are,
so compiling a compiled graph again changes nothing.
"""

from __future__ import annotations

from typing import Any

from graphdl.builder import Builder
from graphdl.ir import IR, Node, make_attrs
from graphdl.registry import get_op


def set_mode(ir: IR, training: bool | None) -> IR:
    """Annotate modal nodes with ``training``; in a training plan add their state updates.

    A graph reloaded from a file arrives annotated and passes through unchanged; ``training=None``
    annotates any node still without a mode as inference.
    """
    nodes: list[Node] = []
    added: list[Node] = []
    for n in ir.nodes:
        op = get_op(n.op) if n.kind.value not in ("placeholder", "param", "state", "constant") else None
        if op is None or not op.modal or "training" in dict(n.attrs):
            nodes.append(n)
            continue
        mode = bool(training)
        attrs: dict[str, Any] = {**dict(n.attrs), "training": mode}
        n = Node(n.name, n.kind, n.op, n.inputs, make_attrs(attrs), n.shape, n.dtype, n.origin)
        nodes.append(n)
        if mode and op.training_updates is not None:
            added.append(n)
    if not added:
        return ir.replace(nodes=tuple(nodes))
    b = Builder(ir.name, nodes[0].dtype, nodes)
    for n in added:
        b.default_origin = n.origin
        get_op(n.op).training_updates(b, n)
    return b.freeze(ir.outputs)


def inference_of(ir: IR, outputs: tuple[str, ...]) -> IR:
    """The inference graph of a (compiled) training graph: its forward nodes for ``outputs``, with every
    modal node switched to inference (BatchNorm reads its running statistics, dropout is the identity).

    Update nodes go, and dead-code elimination (run after this) removes the gradient nodes.
    """
    nodes: list[Node] = []
    for n in ir.nodes:
        if n.kind.value == "update":
            continue
        if n.kind.value not in ("placeholder", "param", "state", "constant") and get_op(n.op).modal:
            n = Node(n.name, n.kind, n.op, n.inputs, make_attrs({**dict(n.attrs), "training": False}),
                     n.shape, n.dtype, n.origin)
        nodes.append(n)
    return ir.replace(nodes=tuple(nodes), outputs=outputs)
