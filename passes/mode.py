"""Training or inference: fix how mode-dependent ops (Dropout, BatchNorm) behave in this plan.

Each node of a ``modal`` op gets a ``training`` attribute; in a training plan the op's
``training_updates`` hook adds the UPDATE nodes that advance its state (running statistics), and
each random-number counter a training node declares (``effects.advances``: the dropout counter)
gets one increment. Nodes that already carry the attribute (a reloaded model) are left as they are,
so compiling a compiled graph again changes nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graphdl.builder import Builder
from graphdl.ir import IR, Node, NodeKind, make_attrs, node_of
from graphdl.registry import get_op
from passes.rewrite import LEAF_KINDS, writes


def set_mode(ir: IR, training: bool | None) -> IR:
    """Annotate modal nodes with ``training``; in a training plan add their state updates.

    A graph reloaded from a file arrives annotated and passes through unchanged; ``training=None``
    annotates any node still without a mode as inference. Random-number state that a training node
    draws from (``effects.advances``) gets one ``increment`` per array, unless some node already
    writes it (a shared layer, a reloaded training graph): found from declared effects, not names.
    """
    nodes: list[Node] = []
    added: list[Node] = []
    for n in ir.nodes:
        op = None if n.kind in LEAF_KINDS else get_op(n.op)
        if op is None or not op.modal or "training" in dict(n.attrs):
            nodes.append(n)
            continue
        mode = bool(training)
        attrs: dict[str, Any] = {**dict(n.attrs), "training": mode}
        n = dataclasses.replace(n, attrs=make_attrs(attrs))
        nodes.append(n)
        if mode:
            added.append(n)
    written = {node_of(n.inputs[k]) for n in nodes for k in writes(n) if k < len(n.inputs)}
    advance: dict[str, Node] = {}  # random-number state -> the first node drawing from it
    for n in added:
        for k in get_op(n.op).effects.advances:
            state = node_of(n.inputs[k])
            if state not in written:
                advance.setdefault(state, n)
    hooks = [n for n in added if get_op(n.op).training_updates is not None]
    if not hooks and not advance:
        return ir.replace(nodes=tuple(nodes))
    b = Builder(ir.name, nodes[0].dtype, nodes)
    for n in hooks:
        b.default_origin = n.origin
        get_op(n.op).training_updates(b, n)
    for state, n in advance.items():
        b.default_origin = n.origin
        b.apply("increment", [b.tensor(state)], name=b.fresh(f"update/{state}"), kind=NodeKind.UPDATE)
    return b.freeze(ir.outputs)


def inference_of(ir: IR, outputs: tuple[str, ...]) -> IR:
    """The inference graph of a (compiled) training graph: its forward nodes for ``outputs``, with every
    modal node switched to inference (BatchNorm reads its running statistics, dropout is the identity).

    Update nodes go, and dead-code elimination (run after this) removes the gradient nodes.
    """
    nodes: list[Node] = []
    for n in ir.nodes:
        if writes(n):
            continue
        if n.kind not in LEAF_KINDS and get_op(n.op).modal:
            n = dataclasses.replace(n, attrs=make_attrs({**dict(n.attrs), "training": False}))
        nodes.append(n)
    return ir.replace(nodes=tuple(nodes), outputs=outputs)
