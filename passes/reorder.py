"""Reordering: max pooling moved before the ReLU it follows, so the ReLU runs on the pooled values.

``max_pool2d(relu(x))`` equals ``relu(max_pool2d(x))`` exactly: relu is monotone and rounds nothing,
and padding (-inf) never wins a window holding a real value. Their gradients agree too: when a
window's maximum is positive, relu(x) and x have their first maximum at the same place; when it is
not, both orders route a zero. Pooling first runs the ReLU, its gradient and its saved output on a
quarter of the values under 2x2 pooling (the CNN benchmark: 1.6M instead of 6.4M float32 at conv1).

The two nodes keep their names, kinds, origins and attributes and swap places: the pool reads the
ReLU's input, the ReLU reads the pool, and the pool's readers read the ReLU. The pass runs before
autodiff, so gradients are built for the new order. Skipped when either value is a requested output,
the ReLU has other readers, or the pool's second output (its argmax indices) is read.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from graphdl.ir import IR, Node, node_of


def pool_before_relu(ir: IR) -> IR:
    """Swap every ``relu -> max_pool2d`` pair that only each other read (see the module docstring)."""
    if not any(n.op == "max_pool2d" for n in ir.nodes):
        return ir  # the common case, without building the maps below
    by_name = ir.node_map()
    readers = Counter(i for n in ir.nodes for i in n.inputs)
    keep = set(ir.outputs)
    swapped: dict[str, Node] = {}  # name -> the node that takes its place in the order
    renamed: dict[str, str] = {}  # pool -> relu: the pool's readers now read the relu
    for n in ir.nodes:
        if n.op != "max_pool2d" or any(r in keep or (k and readers[r]) for k, r in enumerate(n.refs)):
            continue
        r = by_name.get(node_of(n.inputs[0]))
        if r is None or r.op != "relu" or r.name in keep or readers[r.name] != 1 or len(r.inputs) != 1:
            continue
        swapped[r.name] = dataclasses.replace(n, inputs=r.inputs)
        swapped[n.name] = dataclasses.replace(r, inputs=(n.name,), shape=n.shape)
        renamed[n.name] = r.name
    if not swapped:
        return ir
    nodes = []
    for n in ir.nodes:
        new = swapped.get(n.name, n)
        if new.op == "relu" and n.name in renamed:  # the moved ReLU reads the pool by its own name
            nodes.append(new)
            continue
        inputs = tuple(renamed.get(i, i) for i in new.inputs)
        nodes.append(new if inputs == new.inputs else dataclasses.replace(new, inputs=inputs))
    return ir.replace(nodes=tuple(nodes))
