"""Reordering: max pooling moved before the ReLU it follows, so the ReLU runs on the pooled values.

``max_pool2d(relu(x))`` equals ``relu(max_pool2d(x))`` exactly: relu is monotone and rounds nothing,
and padding (-inf) never wins a window holding a real value. Their gradients agree too: when a
window's maximum is positive, relu(x) and x have their first maximum at the same place; when it is
not, both orders route a zero. Pooling first runs the ReLU, its gradient and its saved output on a
quarter of the values under 2x2 pooling (the CNN benchmark: 1.6M instead of 6.4M float32 at conv1).

Every name keeps meaning the value it has in the user's graph: the ReLU, moved after the pool, takes
the pool's name (relu(max_pool2d(x)) is the pool's value), and the pool, moved before it, gets a new
one, ``<pool>/before_relu``; the ReLU's own value (before pooling) is no longer computed, so its name
leaves the graph. (The two once swapped places keeping their names: a trained model asked for its
pool's value through ``inference`` or ONNX export then returned max_pool2d(x), negative values
included, and for its ReLU's the pooled shape.) The pass runs before autodiff, so gradients are built
for the new order. Skipped when either value is a requested output, the ReLU has other readers, or the
pool's second output (its argmax indices) is read.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from graphdl.ir import IR, Node, node_of


def pool_before_relu(ir: IR) -> IR:
    """Move every max pooling before the ReLU that only it reads (see the module docstring)."""
    if not any(n.op == "max_pool2d" for n in ir.nodes):
        return ir  # the common case, without building the maps below
    by_name = ir.node_map()
    readers = Counter(i for n in ir.nodes for i in n.inputs)
    keep = set(ir.outputs)
    taken = set(by_name)
    moved: dict[str, list[Node]] = {}  # pool -> the nodes that take its place: the pool, then the ReLU
    dropped: set[str] = set()  # the ReLUs' old places
    for n in ir.nodes:
        if n.op != "max_pool2d" or any(r in keep or (k and readers[r]) for k, r in enumerate(n.refs)):
            continue
        r = by_name.get(node_of(n.inputs[0]))
        if r is None or r.op != "relu" or r.name in keep or readers[r.name] != 1 or len(r.inputs) != 1:
            continue
        name = f"{n.name}/before_relu"
        while name in taken:
            name += "_"
        taken.add(name)
        pool = dataclasses.replace(n, name=name, inputs=r.inputs)
        moved[n.name] = [pool, dataclasses.replace(r, name=n.name, inputs=(name,), shape=n.shape, origin=n.origin)]
        dropped.add(r.name)
    if not moved:
        return ir
    # The pool's readers read the ReLU, which has the pool's name: no input changes anywhere else.
    return ir.replace(nodes=tuple(m for n in ir.nodes if n.name not in dropped for m in moved.get(n.name, (n,))))
