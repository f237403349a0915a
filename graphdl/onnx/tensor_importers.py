"""ONNX importers of the shape, layout and indexing ops (graphdl/ops/shape.py, indexing.py), and the
shape arithmetic that lets Shape -> Gather/Slice/Unsqueeze/Concat/Mul -> Reshape import as sizes;
graphdl/onnx/importers.py merges ``TENSOR_IMPORTERS`` into its table and wraps the ops in ``SIZED``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl.graph import Tensor
from graphdl.ir import NodeKind
from graphdl.onnx.import_context import ImportContext, Importer
from graphdl.onnx.tables import registrar

TENSOR_IMPORTERS: dict[str, Importer] = {}
_importer = registrar(TENSOR_IMPORTERS)


@_importer("Identity")
def _identity(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.input(0)]


# -- layout ---------------------------------------------------------------------------------
def _target(ctx: ImportContext, shape: list[int | None]) -> tuple[int, ...]:
    if sum(d is None or d == -1 for d in shape) > 1:
        raise ctx.refuse(f"the result {shape} has more than one unknown dimension")
    return tuple(-1 if d is None else int(d) for d in shape)


@_importer("Reshape")
def _reshape(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    target = ctx.sizes(1)
    if target is None:
        raise ctx.refuse("the target shape must be a constant or computed from shapes")
    if not a.get("allowzero", 0):
        target = [(x.shape[i] if d == 0 else d) for i, d in enumerate(target)]
    unknown = [k for k, d in enumerate(target) if d is None]
    if len(unknown) == 1 and -1 in target and x.shape.count(None) == 1:
        # view(x.size(0), -1): the run-time size is x's unknown (batch) dimension, so the -1 is known
        known_x = math.prod(d for d in x.shape if d is not None)
        known_t = math.prod(d for d in target if d not in (None, -1))
        if known_t and known_x % known_t == 0:
            target[target.index(-1)] = known_x // known_t
    return [ctx.apply("reshape", [x], {"shape": _target(ctx, target)})]


@_importer("Flatten")
def _flatten(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", 1)) % (len(x.shape) + 1) if x.shape else 0
    head, tail = x.shape[:axis], x.shape[axis:]
    target = [None if None in head else math.prod(head), None if None in tail else math.prod(tail)]
    return [ctx.apply("reshape", [x], {"shape": _target(ctx, target)})]


@_importer("Squeeze", "Unsqueeze")
def _squeeze(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    axes = ctx.const(1) if ctx.has(1) else a.get("axes")
    axis = None if axes is None else tuple(int(i) for i in np.asarray(axes).reshape(-1))
    x = ctx.input(0)
    if node.op_type == "Unsqueeze":
        return [ctx.apply("expand_dims", [x], {"axis": axis})]
    if axis is not None and any(x.shape[a] is None for a in axis):
        # ONNX requires size 1, which graphdl cannot see for an unknown size: read position 0 instead
        from graphdl.ops.indexing import INT, SLICE

        drop = {a % len(x.shape) for a in axis}
        entries = tuple((INT, 0) if k in drop else (SLICE, None, None, 1) for k in range(len(x.shape)))
        return [ctx.apply("slice", [x], {"index": entries})]
    return [ctx.apply("squeeze", [x], {"axis": axis})]


@_importer("Expand")
def _expand(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, shape = ctx.input(0), ctx.sizes(1)
    if shape is None:
        raise ctx.refuse("the target shape must be a constant or computed from shapes")
    nd = max(len(x.shape), len(shape))
    ss = [1] * (nd - len(shape)) + shape
    # ONNX broadcasts both ways: a 1 keeps the input's size (None in graphdl's broadcast_to)
    lead = nd - len(x.shape)
    target = [(None if k >= lead else 1) if s in (1, None) else s for k, s in enumerate(ss)]
    return [ctx.apply("broadcast_to", [x], {"shape": tuple(target)})]


@_importer("ConstantOfShape")
def _constant_of_shape(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # a constant or fully known shape was folded already (graphdl/onnx/folding.py)
    sizes = ctx.sizes(0)
    fill = a.get("value")
    zero = fill is None or not np.any(ctx.onnx.numpy_helper.to_array(fill))
    if sizes is not None and None in sizes and zero:
        ctx.zeros[node.output[0]] = sizes  # a recurrent op's initial state, most likely (ImportContext.zeros)
        return [None]
    if sizes is not None and None in sizes:
        raise ctx.refuse(f"a filled tensor of shape {sizes} has sizes only known at run time; graphdl builds "
                         "filled tensors of known shapes only (a batch-sized fill: add the value to an input "
                         "times 0)")
    raise ctx.refuse(f"a filled tensor of shape {sizes} is too large to build while importing")


def _slice_zeros(ctx: ImportContext, sizes: list[int | None], starts: np.ndarray, ends: np.ndarray,
                 axes: Any, steps: Any) -> list[int | None]:
    """The shape of a Slice of a run-time-sized zero tensor (``ImportContext.zeros``)."""
    out = list(sizes)
    for axis, start, stop, step in zip(axes, starts, ends, steps):
        k = int(axis) % len(out)
        whole = int(start) == 0 and int(stop) >= 2**31 - 1 and int(step) == 1
        if out[k] is None and not whole:
            raise ctx.refuse(f"a Slice of axis {k} of a zero-filled tensor {sizes}, whose size is only known at "
                             "run time")
        if out[k] is not None:
            out[k] = len(range(*slice(int(start), int(stop), int(step)).indices(out[k])))
    return out


@_importer("Tile")
def _tile(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("tile", [ctx.input(0)], {"reps": tuple(int(r) for r in ctx.const(1))})]


@_importer("Trilu")
def _trilu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    k = int(ctx.const(1, 0))
    return [ctx.apply("triu" if a.get("upper", 1) else "tril", [ctx.input(0)], {"k": k})]


@_importer("OneHot")
def _one_hot(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    depth, values = ctx.const(1), ctx.const(2)
    if int(a.get("axis", -1)) != -1 or values.tolist() != [0, 1]:
        raise ctx.refuse("only OneHot along the last axis with values [0, 1] is supported")
    return [ctx.apply("one_hot", [ctx.input(0)], {"num_classes": int(depth), "dtype": values.dtype.name})]


@_importer("GatherElements")
def _gather_elements(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # ONNX allows negative indices, counted from the end: graphdl's wrap=True
    return [ctx.apply("gather", [ctx.input(0), ctx.input(1)], {"axis": int(a.get("axis", 0)), "wrap": True})]


@_importer("ScatterElements")
def _scatter_elements(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    reduction = a.get("reduction", "none")
    if reduction not in ("none", "add"):
        raise ctx.refuse(f"reduction={reduction!r} is not supported (none or add)")
    op = "scatter" if reduction == "none" else "scatter_add"
    return [ctx.apply(op, [ctx.input(0), ctx.input(1), ctx.input(2)], {"axis": int(a.get("axis", 0))})]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@_importer("Pad")
def _pad(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    nd = len(x.shape)
    pads = [int(p) for p in ctx.const(1)]
    axes = [int(i) % nd for i in ctx.const(3, list(range(nd)))]
    begins, ends = [0] * nd, [0] * nd
    for k, axis in enumerate(axes):
        begins[axis], ends[axis] = pads[k], pads[k + len(axes)]
    torch_pad: list[int] = []
    for axis in reversed(range(nd)):  # PyTorch order: the last axis first
        torch_pad += [begins[axis], ends[axis]]
    while len(torch_pad) > 2 and torch_pad[-2:] == [0, 0]:
        torch_pad = torch_pad[:-2]
    mode = a.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.refuse(f"mode {mode!r} is not supported")
    value = ctx.const(2)
    attrs = {"pad": tuple(torch_pad), "mode": _PAD_MODES[mode]}
    if mode == "constant":
        attrs["value"] = 0.0 if value is None or value.size == 0 else float(value)
    return [ctx.apply("pad", [x], attrs)]


@_importer("Transpose")
def _transpose(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    perm = a.get("perm")
    return [ctx.apply("transpose", [ctx.input(0)], {"axes": None if perm is None else tuple(int(p) for p in perm)})]


@_importer("Concat")
def _concat(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("concat", [ctx.input(i) for i in range(len(node.input))], {"axis": int(a["axis"])})]


@_importer("Slice")
def _slice(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops.indexing import SLICE

    starts, ends = ctx.const(1), ctx.const(2)
    axes = ctx.const(3, list(range(len(starts))))
    steps = ctx.const(4, [1] * len(starts))
    if node.input[0] in ctx.zeros:  # still zeros, of the sliced shape
        ctx.zeros[node.output[0]] = _slice_zeros(ctx, ctx.zeros[node.input[0]], starts, ends, axes, steps)
        return [None]
    x = ctx.input(0)
    nd = len(x.shape)
    if all(int(s) == -1 for s in steps) and all(int(b) == -1 for b in starts) and all(
            int(e) <= -(2**31) for e in ends):  # a full reversal of each axis
        return [ctx.apply("flip", [x], {"axis": tuple(int(i) % nd for i in axes)})]
    entries = [(SLICE, None, None, 1)] * nd
    for axis, start, stop, step in zip(axes, starts, ends, steps):
        start, stop, step = int(start), int(stop), int(step)
        if step == 0:
            raise ctx.refuse("a Slice step of 0")
        # ONNX clamps like Python slicing; the int64 extremes mean "to the end"
        entries[int(axis) % nd] = (SLICE, None if abs(start) >= 2**62 else start,
                                   None if abs(stop) >= 2**62 else stop, step)
    return [ctx.apply("slice", [x], {"index": tuple(entries)})]


@_importer("Gather")
def _gather(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    table = ctx.array(node.input[0])
    if table is not None and table.ndim == 2 and int(a.get("axis", 0)) == 0 and ctx.array(node.input[1]) is None:
        return [ctx.apply("embedding", [ctx.input(1), ctx.input(0, NodeKind.PARAM)])]
    index = ctx.array(node.input[1])
    x = ctx.input(0)
    if index is None or index.ndim > 1:
        raise ctx.refuse("Gather is imported for a constant table read by computed ids (an embedding), or "
                         "for constant 0-d or 1-d indices")
    axis = int(a.get("axis", 0)) % len(x.shape)
    size = x.shape[axis]
    picks = [int(i) + (size if i < 0 and size is not None else 0) for i in index.reshape(-1)]
    if any(i < 0 or (size is not None and i >= size) for i in picks):
        raise ctx.refuse(f"indices {index.tolist()} are out of range for axis {axis} of {x.shape}")
    if index.ndim == 0:  # one position: a slice without its axis
        part = ctx.part("slice", [x], {"axis": axis, "start": picks[0], "stop": picks[0] + 1})
        return [ctx.apply("squeeze", [part], {"axis": (axis,)})]
    if picks == list(range(picks[0], picks[0] + len(picks))):
        return [ctx.apply("slice", [x], {"axis": axis, "start": picks[0], "stop": picks[0] + len(picks)})]
    parts = [ctx.part("slice", [x], {"axis": axis, "start": i, "stop": i + 1}, suffix=f"pick{k}")
             for k, i in enumerate(picks)]
    return [ctx.apply("concat", parts, {"axis": axis})]


@_importer("Split")
def _split(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", 0)) % len(x.shape)
    sizes = ctx.const(1) if ctx.has(1) else a.get("split")
    if sizes is None:
        count, size = len(node.output), x.shape[axis]
        if size is None:
            raise ctx.refuse(f"splitting axis {axis}, whose size is unknown, is not supported")
        step = -(-size // count)  # ONNX: equal parts, the last one smaller
        sizes = [min(step, size - k * step) for k in range(count)]
    outs = ctx.graph.apply_multi("split", [x], {"sizes": tuple(int(s) for s in sizes), "axis": axis},
                                 name=ctx.name())
    return list(outs)


# -- shape arithmetic: Shape -> Gather/Slice/Unsqueeze/Concat/Mul -> Reshape ------------------
@_importer("Shape")
def _shape(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    dims = list(ctx.input(0).shape)
    start, end = int(a.get("start", 0)), a.get("end")
    ctx.shape_values[node.output[0]] = dims[start:None if end is None else int(end)]
    return [None]


def on_sizes(fn: Importer, sized: Callable[[ImportContext, Any, dict[str, Any]], list[int | None] | None]
              ) -> Importer:
    """An importer that computes on sizes when its first input is a shape value, else builds nodes."""

    def build(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
        if any(i in ctx.shape_values for i in node.input):
            out = sized(ctx, node, a)
            if out is None:
                raise ctx.refuse("this computation on shapes is not supported")
            ctx.shape_values[node.output[0]] = out
            return [None]
        return fn(ctx, node, a)

    return build


def _sized_gather(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    sizes, index = ctx.sizes(0), ctx.const(1)
    if sizes is None or int(a.get("axis", 0)) != 0:
        return None
    return [sizes[int(i)] for i in np.asarray(index).reshape(-1)]


def _sized_same(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    return ctx.sizes(0)  # Unsqueeze/Squeeze/Identity/Cast of a 0-d or 1-d size list keep the sizes


def _sized_concat(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    parts = [ctx.sizes(i) for i in range(len(node.input))]
    return None if any(p is None for p in parts) else [d for p in parts for d in p]


def _sized_slice(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    sizes, start, end = ctx.sizes(0), ctx.const(1), ctx.const(2)
    steps = ctx.const(4, [1])
    if sizes is None or len(start) != 1 or int(steps[0]) != 1:
        return None
    return sizes[int(start[0]):int(min(end[0], len(sizes)))]


def _sized_arith(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    x, y = ctx.sizes(0), ctx.sizes(1)
    if x is None or y is None:
        return None
    fn = {"Mul": lambda p, q: p * q, "Add": lambda p, q: p + q, "Sub": lambda p, q: p - q,
          "Div": lambda p, q: p // q}[node.op_type]
    n = max(len(x), len(y))
    x, y = (x * n if len(x) == 1 else x), (y * n if len(y) == 1 else y)
    return [None if p is None or q is None else int(fn(p, q)) for p, q in zip(x, y)]


#: The ops that compute on sizes when they read a shape value, with the rule that does it (the math
#: family's Mul/Add/Sub/Div among them: graphdl/onnx/importers.py wraps the merged table's entries).
SIZED = {"Gather": _sized_gather, "Unsqueeze": _sized_same, "Squeeze": _sized_same, "Identity": _sized_same,
         "Concat": _sized_concat, "Slice": _sized_slice, "Mul": _sized_arith, "Add": _sized_arith,
         "Sub": _sized_arith, "Div": _sized_arith}
