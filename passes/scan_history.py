"""Run each training scan once: merge a scan with the copy its gradient made to keep the residuals.

The gradient rule of ``scan`` (graphdl/ops/scan.py) needs, per step, the forward values its VJP reads, so
it adds a copy of the forward node whose body also outputs them (same inputs, same body nodes, the same
outputs followed by the residuals, stacked like any ``y``). This pass puts that copy in the place of the
original and points the original's readers at it, so a training plan runs the loop once and stores the
residuals, while an inference plan (no gradient, so dead-code elimination dropped the copy) stores none.
"""

from __future__ import annotations

import dataclasses

from graphdl.ir import IR, Node, make_attrs, parse_ref, ref


def _key(node: Node) -> tuple:
    body = node.attr["body"]
    return node.inputs, tuple((k, v) for k, v in node.attrs if k != "body"), body.name, body.nodes


def merge_scan_history(ir: IR) -> IR:
    """Replace each ``scan`` node by the copy whose body gives the same outputs and more, moved to the
    original's position under the original's name (the copy's inputs are the original's, so they are
    defined there)."""
    groups: dict[tuple, list[Node]] = {}
    for n in ir.nodes:
        if n.op == "scan":
            groups.setdefault(_key(n), []).append(n)
    moved: dict[str, Node] = {}  # original name -> the longer copy
    for members in groups.values():
        if len(members) < 2:
            continue
        longest = max(members, key=lambda m: len(m.attr["body"].outputs))
        outs = longest.attr["body"].outputs
        for m in members:
            own = m.attr["body"].outputs
            if m is not longest and outs[:len(own)] == own:
                moved[m.name] = longest
    if not moved:
        return ir
    # The copy takes the place, name and kind of its first original; readers of either read it there.
    keep: dict[str, Node] = {}  # original name -> the merged node
    alias: dict[str, str] = {}  # node name -> the merged node's name
    for name, twin in moved.items():
        if twin.name not in alias:
            orig = next(n for n in ir.nodes if n.name == name)
            keep[name] = dataclasses.replace(twin, name=name, kind=orig.kind, origin=orig.origin)
            alias[twin.name] = name
        alias[name] = alias[twin.name]

    def target(value: str) -> str:
        node, k = parse_ref(value)
        return ref(alias[node], k) if node in alias else value

    nodes = []
    for n in ir.nodes:
        if n.name in alias and n.name not in keep:
            continue
        n = keep.get(n.name, n)
        inputs = tuple(target(i) for i in n.inputs)
        nodes.append(n if inputs == n.inputs else dataclasses.replace(n, inputs=inputs))
    return ir.replace(nodes=tuple(nodes), outputs=tuple(target(o) for o in ir.outputs))


def prune_scan_outputs(ir: IR) -> IR:
    """Drop the stacked ys of a ``scan`` that nothing reads (a training plan's residuals in an inference
    plan made from it, a ``y`` the user ignores), so no per-step value is stored for nothing."""
    if not any(n.op == "scan" for n in ir.nodes):
        return ir
    read = {i for n in ir.nodes for i in n.inputs} | set(ir.outputs)
    renamed: dict[str, str] = {}
    replace: dict[str, Node] = {}
    for n in ir.nodes:
        if n.op != "scan":
            continue
        body, nc = n.attr["body"], n.attr["carries"]
        keep = [k for k, r in enumerate(n.refs) if k < nc or r in read]
        if len(keep) == len(n.refs) or not keep:
            continue
        shapes, dtypes = [n.shapes[k] for k in keep], [n.dtypes[k] for k in keep]
        attrs = make_attrs({**n.attr, "body": body.replace(outputs=tuple(body.outputs[k] for k in keep))})
        replace[n.name] = dataclasses.replace(n, attrs=attrs, shape=shapes[0], dtype=dtypes[0],
                                              extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)))
        renamed.update({n.refs[k]: ref(n.name, j) for j, k in enumerate(keep)})
    if not replace:
        return ir
    nodes = []
    for n in ir.nodes:
        n = replace.get(n.name, n)
        inputs = tuple(renamed.get(i, i) for i in n.inputs)
        nodes.append(n if inputs == n.inputs else dataclasses.replace(n, inputs=inputs))
    return ir.replace(nodes=tuple(nodes), outputs=tuple(renamed.get(o, o) for o in ir.outputs))
