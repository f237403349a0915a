"""Text forms of graphs: one line per node, shared by ``repr``, ``summary()`` and the CLI."""

from __future__ import annotations

import math

from graphdl.ir import IR, Node, NodeKind, format_shape, node_of


def format_node_line(n: Node) -> str:
    """``fc1 = linear(x, fc1.W, fc1.b)  (?, 128) float32  # op @ model.py:12``; a multi-output node
    names each output: ``s, s:1 = split(x, axis=1, sizes=(2, 3))  (?, 2) float32, (?, 3) float32``."""
    args = ", ".join(n.inputs)
    attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in n.attrs)
    call = f"{n.op}({args}{', ' if args and attrs else ''}{attrs})"
    types = ", ".join(f"{format_shape(s)} {d}" for s, d in zip(n.shapes, n.dtypes, strict=True))
    return f"{', '.join(n.refs)} = {call}  {types}  # {n.kind.value} @ {n.origin}"


def _attr_text(v: object) -> object:
    """An attribute as printed: a sub-graph by name and size (``format_ir`` prints it below its node)."""
    return f"<{v.name}: {len(v.nodes)} nodes>" if isinstance(v, IR) else v


def format_ir(ir: IR, indent: str = "") -> str:
    """Every node on one line, in order, then the outputs; a node's sub-graphs (a scan's body) follow
    it, indented."""
    lines = [f"{indent}graph {ir.name} ({len(ir.nodes)} nodes)"]
    for n in ir.nodes:
        if n.op == "scalar":
            continue
        lines.append(f"{indent}  {format_node_line(n)}")
        lines += [format_ir(v, indent + "    ") for _, v in n.attrs if isinstance(v, IR)]
    lines.append(f"{indent}  outputs: {', '.join(ir.outputs)}")
    return "\n".join(lines)


def summary(ir: IR) -> str:
    """A Keras-style table of the forward computation: node, op, the values it reads, its output shape(s)
    and the parameters it owns. A parameter read by several nodes (a layer called more than once) is
    counted once, at its first reader; later readers list it as shared."""
    by_name = ir.node_map()
    rows = [("node", "op", "inputs", "output shape", "params")]
    seen: dict[str, str] = {}  # parameter -> the node that counted it
    total = 0
    for n in ir.nodes:
        if n.kind not in (NodeKind.OP, NodeKind.LOSS, NodeKind.PLACEHOLDER):
            continue
        params = [i for i in dict.fromkeys(map(node_of, n.inputs)) if by_name[i].kind is NodeKind.PARAM]
        own = [p for p in params if p not in seen]
        count = sum(math.prod(by_name[p].shape) for p in own)
        total += count
        shared = sorted({seen[p] for p in params if p in seen})
        for p in own:
            seen[p] = n.name
        inputs = [i for i in n.inputs if by_name[node_of(i)].kind in (NodeKind.OP, NodeKind.LOSS, NodeKind.PLACEHOLDER)]
        cell = f"{count:,}" + (f" (shares {', '.join(shared)})" if shared else "")
        rows.append((n.name, n.op, ", ".join(inputs) or "-", ", ".join(map(format_shape, n.shapes)), cell))
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:4]) + f"  {{:>{widths[4]}}}"
    lines = [fmt.format(*rows[0]), "-" * (sum(widths) + 8)]
    lines += [fmt.format(*r) for r in rows[1:]]
    lines.append(f"total parameters: {total:,}")
    return "\n".join(lines)
