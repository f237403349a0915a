"""Rematerialisation (gradient checkpointing): recompute activations in the backward pass.

The forward nodes are cut into segments of ``every`` nodes (default ceil(sqrt(n)), as in Chen et al.,
"Training Deep Nets with Sublinear Memory Cost", 2016). The last value of each segment is kept (a
checkpoint); any other forward value the backward pass reads is recomputed from the previous
checkpoint, by clones of that segment's nodes inserted just before the first backward node that
needs them. Live activations drop from O(n) to O(n / every + every), O(sqrt(n)) by default, for at
most one extra forward pass. Recomputed values are bit-identical: the same kernels on the same inputs.

Ops that write state or draw random numbers (their declared ``effects``) are never recomputed, nor
are requested outputs; their values simply stay live as before.
"""

from __future__ import annotations

import dataclasses
import math

from graphdl.ir import IR, Node, NodeKind, node_of, parse_ref, ref
from graphdl.registry import get_op

FORWARD = (NodeKind.OP, NodeKind.LOSS)
BACKWARD = (NodeKind.GRADIENT, NodeKind.UPDATE)


def _recomputable(node: Node) -> bool:
    return node.kind in FORWARD and get_op(node.op).effects.pure


def rematerialize(ir: IR, every: int | None = None) -> IR:
    """Recompute, segment by segment, the forward values the backward pass reads (see module doc).

    ``ir`` must be in execution order (after toposort and scheduling).
    """
    forward = [n for n in ir.nodes if n.kind in FORWARD]
    if len(forward) < 4 or not any(n.kind in BACKWARD for n in ir.nodes):
        return ir
    every = every or math.ceil(math.sqrt(len(forward)))
    segment = {n.name: k // every for k, n in enumerate(forward)}
    last = len(forward) - 1
    checkpoints = {n.name for k, n in enumerate(forward) if k % every == every - 1 or k == last}
    by_name = ir.node_map()
    keep = {node_of(o) for o in ir.outputs}

    def cloneable(name: str, seg: int) -> bool:
        return (segment.get(name) == seg and name not in checkpoints and name not in keep
                and _recomputable(by_name[name]))

    # The saved values of each segment (but the last, whose values are used right away).
    final = segment[forward[-1].name]
    wanted: dict[int, set[str]] = {}
    for n in ir.nodes:
        if n.kind in BACKWARD:
            for v in map(node_of, n.inputs):
                seg = segment.get(v)
                if seg is not None and seg != final and cloneable(v, seg):
                    wanted.setdefault(seg, set()).add(v)
    if not wanted:
        return ir
    # Each segment's clones: the wanted values and the in-segment values they are computed from.
    clones: dict[int, list[Node]] = {}
    renamed: dict[str, str] = {}

    def rename(value: str) -> str:
        node, k = parse_ref(value)
        return ref(renamed.get(node, node), k)

    for seg, values in wanted.items():
        needed, stack = set(), list(values)
        while stack:
            v = stack.pop()
            if v not in needed:
                needed.add(v)
                stack.extend(i for i in map(node_of, by_name[v].inputs) if cloneable(i, seg))
        for v in needed:
            renamed[v] = f"remat/{v}"
        clones[seg] = [
            dataclasses.replace(n, name=renamed[n.name], kind=NodeKind.GRADIENT,
                                inputs=tuple(map(rename, n.inputs)))
            for n in forward if n.name in needed
        ]
    out: list[Node] = []
    emitted: set[int] = set()
    for n in ir.nodes:
        if n.kind in BACKWARD:
            for v in map(node_of, n.inputs):
                seg = segment.get(v)
                if v in renamed and seg not in emitted:
                    emitted.add(seg)
                    out.extend(clones[seg])
            n = dataclasses.replace(n, inputs=tuple(map(rename, n.inputs)))
        out.append(n)
    return ir.replace(nodes=tuple(out))
