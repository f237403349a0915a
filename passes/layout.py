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

``pool_blocks`` (the next pass) then blocks the output of a first convolution that only a tiling max
pooling reads (see its docstring and ``graphdl.ops.pool_blocks``).
"""

from __future__ import annotations

import math
from collections import defaultdict

from graphdl.ir import IR, Node, NodeKind, ancestors, make_attrs, node_of, replace_node

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


def channel_major(ir: IR) -> IR:
    """Make convolution chains channel-major where it saves copies (see the module docstring)."""
    convs = [n for n in ir.nodes if n.op == "conv2d" and n.kind is NodeKind.OP]
    if not convs or any(n.attr.get("channel_major") for n in ir.nodes if n.op == "conv2d"):
        return ir
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    by_name = ir.node_map()
    coupled = {n.name: _coupled(n) for n in ir.nodes}
    for values in coupled.values():
        for v in values[1:]:
            parent[find(v)] = find(values[0])
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


def _rewrite(ir: IR, converted: set[str], coupled: dict[str, tuple[str, ...]],
             plain_readers: dict[str, list[str]], by_name: dict[str, Node]) -> IR:
    taken = set(by_name)

    def fresh(base: str) -> str:
        name = base
        while name in taken:
            name += "_"
        taken.add(name)
        return name

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


def _tiling_pool(n: Node) -> tuple[int, int] | None:
    """(bh, bw) if ``n`` is a max pooling whose windows tile its input exactly (kernel == stride, no
    padding, dilation or ceil_mode), else None."""
    a = n.attr
    kernel = tuple(a.get("kernel", ()))
    if (n.op != "max_pool2d" or len(kernel) != 2 or tuple(a.get("stride", (1, 1))) != kernel
            or any(a.get("padding", (0, 0, 0, 0))) or tuple(a.get("dilation", (1, 1))) != (1, 1)
            or a.get("ceil_mode") or kernel == (1, 1)):
        return None
    return kernel  # type: ignore[return-value]


def _depends_on_parameters(ir: IR) -> set[str]:
    """Nodes computed from a parameter (those whose gradient a training plan may build)."""
    tainted: set[str] = set()
    for n in ir.nodes:
        if n.kind is NodeKind.PARAM or any(node_of(v) in tainted for v in n.inputs):
            tainted.add(n.name)
    return tainted


def pool_blocks(ir: IR, training: bool | None) -> IR:
    """Give a channel-major convolution whose output only a tiling max pooling reads a blocked output
    (``conv2d``'s ``pool_blocks``), and that pooling's node ``max_pool_blocks``, where it pays: in
    training plans (the pooling's ``training`` attribute, set by ``set_mode``), when the convolution's
    columns are no larger than its output ((C/groups)*kh*kw <= Cout: the strided im2col of the input costs
    less than the strided copies of the output it saves) and its input needs no gradient (is computed
    from no parameter: a first layer). Value names do not change; the pooling's outputs keep their shapes.

    For an explicit inference compile (``training`` False: ``Executable.inference``, ONNX export of a
    training model) blocked pairs go back to ``conv2d`` and ``max_pool2d``."""
    if training is False:
        return _unblock(ir)
    pools = [n for n in ir.nodes if n.kind is NodeKind.OP and n.attr.get("training") and _tiling_pool(n)]
    if not pools:
        return ir
    by_name = ir.node_map()
    readers: dict[str, int] = defaultdict(int)
    for n in ir.nodes:
        for v in n.inputs:
            readers[v] += 1
    outputs = set(ir.outputs)
    tainted = _depends_on_parameters(ir)
    changed: dict[str, Node] = {}
    for p in pools:
        c = by_name.get(p.inputs[0])
        blocks = _tiling_pool(p)
        if (c is None or c.op != "conv2d" or c.kind is not NodeKind.OP or not c.attr.get("channel_major")
                or c.attr.get("pool_blocks", (1, 1)) != (1, 1) or readers[c.name] != 1 or c.name in outputs
                or len(c.shape) != 4 or node_of(c.inputs[0]) in tainted):
            continue
        cout, _, hh, ww = c.shape
        w_shape = _shape(by_name, c.inputs[1])
        if hh % blocks[0] or ww % blocks[1] or math.prod(w_shape[1:]) > cout:
            continue
        bh, bw = blocks
        changed[c.name] = replace_node(c, attrs=make_attrs({**c.attr, "pool_blocks": blocks}),
                                       shape=(cout, c.shape[1], bh, bw, hh // bh, ww // bw))
        changed[p.name] = replace_node(p, op="max_pool_blocks", attrs=make_attrs({"blocks": blocks}))
    if not changed:
        return ir
    return ir.replace(nodes=tuple(changed.get(n.name, n) for n in ir.nodes))


def _unblock(ir: IR) -> IR:
    """Blocked convolution + max_pool_blocks pairs back to conv2d + max_pool2d (inference), where nothing
    the outputs need reads the indices or the blocked image besides the pooling (the gradient nodes of a
    training graph compiled for inference are dead: dead-code elimination drops them later)."""
    if not any(n.op == "max_pool_blocks" for n in ir.nodes):
        return ir
    by_name = ir.node_map()
    live: set[str] = set()
    for o in ir.outputs:
        live |= ancestors(by_name, node_of(o))
    readers: dict[str, int] = defaultdict(int)
    for n in ir.nodes:
        if n.name in live:
            for v in n.inputs:
                readers[v] += 1
    changed: dict[str, Node] = {}
    for p in ir.nodes:
        if p.op != "max_pool_blocks" or p.kind is not NodeKind.OP or readers[f"{p.name}:1"]:
            continue
        c = by_name[node_of(p.inputs[0])]
        if c.op != "conv2d" or readers[c.name] != 1:
            continue
        blocks = tuple(p.attr["blocks"])
        cout, n, bh, bw, h, w = c.shape
        changed[c.name] = replace_node(c, attrs=make_attrs({k: v for k, v in c.attr.items() if k != "pool_blocks"}),
                                       shape=(cout, n, bh * h, bw * w))
        changed[p.name] = replace_node(p, op="max_pool2d", attrs=make_attrs(
            {"kernel": blocks, "stride": blocks, "padding": (0, 0, 0, 0), "dilation": (1, 1), "training": False}))
    if not changed:
        return ir
    return ir.replace(nodes=tuple(changed.get(n.name, n) for n in ir.nodes))
