"""Blocked pooling: a first convolution and the tiling max pooling that alone reads it become one op.

In training plans, a channel-major convolution whose output only a tiling max pooling reads (kernel ==
stride, no padding, dilation or ceil_mode), whose columns are no larger than its output ((C/groups)*kh*kw
<= Cout: the strided im2col of the input costs less than the strided copies of the output it saves) and
whose input needs no gradient (is computed from no parameter: a first layer) is fused with that pooling
into ``conv2d_pool_blocks`` (``graphdl.ops.conv_pool``): its output, blocked (C, N, bh, bw, H/bh, W/bw) so
that each window offset is a contiguous plane (``graphdl.ops.pool_blocks``), is computed and pooled in
cache-sized chunks of samples and never stored whole. The fused node takes the pooling's name and place
(its outputs, values and indices, keep their names and shapes) and records the convolution's name.

For an explicit inference compile (``training`` False: ``Executable.inference``, ONNX export of a
training model) fused nodes and blocked pairs go back to ``conv2d`` and ``max_pool2d`` under their own
names (``unfuse``, then ``_unblock``).
"""

from __future__ import annotations

import math
from collections import defaultdict

from graphdl.ir import IR, Node, NodeKind, ancestors, make_attrs, node_of, replace_node, value_info

FUSED = "conv2d_pool_blocks"


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
    """Fuse each qualifying convolution + pooling pair (see the module docstring) in a training plan (the
    pooling's ``training`` attribute, set by ``set_mode``); split fused nodes and blocked pairs back to
    ``conv2d`` + ``max_pool2d`` when ``training`` is False."""
    if training is False:
        return _unblock(unfuse(ir))
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
    fused: dict[str, Node] = {}
    dropped: set[str] = set()
    for p in pools:
        c = by_name.get(p.inputs[0])
        blocks = _tiling_pool(p)
        if (c is None or c.op != "conv2d" or c.kind is not NodeKind.OP or not c.attr.get("channel_major")
                or c.attr.get("pool_blocks", (1, 1)) != (1, 1) or readers[c.name] != 1 or c.name in outputs
                or len(c.shape) != 4 or node_of(c.inputs[0]) in tainted):
            continue
        cout, _, hh, ww = c.shape
        if hh % blocks[0] or ww % blocks[1] or math.prod(value_info(by_name, c.inputs[1])[0][1:]) > cout:
            continue
        attrs = make_attrs({**c.attr, "pool_blocks": blocks, "conv": c.name})
        fused[p.name] = replace_node(p, op=FUSED, inputs=c.inputs, attrs=attrs)
        dropped.add(c.name)
    if not fused:
        return ir
    # The fused node reads the convolution's inputs, which come before the convolution and so before
    # the pooling: it takes the pooling's place.
    return ir.replace(nodes=tuple(fused.get(n.name, n) for n in ir.nodes if n.name not in dropped))


def unfuse(ir: IR) -> IR:
    """Each ``conv2d_pool_blocks`` node back to its blocked ``conv2d`` (under the name it records) and
    ``max_pool_blocks`` (under the fused node's name): the same values, each op on its own."""
    if not any(n.op == FUSED for n in ir.nodes):
        return ir
    nodes: list[Node] = []
    for n in ir.nodes:
        if n.op != FUSED:
            nodes.append(n)
            continue
        attrs = n.attr
        conv = attrs.pop("conv")
        blocks = tuple(attrs["pool_blocks"])
        cout, batch, h, w = n.shape
        nodes.append(Node(conv, n.kind, "conv2d", n.inputs, make_attrs(attrs),
                          (cout, batch, *blocks, h, w), n.dtype, n.origin))
        nodes.append(replace_node(n, op="max_pool_blocks", inputs=(conv,), attrs=make_attrs({"blocks": blocks})))
    return ir.replace(nodes=tuple(nodes))


def _unblock(ir: IR) -> IR:
    """Blocked convolutions back to plain channel-major ``conv2d`` and their ``max_pool_blocks`` readers
    to ``max_pool2d`` (inference), where nothing the outputs need reads a pooling's indices or reads the
    blocked image but those poolings (the gradient nodes of a training graph compiled for inference are
    dead: dead-code elimination drops them later). A convolution that is itself a requested output comes
    back channel-major, and ``layout.user_layout_outputs`` then gives it the user's layout."""
    blocked = [n for n in ir.nodes if n.op == "conv2d" and n.kind is NodeKind.OP and len(n.shape) == 6]
    if not blocked:
        return ir
    by_name = ir.node_map()
    live: set[str] = set()
    for o in ir.outputs:
        live |= ancestors(by_name, node_of(o))
    readers: dict[str, list[Node]] = defaultdict(list)
    for n in ir.nodes:
        if n.name in live:
            for v in n.inputs:
                readers[v].append(n)
    changed: dict[str, Node] = {}
    for c in blocked:
        pools = readers[c.name]
        if any(p.op != "max_pool_blocks" or readers[f"{p.name}:1"] for p in pools):
            continue
        cout, n, bh, bw, h, w = c.shape
        changed[c.name] = replace_node(c, attrs=make_attrs({k: v for k, v in c.attr.items() if k != "pool_blocks"}),
                                       shape=(cout, n, bh * h, bw * w))
        for p in pools:
            changed[p.name] = replace_node(p, op="max_pool2d", attrs=make_attrs(
                {"kernel": (bh, bw), "stride": (bh, bw), "padding": (0, 0, 0, 0), "dilation": (1, 1),
                 "training": False}))
    if not changed:
        return ir
    return ir.replace(nodes=tuple(changed.get(n.name, n) for n in ir.nodes))
