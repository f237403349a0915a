"""Drawing: graph -> DOT (through the ``graphviz`` package) -> SVG, one box per node, colour by kind."""

from __future__ import annotations

import os
from typing import Any

from graphdl.builder import Builder, format_shape
from graphdl.errors import VizError
from graphdl.ir import IR, NodeKind

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
    if n.kind is not NodeKind.UPDATE:
        lines.append(f"{format_shape(n.shape)} {n.dtype}")
    return "\n".join(lines)


def to_dot(obj: Any, *, show_scalars: bool = False) -> Any:
    """A ``graphviz.Digraph`` of a Graph, Executable or IR. Labels are quoted by the library."""
    import graphviz

    ir = _ir_of(obj)
    dot = graphviz.Digraph(ir.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                      "fontsize": "10"})
    hidden = {n.name for n in ir.nodes if n.op == "scalar"} if not show_scalars else set()
    for n in ir.nodes:
        if n.name in hidden:
            continue
        extra = {"penwidth": "2"} if n.name in ir.outputs else {}
        dot.node(_node_id(n.name), _label(n), fillcolor=COLORS[n.kind], tooltip=f"{n.kind.value} @ {n.origin}",
                 **extra)
        for i in n.inputs:
            if i not in hidden:
                dot.edge(_node_id(i), _node_id(n.name))
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="node kinds", fontsize="10", style="dashed")
        for kind, color in COLORS.items():
            if any(n.kind is kind for n in ir.nodes):
                legend.node(f"legend_{kind.value}", kind.value, fillcolor=color)
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
