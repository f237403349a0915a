"""Run each training scan once: merge a scan with the copy its gradient made to keep the carries.

The gradient rule of ``scan`` (graphdl/ops/scan.py) needs the carries entering every step, so it adds a
copy of the forward node with ``history=True`` (same inputs, same body; extra outputs). This pass puts that
copy in the place of the original and points the original's readers at it, so a training plan runs the
loop once and stores its history, while an inference plan (no gradient) never stores any.
"""

from __future__ import annotations

import dataclasses

from graphdl.ir import IR, Node, parse_ref, ref


def _key(node: Node) -> tuple:
    return node.inputs, tuple((k, v) for k, v in node.attrs if k != "history")


def merge_scan_history(ir: IR) -> IR:
    """Replace each ``scan`` node by its ``history=True`` twin, moved to the original's position."""
    keeping = {_key(n): n for n in ir.nodes if n.op == "scan" and n.attr.get("history")}
    if not keeping:
        return ir
    moved: dict[str, Node] = {}  # original name -> twin
    for n in ir.nodes:
        twin = keeping.get(_key(n)) if n.op == "scan" and not n.attr.get("history") else None
        if twin is not None and twin.name not in {t.name for t in moved.values()}:
            moved[n.name] = twin
    if not moved:
        return ir
    skip = {t.name for t in moved.values()}

    def target(value: str) -> str:
        node, k = parse_ref(value)
        return ref(moved[node].name, k) if node in moved else value

    nodes = []
    for n in ir.nodes:
        if n.name in skip:
            continue
        n = moved.get(n.name, n)
        inputs = tuple(target(i) for i in n.inputs)
        nodes.append(n if inputs == n.inputs else dataclasses.replace(n, inputs=inputs))
    return ir.replace(nodes=tuple(nodes), outputs=tuple(target(o) for o in ir.outputs))
