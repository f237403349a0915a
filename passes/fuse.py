"""Fusion: replace a producer and its only consumer by one op when that saves a pass over memory.

- ``sgd_update(p, matmul(a, b), lr, unused)`` with plain SGD (no momentum, no weight decay), the
  matmul read only by the update -> ``matmul_sgd_update(p, a, b, lr)``: one accumulating GEMM, no stored weight gradient
  and no separate update pass.

Not fused, because it would save no pass: Linear + bias (the bias is added inside Linear's GEMM)
and Linear + ReLU (the ReLU already overwrites the GEMM's output in place; measured no gain).

The fused node keeps the consumer's name, kind and position, so outputs and error messages still
name what the user knows. Values that are requested outputs are never fused away.
"""

from __future__ import annotations

from collections import Counter

from graphdl.ir import IR, Node, NodeKind, make_attrs, node_of, value_info


def _readers(ir: IR) -> Counter[str]:
    return Counter(i for n in ir.nodes for i in n.inputs)


def fuse_sgd_matmul(ir: IR) -> IR:
    """``sgd_update(p, matmul(a, b), lr, _)`` -> ``matmul_sgd_update(p, a, b, lr)`` for plain SGD on 2-d
    weights (the unused momentum input is left for dead-code elimination)."""
    if not any(n.op == "sgd_update" for n in ir.nodes):
        return ir  # e.g. Adam: without building the maps below
    by_name, readers, keep = ir.node_map(), _readers(ir), set(ir.outputs)
    fused: dict[str, Node] = {}
    dropped: set[str] = set()
    for n in ir.nodes:
        if n.op != "sgd_update":
            continue
        attrs = n.attr
        if attrs.get("momentum") or attrs.get("weight_decay") or attrs.get("nesterov"):
            continue
        g = by_name[node_of(n.inputs[1])]
        if (g.op != "matmul" or readers[g.name] != 1 or g.name in keep
                or any(len(value_info(by_name, i)[0]) != 2 for i in g.inputs)):
            continue
        ga = g.attr
        new_attrs = make_attrs({"transpose_a": ga.get("transpose_a", False),
                                "transpose_b": ga.get("transpose_b", False)})
        fused[n.name] = Node(n.name, NodeKind.UPDATE, "matmul_sgd_update", (n.inputs[0], *g.inputs, n.inputs[2]),
                             new_attrs, n.shape, n.dtype, n.origin)
        dropped.add(g.name)
    if not fused:
        return ir
    # The fused update reads a and b, which may come after the matmul's old position but always
    # before the update's: it takes the update's place.
    return ir.replace(nodes=tuple(fused.get(n.name, n) for n in ir.nodes if n.name not in dropped))
