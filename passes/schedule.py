"""Scheduling: run each optimizer update as soon as it may, so its gradient's buffer dies early.

Autodiff and optimizers append update nodes after the whole backward pass, so every weight gradient
would stay live until the end (the sum of all weight gradients on top of the activations). An update
may run once its inputs exist and every other reader of the array it writes has run (the control
edges of ``toposort.dependency_edges``); this pass moves each update to exactly that point and keeps
the relative order of everything else. An update is a node whose op declares ``effects.writes``; the
pure nodes that only feed updates and read only leaves (the optimizer's learning rate, a function of
the step counter) move with them, so they never hold an update back.
"""

from __future__ import annotations

from graphdl.ir import COMPUTED_KINDS, IR, STORED_KINDS, Node, NodeKind, node_of
from passes.rewrite import writes

#: Kinds of the forward computation, whose checks must all run before any state is written.
FORWARD_KINDS = frozenset({NodeKind.OP, NodeKind.LOSS})


def forward_end(ir: IR) -> int:
    """Position of the last forward node (op, loss or requested output): no write may come before it."""
    outputs = {node_of(o) for o in ir.outputs}
    return max((i for i, n in enumerate(ir.nodes) if n.kind in FORWARD_KINDS or n.name in outputs), default=-1)


def writes_state(node: Node) -> bool:
    """Whether a node's op writes into one of its inputs (an update of a parameter, moment or counter)."""
    return node.kind in COMPUTED_KINDS and bool(writes(node))


def schedule_updates_early(ir: IR) -> IR:
    """Reorder a topologically sorted IR: each update right after the last node it must follow, and
    each writing update after the last forward node."""
    position = {n.name: i for i, n in enumerate(ir.nodes)}
    floor = forward_end(ir)
    # Leaves (feeds, parameters, optimizer state) exist from the start: they go first, and never
    # hold an update back (optimizers add their state nodes after the backward pass).
    leaves = {n.name for n in ir.nodes if n.kind in STORED_KINDS or n.kind is NodeKind.PLACEHOLDER}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(ir.nodes):
        for v in n.inputs:
            readers.setdefault(node_of(v), []).append(i)
    outputs = {node_of(o) for o in ir.outputs}
    updates = {n.name for n in ir.nodes if writes(n)}
    # Pure nodes computed from leaves alone and read only by updates (or by other such nodes).
    feeders: set[str] = set()
    for i in range(len(ir.nodes) - 1, -1, -1):
        n = ir.nodes[i]
        if (n.name in leaves or n.name in updates or n.name in outputs
                or not all(node_of(v) in leaves for v in n.inputs)):
            continue
        users = {ir.nodes[r].name for r in readers.get(n.name, ())}
        if users and users <= updates | feeders:
            feeders.add(n.name)
    after: dict[int, list[int]] = {}  # anchor position -> updates to emit right after it
    moved: set[int] = set()
    effective: dict[int, int] = {}  # a moved update's position is, in effect, its anchor's
    for i, n in enumerate(ir.nodes):
        if n.name not in updates and n.name not in feeders:
            continue
        inputs = [node_of(v) for v in n.inputs]
        deps = [position[v] for v in inputs if v not in leaves]
        for k in writes(n):
            if k < len(inputs):
                deps.extend(r for r in readers.get(inputs[k], ()) if r < i)
        if writes_state(n):
            deps.append(floor)
        anchor = max((effective.get(d, d) for d in deps), default=-1)
        if anchor != i - 1 or any(v in leaves and position[v] > anchor for v in inputs):
            after.setdefault(anchor, []).append(i)
            moved.add(i)
            effective[i] = anchor
    if not moved:
        return ir
    order: list[int] = []
    first = [i for i, n in enumerate(ir.nodes) if n.name in leaves]
    rest = [i for i, n in enumerate(ir.nodes) if n.name not in leaves and i not in moved]
    roots = [*first, *after.get(-1, ()), *rest]
    for root in roots:
        stack = [root]  # a node, then the updates anchored to it (and theirs), in original order
        while stack:
            i = stack.pop()
            order.append(i)
            stack.extend(reversed(after.get(i, ())))
    return ir.replace(nodes=tuple(ir.nodes[i] for i in order))


def schedule_updates_last(ir: IR) -> IR:
    """Move every writing update to the end (same relative order): every value of the step, gradients
    included, exists before anything is written, so all of them can be checked first."""
    writes = [n for n in ir.nodes if writes_state(n)]
    if not writes:
        return ir
    return ir.replace(nodes=(*(n for n in ir.nodes if not writes_state(n)), *writes))
