"""Layout: convolution chains run channel-major inside the plan, NCHW at its edges.

im2col convolution multiplies (Cout, K) weights by (K, N*H*W) columns, so its result is channel-major:
(C, N, H, W). Kept NCHW, every convolution copies its output to NCHW, and its two gradients copy the
output gradient back to channel-major before their GEMMs (and the input gradient its result once more):
about a dozen transposing copies of the largest activations per training step of a small CNN. This pass
gives ``conv2d`` nodes ``channel_major=True`` (their images and outputs are (C, N, H, W)) wherever the
values around them stay inside a chain of convolutions and plane-wise ops (pooling, elementwise
activations: each works on every (sample, channel) plane alone, so it does not care which of the first
two axes is the batch), and puts one ``transpose`` where such a chain meets anything else: the feeds it
starts from and the layers (flatten, BatchNorm, losses) it ends in. Autodiff runs after this pass, so the
gradients are built channel-major too (conv2d's bias gradient sums over axes (1, 2, 3)).

A chain is converted only when the copies it saves (two per convolution output: its forward copy and the
weight gradient's copy of the output gradient) outweigh the transposes it needs (two per edge value: one
forward, one for its gradient), counted in values per sample. So a lone convolution between BatchNorms
stays NCHW, while conv-pool-relu-conv-pool stacks (whose edges are the small input and the last pooled
map) turn channel-major. A chain holding a requested output is left alone (outputs keep the layout the
user built). The values' names do not change:
a converted value holds the same numbers with its first two axes swapped. Running the pass again
changes nothing (a graph with a channel-major convolution is taken as laid out already).

``pool_blocks`` (the next pass, ``passes/pool_blocks.py``) then fuses a first convolution with the
tiling max pooling that alone reads it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from graphdl.ir import IR, Node, NodeKind, make_attrs, node_of, parse_ref, ref, replace_node

#: Ops applied to each element, or each (sample, channel) plane, alone: any of their 4-d inputs and
#: outputs may be channel-major with no change to the op or its gradient. Dropout is not here (its
#: random mask would land on other elements), nor BatchNorm (it reduces over a fixed axis).
PLANEWISE = frozenset({"relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "sigmoid", "tanh",
                       "max_pool2d", "avg_pool2d"})
SWAP = (1, 0, 2, 3)


def _swapped(shape: tuple) -> tuple:
    return (shape[1], shape[0], *shape[2:])


def _per_sample(shape: tuple) -> int:
    """Elements per sample of an NCHW shape (the batch axis may be unknown)."""
    return math.prod(d or 1 for d in shape[1:])


def _coupled(n: Node) -> tuple[str, ...]:
    """The values a node forces into one layout: a convolution's image and output, a plane-wise op's
    4-d input and outputs; () for any other node."""
    if n.kind is not NodeKind.OP or len(n.shape) != 4 or not n.inputs:
        return ()
    if n.op == "conv2d" or n.op in PLANEWISE:
        return (n.inputs[0], *n.refs)
    return ()


def _layout_groups(coupled: Iterable[tuple[str, ...]]) -> tuple[Callable[[str], str], dict[str, str]]:
    """Union-find over values that must share a layout (each tuple of ``_coupled``): ``find(v)`` names
    v's group; the table holds every value seen."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for values in coupled:
        for v in values[1:]:
            parent[find(v)] = find(values[0])
    return find, parent


def channel_major(ir: IR) -> IR:
    """Make convolution chains channel-major where it saves copies (see the module docstring)."""
    convs = [n for n in ir.nodes if n.op == "conv2d" and n.kind is NodeKind.OP]
    if not convs or any(n.attr.get("channel_major") for n in ir.nodes if n.op == "conv2d"):
        return ir
    by_name = ir.node_map()
    coupled = {n.name: _coupled(n) for n in ir.nodes}
    find, parent = _layout_groups(coupled.values())
    members: dict[str, list[str]] = defaultdict(list)
    for v in parent:
        members[find(v)].append(v)
    outputs = set(ir.outputs)
    # who reads each value where the layout does not follow it (any input but a coupled node's first)
    plain_readers: dict[str, list[str]] = defaultdict(list)
    for n in ir.nodes:
        for k, v in enumerate(n.inputs):
            if v in parent and not (coupled[n.name] and k == 0):
                plain_readers[v].append(n.name)
    converted: set[str] = set()
    for group in members.values():
        shapes = {v: _shape(by_name, v) for v in group}
        if any(v in outputs or len(shapes[v]) != 4 for v in group):
            continue
        produced_inside = {v for v in group if coupled[node_of(v)]}
        saved = 2 * sum(_per_sample(shapes[n.name]) for n in convs if n.name in produced_inside)
        edges = [v for v in group if v not in produced_inside or plain_readers.get(v)]
        if saved > 2 * sum(_per_sample(shapes[v]) for v in edges):
            converted.update(group)
    if not converted:
        return ir
    return _rewrite(ir, converted, coupled, plain_readers, by_name)


def _shape(by_name: dict[str, Node], value: str) -> tuple:
    name, _, k = value.partition(":")
    return by_name[name].shapes[int(k or 0)]


def _namer(taken: set[str]) -> Callable[[str], str]:
    """``fresh(base)``: ``base``, or with ``_`` appended until no node has the name; then taken."""

    def fresh(base: str) -> str:
        name = base
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    return fresh


def _rewrite(ir: IR, converted: set[str], coupled: dict[str, tuple[str, ...]],
             plain_readers: dict[str, list[str]], by_name: dict[str, Node]) -> IR:
    fresh = _namer(set(by_name))
    to_cm: dict[str, str] = {}  # NCHW value made outside a chain -> its channel-major transpose
    to_nchw: dict[str, str] = {}  # channel-major value read outside its chain -> its NCHW transpose
    nodes: list[Node] = []
    for n in ir.nodes:
        inside = bool(coupled[n.name]) and n.refs[0] in converted
        if inside:
            inputs = (to_cm.get(n.inputs[0], n.inputs[0]), *(to_nchw.get(v, v) for v in n.inputs[1:]))
            changes = {"inputs": inputs, "shape": _swapped(n.shape),
                       "extra": tuple((_swapped(s), d) for s, d in n.extra)}
            if n.op == "conv2d":
                changes["attrs"] = make_attrs({**n.attr, "channel_major": True})
            n = replace_node(n, **changes)
        else:
            inputs = tuple(to_nchw.get(v, v) for v in n.inputs)
            if inputs != n.inputs:
                n = replace_node(n, inputs=inputs)
        nodes.append(n)
        for r, shape in zip(n.refs, n.shapes):
            if r not in converted:
                continue
            base = r.replace(":", "_")  # a node name never holds ":"
            if inside and plain_readers.get(r):
                to_nchw[r] = _transpose(nodes, fresh(f"{base}/nchw"), r, _swapped(shape), n)
            elif not inside:
                to_cm[r] = _transpose(nodes, fresh(f"{base}/channel_major"), r, _swapped(shape), n)
    return ir.replace(nodes=tuple(nodes))


def _transpose(nodes: list[Node], name: str, value: str, shape: tuple, beside: Node) -> str:
    """Append a node swapping the first two axes of ``value`` (``shape`` is the result's)."""
    dtype = beside.dtypes[beside.refs.index(value)]
    nodes.append(Node(name, NodeKind.OP, "transpose", (value,), make_attrs({"axes": SWAP}), shape, dtype,
                      beside.origin))
    return name


def _channel_major_values(ir: IR) -> set[str]:
    """Values whose first two axes are swapped against the graph the user built: those coupled (as
    ``channel_major`` couples them) to a channel-major convolution. In a graph the user built, none."""
    anchors = [n for n in ir.nodes if n.op == "conv2d" and n.attr.get("channel_major") and len(n.shape) == 4]
    if not anchors:
        return set()
    find, parent = _layout_groups(map(_coupled, ir.nodes))
    roots = {find(n.name) for n in anchors}
    return {v for v in parent if find(v) in roots}


def user_layout_outputs(ir: IR) -> IR:
    """Requested outputs in the layout the user built. ``channel_major`` never converts a chain holding a
    requested output, but a compiled plan compiled again (``Executable.inference``, ONNX export of a
    model: the pipeline runs this pass for them only, option ``from_plan``) may ask for a value inside
    one (a feature map of a trained model): such a node is renamed ``<name>/channel_major`` and a
    transpose back to NCHW takes its name (output k >= 1: a transpose named ``<name>_k/nchw`` becomes the
    output). Before, the value came back (C, N, H, W) where the user's graph says (N, C, H, W).
    Channel-major convolutions are the layout pass's alone (users never set the attribute), so any value
    coupled to one was converted."""
    swapped = _channel_major_values(ir) & set(ir.outputs)
    if not swapped:
        return ir
    fresh = _namer({n.name for n in ir.nodes})
    renamed = {node: fresh(f"{node}/channel_major") for node in sorted({node_of(v) for v in swapped})}
    outputs: dict[str, str] = {}  # requested reference -> the NCHW transpose's name
    nodes: list[Node] = []
    for n in ir.nodes:
        inputs = tuple(ref(renamed.get(m, m), k) for m, k in map(parse_ref, n.inputs))
        if n.name not in renamed:
            nodes.append(n if inputs == n.inputs else replace_node(n, inputs=inputs))
            continue
        moved = replace_node(n, name=renamed[n.name], inputs=inputs)
        nodes.append(moved)
        for k, shape in enumerate(n.shapes):
            if ref(n.name, k) in swapped:
                name = n.name if k == 0 else fresh(f"{n.name}_{k}/nchw")
                outputs[ref(n.name, k)] = _transpose(nodes, name, ref(moved.name, k), _swapped(shape), moved)
    return ir.replace(nodes=tuple(nodes), outputs=tuple(outputs.get(o, o) for o in ir.outputs))
