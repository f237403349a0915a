"""ONNX exporters of the structural ops: reshaping, transposing, joining and splitting, broadcasting,
indexing by arrays (gather, scatter, one_hot), flipping, rolling, tiling, repeating and padding;
``graphdl.onnx.exporters`` merges ``TENSOR_EXPORTERS`` into its table.
"""

from __future__ import annotations

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, Exporter, ExportError
from graphdl.onnx.tables import registrar
from graphdl.ops.common import norm_axes

TENSOR_EXPORTERS: dict[str, Exporter] = {}
_exporter = registrar(TENSOR_EXPORTERS)


@_exporter("reshape")
def _reshape(ctx: ExportContext, n: Node) -> None:
    target = [-1 if d is None or d == -1 else int(d) for d in n.attr["shape"]]
    ctx.emit("Reshape", [n.inputs[0], ctx.const(n, "shape", target)], n.name)


@_exporter("transpose")
def _transpose(ctx: ExportContext, n: Node) -> None:
    axes = n.attr.get("axes")
    nd = len(n.shape)
    perm = list(reversed(range(nd))) if axes is None else [int(a) % nd for a in axes]
    ctx.emit("Transpose", n.inputs, n.name, perm=perm)


@_exporter("concat")
def _concat(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Concat", n.inputs, n.name, axis=int(n.attr.get("axis", 1)))


@_exporter("split")
def _split(ctx: ExportContext, n: Node) -> None:
    sizes = ctx.const(n, "sizes", list(n.attr["sizes"]))
    ctx.emit("Split", [n.inputs[0], sizes], n.name, outputs=list(n.refs), axis=int(n.attr["axis"]))


@_exporter("expand_dims")
def _expand_dims(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Unsqueeze", [n.inputs[0], ctx.const(n, "axes", list(norm_axes(n.attr["axis"], len(n.shape))))], n.name)


@_exporter("squeeze")
def _squeeze(ctx: ExportContext, n: Node) -> None:
    x = ctx.shape(n.inputs[0])
    axis = n.attr.get("axis")
    axes = [i for i, d in enumerate(x) if d == 1] if axis is None else list(norm_axes(axis, len(x)))
    ctx.emit("Squeeze", [n.inputs[0], ctx.const(n, "axes", axes)], n.name)


@_exporter("broadcast_to")
def _broadcast_to(ctx: ExportContext, n: Node) -> None:
    # Expand broadcasts both ways: a 1 (for None, "keep the input's size") leaves an axis as it is
    shape = [1 if d is None else int(d) for d in n.attr["shape"]]
    ctx.emit("Expand", [n.inputs[0], ctx.const(n, "shape", shape)], n.name)


@_exporter("reshape_like")
def _reshape_like(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Reshape", [n.inputs[0], ctx.helper(n, "shape", "Shape", [n.inputs[1]])], n.name)


@_exporter("expand_like")
def _expand_like(ctx: ExportContext, n: Node) -> None:
    # also in inference plans: a recurrent layer's zero initial state of the batch's size
    ctx.emit("Expand", [n.inputs[0], ctx.helper(n, "shape", "Shape", [n.inputs[1]])], n.name)


@_exporter("tril", "triu")
def _tri(ctx: ExportContext, n: Node) -> None:
    k = ctx.const(n, "k", int(n.attr.get("k", 0)))
    ctx.emit("Trilu", [n.inputs[0], k], n.name, upper=int(n.op == "triu"))


@_exporter("one_hot")
def _one_hot(ctx: ExportContext, n: Node) -> None:
    depth = ctx.const(n, "depth", int(n.attr["num_classes"]))
    values = ctx.const(n, "values", [0, 1], np.dtype(n.dtype))
    ctx.emit("OneHot", [n.inputs[0], depth, values], n.name, axis=-1)


@_exporter("einsum")
def _einsum(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Einsum", n.inputs, n.name, equation=n.attr["equation"])


@_exporter("gather")
def _gather(ctx: ExportContext, n: Node) -> None:
    ctx.emit("GatherElements", n.inputs, n.name, axis=int(n.attr["axis"]))


@_exporter("scatter", "scatter_add")
def _scatter(ctx: ExportContext, n: Node) -> None:
    x, index = n.inputs[:2]
    if len(n.inputs) == 3:
        src = n.inputs[2]
    elif None not in ctx.shape(index):  # a number written everywhere index points
        src = ctx.const(n, "src", np.full(ctx.shape(index), n.attr.get("value", 0.0)), ctx.dtype(x))
    else:
        value = ctx.const(n, "value", n.attr.get("value", 0.0), ctx.dtype(x))
        src = ctx.helper(n, "src", "Expand", [value, ctx.helper(n, "index_shape", "Shape", [index])])
    ctx.emit("ScatterElements", [x, index, src], n.name, axis=int(n.attr["axis"]),
             reduction="add" if n.op == "scatter_add" else "none")


@_exporter("flip")
def _flip(ctx: ExportContext, n: Node) -> None:
    axes = list(norm_axes(n.attr.get("axis"), len(n.shape)))
    k = len(axes)
    ins = [n.inputs[0], ctx.const(n, "starts", [-1] * k), ctx.const(n, "ends", [-(2**63)] * k),
           ctx.const(n, "axes", axes), ctx.const(n, "steps", [-1] * k)]
    ctx.emit("Slice", ins, n.name)


@_exporter("roll")
def _roll(ctx: ExportContext, n: Node) -> None:
    xs = ctx.shape(n.inputs[0])
    shift, axis = n.attr["shift"], n.attr["axis"]
    pairs = list(zip((shift,) if isinstance(shift, int) else shift, (axis,) if isinstance(axis, int) else axis))
    total: dict[int, int] = {}
    for s, a in pairs:  # shifts on one axis add up, as in NumPy
        total[a % len(xs)] = total.get(a % len(xs), 0) + int(s)
    cur = n.inputs[0]
    for k, (a, s) in enumerate(sorted(total.items())):
        size = xs[a]
        if size is None:
            raise ExportError(f"{n.describe()}: rolling axis {a}, whose size is unknown, is not exported")
        s %= max(size, 1)
        ax = ctx.const(n, f"axis{k}", [a])
        tail = ctx.helper(n, f"tail{k}", "Slice", [cur, ctx.const(n, f"cut{k}", [size - s]),
                                                   ctx.const(n, f"end{k}", [size]), ax])
        head = ctx.helper(n, f"head{k}", "Slice", [cur, ctx.const(n, f"zero{k}", [0]),
                                                   ctx.const(n, f"cut{k}_", [size - s]), ax])
        last = k == len(total) - 1
        cur = (ctx.emit("Concat", [tail, head], n.name, axis=a) if last
               else ctx.helper(n, f"rolled{k}", "Concat", [tail, head], axis=a))
    if not total:
        ctx.emit("Identity", [cur], n.name)


@_exporter("tile")
def _tile(ctx: ExportContext, n: Node) -> None:
    reps = [int(r) for r in n.attr["reps"]]
    src = n.inputs[0]
    lead = len(reps) - len(ctx.shape(src))
    if lead > 0:
        src = ctx.helper(n, "lead", "Unsqueeze", [src, ctx.const(n, "lead_axes", list(range(lead)))])
    reps = [1] * max(-lead, 0) + reps
    ctx.emit("Tile", [src, ctx.const(n, "reps", reps)], n.name)


@_exporter("repeat")
def _repeat(ctx: ExportContext, n: Node) -> None:
    xs = ctx.shape(n.inputs[0])
    (axis,) = norm_axes(n.attr["axis"], len(xs))
    r = n.attr["repeats"]
    size = xs[axis]
    if not isinstance(r, int):  # one count per element: gather the input positions
        counts = np.asarray(r, dtype=np.int64)
        index = ctx.const(n, "index", np.repeat(np.arange(len(counts)), counts))
        ctx.emit("Gather", [n.inputs[0], index], n.name, axis=axis)
        return
    if size is None or None in xs[axis + 1:]:
        raise ExportError(f"{n.describe()}: repeat needs the sizes from axis {axis} on known")
    # (.., n, ..) -> (.., n, 1, ..) -> (.., n, r, ..) -> (.., n * r, ..)
    up = ctx.helper(n, "unsqueeze", "Unsqueeze", [n.inputs[0], ctx.const(n, "axes", [axis + 1])])
    mult = [1] * (len(xs) + 1)
    mult[axis + 1] = r
    expanded = ctx.helper(n, "tile", "Tile", [up, ctx.const(n, "reps", mult)])
    target = [0] * axis + [size * r] + [int(d) for d in xs[axis + 1:]]
    ctx.emit("Reshape", [expanded, ctx.const(n, "target", target)], n.name)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@_exporter("pad")
def _pad(ctx: ExportContext, n: Node) -> None:
    nd = len(n.shape)
    pad = [int(p) for p in n.attr["pad"]]
    begins, ends = [0] * nd, [0] * nd
    for k in range(len(pad) // 2):  # PyTorch order: (left, right) of the last axis first
        begins[nd - 1 - k], ends[nd - 1 - k] = pad[2 * k], pad[2 * k + 1]
    mode = _PAD_MODES[n.attr.get("mode", "constant")]
    if mode == "wrap" and ctx.opset < 19:
        raise ExportError(f"{n.describe()}: circular padding needs opset 19 or later, not {ctx.opset}")
    ins = [n.inputs[0], ctx.const(n, "pads", begins + ends)]
    if mode == "constant":
        ins.append(ctx.const(n, "value", n.attr.get("value", 0.0), ctx.dtype(n.inputs[0])))
    ctx.emit("Pad", ins, n.name, mode=mode)
