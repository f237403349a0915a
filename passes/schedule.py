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
from graphdl.registry import get_op
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
    nodes = ir.nodes
    # What each op writes, looked up once per op; a graph without updates (inference) stops here,
    # before the tables of every name below.
    op_writes = {op: get_op(op).effects.writes for op in {n.op for n in nodes if n.kind in COMPUTED_KINDS}}
    if not any(op_writes.values()):
        return ir
    outputs = {node_of(o) for o in ir.outputs}
    # One walk for what the rest needs: positions, leaves, updates, the forward end and the nodes
    # that may feed updates only (pure, computed from leaves alone: the inputs come first, so the
    # leaves among them are known by then).
    position: dict[str, int] = {}
    is_leaf = [False] * len(nodes)
    # Leaves (feeds, parameters, optimizer state) exist from the start: they go first, and never
    # hold an update back (optimizers add their state nodes after the backward pass).
    leaves: set[str] = set()
    updates: set[str] = set()
    candidates: list[int] = []  # possible feeders
    watched: set[str] = set()  # the nodes whose readers matter: written arrays and possible feeders
    floor = -1  # position of the last forward node (op, loss or requested output)
    for i, n in enumerate(nodes):
        position[n.name] = i
        if n.kind in FORWARD_KINDS or n.name in outputs:
            floor = i
        if n.kind in STORED_KINDS or n.kind is NodeKind.PLACEHOLDER:
            leaves.add(n.name)
            is_leaf[i] = True
            continue
        written = op_writes[n.op]
        if written:
            updates.add(n.name)
            watched.update(node_of(n.inputs[k]) for k in written if k < len(n.inputs))
        elif n.name not in outputs:
            for v in n.inputs:
                if node_of(v) not in leaves:
                    break
            else:
                candidates.append(i)
                watched.add(n.name)
    if not updates:
        return ir  # nothing to move: feeders only ever move with updates
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            v = node_of(v)
            if v in watched:
                readers.setdefault(v, []).append(i)
    # Pure nodes computed from leaves alone and read only by updates (or by other such nodes).
    feeders: set[str] = set()
    for i in reversed(candidates):
        name = nodes[i].name
        users = {nodes[r].name for r in readers.get(name, ())}
        if users and all(u in updates or u in feeders for u in users):
            feeders.add(name)
    after: dict[int, list[int]] = {}  # anchor position -> updates to emit right after it
    moved: set[int] = set()
    effective: dict[int, int] = {}  # a moved update's position is, in effect, its anchor's
    for i in sorted([position[u] for u in updates] + [position[f] for f in feeders]):
        n = nodes[i]
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
    first = [i for i in range(len(nodes)) if is_leaf[i]]
    rest = [i for i in range(len(nodes)) if not is_leaf[i] and i not in moved]
    for root in [*first, *after.get(-1, ()), *rest]:
        if root not in after:
            order.append(root)
            continue
        stack = [root]  # a node, then the updates anchored to it (and theirs), in original order
        while stack:
            i = stack.pop()
            order.append(i)
            stack.extend(reversed(after.get(i, ())))
    return ir.replace(nodes=tuple(map(nodes.__getitem__, order)))


def schedule_updates_last(ir: IR) -> IR:
    """Move every writing update to the end (same relative order): every value of the step, gradients
    included, exists before anything is written, so all of them can be checked first."""
    writes = [n for n in ir.nodes if writes_state(n)]
    if not writes:
        return ir
    return ir.replace(nodes=(*(n for n in ir.nodes if not writes_state(n)), *writes))
