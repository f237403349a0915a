"""Drawing: graph -> DOT (through the ``graphviz`` package) -> SVG, one box per node, colour by kind."""

from __future__ import annotations

import os
from typing import Any

from graphdl.builder import Builder, format_shape
from graphdl.errors import VizError, file_path, whole_number
from graphdl.ir import IR, NodeKind, parse_ref

#: Fill colour per node kind: inputs, weights, forward, backward, updates and losses told apart.
COLORS = {
    NodeKind.PLACEHOLDER: "#fde68a",  # amber: data in
    NodeKind.PARAM: "#bbf7d0",        # green: weights
    NodeKind.STATE: "#d9f99d",        # lime: persistent state
    NodeKind.CONSTANT: "#e5e7eb",     # grey
    NodeKind.OP: "#bfdbfe",           # blue: forward
    NodeKind.LOSS: "#fecaca",         # red: objective
    NodeKind.GRADIENT: "#e9d5ff",     # violet: backward
    NodeKind.UPDATE: "#fed7aa",       # orange: optimizer
}


def _ir_of(obj: Any) -> IR:
    if isinstance(obj, IR):
        return obj
    if isinstance(obj, Builder):
        return obj.freeze()
    if hasattr(obj, "ir"):
        return obj.ir
    raise VizError(f"cannot draw a {type(obj).__name__}; pass a Graph, an Executable or an IR")


def _label(n: Any) -> str:
    from graphdl.registry import get_op

    lines = [n.name, n.op if n.kind is not NodeKind.PLACEHOLDER else "input"]
    if n.kind not in (NodeKind.PLACEHOLDER, NodeKind.PARAM, NodeKind.STATE, NodeKind.CONSTANT):
        shown = get_op(n.op).label_attrs
        attrs = [f"{k}={v}" for k, v in n.attrs if k in shown]
        if attrs:
            lines.append(" ".join(attrs))
    if n.kind is not NodeKind.UPDATE:  # one line per output; ":k" names output k of a multi-output node
        lines += [(f":{k} " if n.extra else "") + f"{format_shape(s)} {d}"
                  for k, (s, d) in enumerate(zip(n.shapes, n.dtypes, strict=True))]
    return "\n".join(lines)


#: Above this many drawn nodes, a training plan is drawn one box per layer unless ``group="none"``.
GROUP_THRESHOLD = 40


def _legend_name(kind: NodeKind) -> str:
    # The legend uses the word the node labels use (placeholders say "input").
    return "input" if kind is NodeKind.PLACEHOLDER else kind.value


def _hidden(ir: IR, show_scalars: bool, hide: tuple[str, ...]) -> tuple[set[str], dict[str, str]]:
    """Names not drawn, and pass-through nodes (name -> the input drawn in their place)."""
    unknown = set(hide) - {"optimizer_state", "constants"}
    if unknown:
        raise VizError(f"unknown hide= categories {sorted(unknown)}; use 'optimizer_state' or 'constants'")
    consumers: dict[str, list[Any]] = {}
    for n in ir.nodes:
        for i in n.inputs:
            consumers.setdefault(parse_ref(i)[0], []).append(n)
    hidden = {n.name for n in ir.nodes if n.op == "scalar"} if not show_scalars else set()
    through: dict[str, str] = {}
    training = any(n.kind is NodeKind.UPDATE for n in ir.nodes)
    if not training:
        # An inference plan's dropout is the identity and never reads its counter: draw what runs.
        for n in ir.nodes:
            if n.op == "dropout" and n.attr.get("training") is False:
                through[n.name] = through.get(n.inputs[0], n.inputs[0])
                hidden.add(n.name)
        for n in ir.nodes:
            users = consumers.get(n.name, [])
            if n.kind is NodeKind.STATE and users and all(u.name in through for u in users):
                hidden.add(n.name)
    if "optimizer_state" in hide:
        hidden |= {n.name for n in ir.nodes if n.kind is NodeKind.STATE and consumers.get(n.name)
                   and all(u.kind is NodeKind.UPDATE for u in consumers[n.name])}
    if "constants" in hide:
        hidden |= {n.name for n in ir.nodes if n.kind is NodeKind.CONSTANT}
    return hidden, through


def _new_dot(ir: IR) -> Any:
    import graphviz

    return graphviz.Digraph(ir.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                            node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                       "fontsize": "10"})


def _legend(dot: Any, kinds: set[NodeKind], note: str | None = None) -> None:
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="node kinds", fontsize="10", style="dashed")
        for kind, color in COLORS.items():
            if kind in kinds:
                legend.node(f"legend_{kind.value}", _legend_name(kind), fillcolor=color)
        if note:
            legend.node("legend_note", note, shape="plaintext", style="")


def to_dot(obj: Any, *, show_scalars: bool = False, group: str = "auto", hide: tuple[str, ...] = ()) -> Any:
    """A ``graphviz.Digraph`` of a Graph, Executable or IR. Labels are quoted by the library.

    ``group="layer"`` draws one box per layer (its forward node with its parameters, gradient and update
    nodes and optimizer state); ``"none"`` draws every node; ``"auto"`` (default) groups training plans
    with more than ``GROUP_THRESHOLD`` nodes. ``hide=("optimizer_state", "constants")`` leaves those out.
    An inference plan is drawn as it runs: dropout (the identity there) and its counter are left out.
    """
    if group not in ("auto", "layer", "none"):
        raise VizError(f"group must be 'auto', 'layer' or 'none', got {group!r}")
    ir = _ir_of(obj)
    hidden, through = _hidden(ir, show_scalars, tuple(hide))
    drawn = [n for n in ir.nodes if n.name not in hidden]
    training = any(n.kind is NodeKind.UPDATE for n in ir.nodes)
    if group == "layer" or (group == "auto" and training and len(drawn) > GROUP_THRESHOLD):
        return _grouped_dot(ir, drawn, through)
    dot = _new_dot(ir)
    by_name = ir.node_map()
    for n in drawn:
        extra = {"penwidth": "2"} if n.name in ir.outputs else {}
        dot.node(_node_id(n.name), _label(n), fillcolor=COLORS[n.kind], tooltip=f"{n.kind.value} @ {n.origin}",
                 **extra)
        for i in n.inputs:
            src, k = parse_ref(through.get(i, i))
            if src not in hidden:  # an edge from a multi-output node is labelled with the output it carries
                port = {"taillabel": f":{k}", "fontsize": "8"} if by_name[src].extra else {}
                dot.edge(_node_id(src), _node_id(n.name), **port)
        _draw_bodies(dot, n, _node_id(n.name))
    _legend(dot, {n.kind for n in drawn})
    return dot


def _draw_bodies(dot: Any, owner: Any, owner_id: str) -> None:
    """Each sub-graph of ``owner`` (a scan's body) as a cluster of its own nodes, tied to ``owner`` by
    dashed edges into the body's inputs; nested bodies recurse."""
    for key, body in owner.attrs:
        if not isinstance(body, IR):
            continue
        prefix = f"{owner_id}__{key}__"
        inner = body.node_map()
        with dot.subgraph(name=f"cluster_{prefix}") as sub:
            sub.attr(label=f"{key} of {owner.name} ({body.name})", style="dashed", fontsize="10")
            for m in body.nodes:
                if m.op == "scalar":
                    continue
                extra = {"penwidth": "2"} if m.name in body.outputs else {}
                sub.node(prefix + _node_id(m.name), _label(m), fillcolor=COLORS[m.kind],
                         tooltip=f"{m.kind.value} @ {m.origin}", **extra)
                for i in m.inputs:
                    src = parse_ref(i)[0]
                    if inner[src].op != "scalar":
                        sub.edge(prefix + _node_id(src), prefix + _node_id(m.name))
                _draw_bodies(sub, m, prefix + _node_id(m.name))
            for m in body.nodes:
                if m.kind is NodeKind.PLACEHOLDER:
                    sub.edge(owner_id, prefix + _node_id(m.name), style="dashed", arrowhead="none")


def layer_of(name: str, forward: set[str]) -> str:
    """The layer a node belongs to, from graphdl's naming: ``fc.W``, ``fc.W/adam_m``, ``grad/fc/matmul`` and
    ``update/fc.W`` belong to layer ``fc``; the optimizer's own nodes to ``optimizer``; others to themselves.
    A gradient of a layer the compiler folded away (a no-op reshape) keeps that layer's name."""
    stem, derived = name, False
    for prefix in ("grad/", "update/"):
        if stem.startswith(prefix):
            stem, derived = stem[len(prefix):], True
            break
    head = stem.split("/")[0]
    for candidate in (head, head.split(".")[0]):
        if candidate in forward:
            return candidate
        if candidate == "optimizer":
            return "optimizer"
    return head if derived and "/" in stem else name


def _grouped_dot(ir: IR, drawn: list[Any], through: dict[str, str]) -> Any:
    forward = {n.name for n in ir.nodes if n.kind in (NodeKind.OP, NodeKind.LOSS, NodeKind.PLACEHOLDER)}
    groups: dict[str, list[Any]] = {}
    for n in drawn:
        groups.setdefault(layer_of(n.name, forward), []).append(n)
    by_name = ir.node_map()
    where = {n.name: layer_of(n.name, forward) for n in drawn}
    dot = _new_dot(ir)
    kinds: set[NodeKind] = set()
    for g, members in groups.items():
        head = by_name.get(g)
        counts: dict[str, int] = {}
        for m in members:
            if m.name != g:
                counts[m.kind.value] = counts.get(m.kind.value, 0) + 1
        if head is not None and head.name in where:
            lines = _label(head).split("\n")
            kind = head.kind
        else:
            lines = [g]
            kind = NodeKind.UPDATE if g == "optimizer" else members[0].kind
        if counts:
            lines.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        kinds.add(kind)
        extra = {"penwidth": "2"} if any(m.name in ir.outputs for m in members) else {}
        if "update" in counts and kind is not NodeKind.UPDATE:
            extra.update(color=COLORS[NodeKind.UPDATE], penwidth="3")
        dot.node(_node_id(g), "\n".join(lines), fillcolor=COLORS[kind], tooltip=f"{len(members)} nodes", **extra)
        for m in members:  # a forward scan's body, as a cluster beside its layer's box
            if m.kind in (NodeKind.OP, NodeKind.LOSS):
                _draw_bodies(dot, m, _node_id(g))
    edges: set[tuple[str, str]] = set()
    for n in drawn:
        for ref in n.inputs:
            i = parse_ref(through.get(ref, ref))[0]
            if i not in where or where[i] == where[n.name]:
                continue
            # Gradients and updates mirror the forward edges backwards, and the optimizer's learning rate
            # feeds every update; drawing those too would tangle the picture, so only data flowing
            # forward connects boxes (an orange border marks a box with update nodes).
            if by_name[i].kind in (NodeKind.GRADIENT, NodeKind.UPDATE) or where[i] == "optimizer":
                continue
            edges.add((where[i], where[n.name]))
    for a, b in sorted(edges):
        dot.edge(_node_id(a), _node_id(b))
    _legend(dot, kinds, "one box per layer: forward node with its parameters,\ngradients and updates "
                        "(orange border: updated by the optimizer)")
    return dot


def _node_id(name: str) -> str:
    # DOT ids with ':' are read as ports; keep ids simple and put the real name in the label.
    return "n_" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in name)


def to_svg(obj: Any, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> str:
    """Render to SVG; write it to ``path`` if given, and return the SVG text."""
    import graphviz

    dot = to_dot(obj, **kwargs)
    try:
        svg = dot.pipe(format="svg").decode()
    except graphviz.ExecutableNotFound:
        raise VizError("drawing needs Graphviz's `dot` program, which is not on PATH; install the OS "
                       "package `graphviz` (e.g. `apt-get install graphviz` or `brew install graphviz`)") from None
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg)
    return svg


def memory_rows(plan: Any) -> tuple[list[tuple[int, list[tuple[str, int, int, int]]]], list[int]]:
    """The arena as rows: one per buffer offset, each with its values (name, bytes, first step, last step) and
    kernels' scratch space, and the bytes live at each step (values sharing a buffer in place count once)."""
    rows: dict[int, list[tuple[str, int, int, int]]] = {}
    for name, slot in plan.slots.items():
        first, last = plan.live_ranges[name]
        rows.setdefault(slot.offset, []).append((name, slot.nbytes, first, last))
    step_of = {s.node: i for i, s in enumerate(plan.steps)}
    for node, slots in getattr(plan, "workspace", {}).items():  # a kernel's scratch, live during its step
        for k, slot in enumerate(slots):
            i = step_of[node]
            rows.setdefault(slot.offset, []).append((f"{node} scratch{k if len(slots) > 1 else ''}", slot.nbytes, i, i))
    live = [0] * (len(plan.steps) + 1)
    for values in rows.values():
        for step in range(len(live)):
            live[step] += max((b for _, b, f, la in values if f <= step <= la), default=0)
    return sorted((o, sorted(v, key=lambda x: x[2])) for o, v in rows.items()), live


def memory_plan(executable: Any, path: str | os.PathLike[str], batch_size: int = 1) -> dict[str, int]:
    """Draw the buffer plan of ``executable`` at ``batch_size`` (PNG or SVG, with matplotlib): one row per
    buffer in the arena with steps along x and a bar where each value lives; below, the bytes live at each
    step against the liveness lower bound and the arena size. Returns the byte counts drawn."""
    from graphdl.executable import Executable
    from graphdl.plot import _figure, _save
    from passes import specialize

    if not isinstance(executable, Executable):
        raise VizError(f"memory_plan draws a compiled model (gd.compile(...)), got {type(executable).__name__}")
    path = file_path(path, "memory_plan", VizError)
    batch_size = whole_number(batch_size, "memory_plan: batch_size", 1, VizError)
    shapes = {i: tuple(batch_size if d is None else d for d in executable.nodes[i].shape) for i in executable.inputs}
    plan = specialize(executable.ir, shapes)
    rows, live = memory_rows(plan)
    if not rows:
        raise VizError(f"'{executable.name}' has no computed values in its arena at batch {batch_size}")
    fig = _figure()(figsize=(max(7.0, 0.16 * len(plan.steps) + 3), 0.3 * len(rows) + 3.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [max(2, len(rows) * 0.3), 1.6]})
    palette = ["#93c5fd", "#fca5a5", "#86efac", "#fcd34d", "#c4b5fd", "#fdba74", "#67e8f9", "#f9a8d4"]
    for r, (_offset, values) in enumerate(rows):
        for k, (name, _nbytes, first, last) in enumerate(values):
            top.barh(r, last - first + 1, left=first - 0.5, height=0.8, color=palette[(r + k) % len(palette)],
                     edgecolor="#374151", linewidth=0.5)
            if len(name) <= 2.5 * (last - first + 1):  # label only bars wide enough to hold it
                top.text((first + last) / 2, r, name, ha="center", va="center", fontsize=6, clip_on=True)
    top.set_yticks(range(len(rows)))
    top.set_yticklabels([f"@{o:,} ({max(b for _, b, _, _ in v):,} B)" for o, v in rows], fontsize=6)
    top.invert_yaxis()
    top.set_ylabel("arena buffer (offset)")
    top.set_title(f"{executable.name}: buffer plan at batch {batch_size} — arena {plan.arena_bytes:,} B, "
                  f"lower bound {plan.lower_bound_bytes:,} B, no reuse {plan.naive_bytes:,} B", fontsize=9)
    bottom.step(range(len(live)), live, where="mid", color="#1f2937", label="bytes live")
    bottom.axhline(plan.lower_bound_bytes, color="tab:red", linestyle="--", label="lower bound")
    bottom.axhline(plan.arena_bytes, color="tab:blue", linestyle=":", label="arena")
    bottom.set_xlabel("step")
    bottom.set_ylabel("bytes")
    bottom.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, path)
    return {"buffers": len(rows), "values": len(plan.slots), "steps": len(plan.steps),
            "arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound_bytes, "peak_live_bytes": max(live)}
