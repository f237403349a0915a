"""Reductions (sum, mean, max over axes) and the broadcasts that are their gradients."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Axes, Bool, Ints
from graphdl.dtypes import boolean, floating, is_float
from graphdl.ops.common import norm_axes, reduced_shape
from graphdl.registry import GradContext, OpDef, fail, register, scratch

REDUCE_ATTRS = {"axis": Axes(), "keepdims": Bool(False)}


def _same(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    return dtypes[0]


def _reduce_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return reduced_shape(shapes[0], attrs.get("axis"), attrs.get("keepdims", False))


def _middle(shape: tuple, axes: tuple) -> tuple[int, int, int] | None:
    """(A, B, C) when the reduced axes are a leading and a trailing block around the kept ones (a
    convolution's bias gradient sums (N, C, H, W) over (0, 2, 3)), else None."""
    kept = [i for i in range(len(shape)) if i not in axes]
    if not kept or kept != list(range(kept[0], kept[-1] + 1)) or kept[0] == 0 or kept[-1] == len(shape) - 1:
        return None
    return math.prod(shape[:kept[0]]), math.prod(shape[kept[0]:kept[-1] + 1]), math.prod(shape[kept[-1] + 1:])


def _by_dot(ufunc_reduce: str, attrs: dict, shape: tuple, dtype: np.dtype) -> bool:
    """Whether the reduction runs as matrix-vector products with ones (floats, sum or mean of something)."""
    axes = norm_axes(attrs.get("axis"), len(shape))
    return (ufunc_reduce in ("sum", "mean") and bool(axes) and np.dtype(dtype).kind == "f"
            and not (ufunc_reduce == "mean" and any(shape[i] == 0 for i in axes)))  # nan, from np.mean


def _reduce_workspace(ufunc_reduce: str):
    def workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
        shape = in_shapes[0]
        middle = _middle(shape, norm_axes(attrs.get("axis"), len(shape)))
        if middle is None or not _by_dot(ufunc_reduce, attrs, shape, dtype):
            return []
        return [((middle[0] * middle[1],), dtype)]  # the trailing block summed away first

    return workspace


def _reduce_kernel(ufunc_reduce: str):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                workspace: list[np.ndarray] | None = None):
        axes = norm_axes(attrs.get("axis"), len(in_shapes[0]))
        keepdims = attrs.get("keepdims", False)
        fn = getattr(np, ufunc_reduce)
        shape, nd = in_shapes[0], len(in_shapes[0])
        lead = axes == tuple(range(len(axes)))
        by_dot = _by_dot(ufunc_reduce, attrs, shape, dtype)
        m = math.prod(shape[i] for i in axes)
        scale = 1.0 / m if ufunc_reduce == "mean" and m else 1.0
        if by_dot and (lead or axes == tuple(range(nd - len(axes), nd))):
            # Summing leading (or trailing) axes is a matrix-vector product with ones: BLAS, no
            # iterator buffers (a bias gradient is the sum over the batch axis).
            rest = math.prod(d for i, d in enumerate(shape) if i not in axes)  # exact when m == 0 too
            ones = np.full(m, scale, dtype=dtype)
            x2, out1 = ((m, rest), (rest,)) if lead else ((rest, m), (rest,))

            def reduce_dot(x: np.ndarray, out: np.ndarray) -> None:
                if lead:
                    np.dot(ones, x.reshape(x2), out=out.reshape(out1))
                else:
                    np.dot(x.reshape(x2), ones, out=out.reshape(out1))

            return reduce_dot
        middle = _middle(shape, axes) if by_dot else None
        if middle is not None:
            # Leading and trailing axes (N, C, H, W over (0, 2, 3)): the trailing block by one product
            # into planned workspace, then the leading one (3x faster than NumPy's strided reduction).
            a, b, c = middle
            (rows,) = scratch(workspace, _reduce_workspace(ufunc_reduce)(attrs, in_shapes, out_shape, dtype))
            ones_c, ones_a = np.ones(c, dtype=dtype), np.full(a, scale, dtype=dtype)

            def reduce_middle(x: np.ndarray, out: np.ndarray) -> None:
                np.dot(x.reshape(a * b, c), ones_c, out=rows)
                np.dot(ones_a, rows.reshape(a, b), out=out.reshape(b))

            return reduce_middle

        def reduce(x: np.ndarray, out: np.ndarray) -> None:
            with np.errstate(invalid="ignore", divide="ignore"):  # the mean of nothing is nan, silently
                fn(x, axis=axes, keepdims=keepdims, out=out)

        return reduce

    return factory


def _broadcast_back(c: GradContext, mean: bool) -> list:
    a = c.attrs
    return [c.apply("broadcast_like", c.gout, c.inputs[0], axis=a.get("axis"),
                    keepdims=a.get("keepdims", False), mean=mean)]


def _sum_dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    # PyTorch: the sum or product of bool or integer values is int64
    return dtypes[0] if is_float(dtypes[0]) else "int64"


register(OpDef("sum", _reduce_shape, _reduce_kernel("sum"), arity=1, workspace=_reduce_workspace("sum"),
               label_attrs=("axis",), dtype=_sum_dtype,
               grad=lambda c: _broadcast_back(c, mean=False),
               doc="Sum over axis (all axes when None); bool and integer values sum to int64.",
               attr_schema=REDUCE_ATTRS))
register(OpDef("mean", _reduce_shape, _reduce_kernel("mean"), arity=1, workspace=_reduce_workspace("mean"),
               label_attrs=("axis",), dtype=floating,
               grad=lambda c: _broadcast_back(c, mean=True), doc="Mean over axis (all axes when None).",
               attr_schema=REDUCE_ATTRS))


def _dims_agree(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _broadcast_like_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    expected = reduced_shape(x, attrs.get("axis"), attrs.get("keepdims", False))
    if not _dims_agree(expected, g):
        fail(f"gradient of shape {g} is not {x} reduced over axis {attrs.get('axis')} ({expected})")
    return x


def _broadcast_like_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    _g_shape, x_shape = in_shapes
    axes = norm_axes(attrs.get("axis"), len(x_shape))
    kept = tuple(1 if i in axes else d for i, d in enumerate(x_shape))
    scale = 1.0 / max(1, math.prod(x_shape[i] for i in axes)) if attrs.get("mean") else None

    def broadcast(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, g.reshape(kept))
        if scale is not None:
            out *= scale

    return broadcast


register(OpDef(
    "broadcast_like", _broadcast_like_shape, _broadcast_like_kernel, arity=2, nondiff=(1,), shape_only=(1,),
    grad=lambda c: [c.apply("mean" if c.attrs.get("mean") else "sum", c.gout,
                            axis=c.attrs.get("axis"), keepdims=c.attrs.get("keepdims", False)), None],
    label_attrs=("axis", "mean"),
    doc="g, the reduction of x over axis, broadcast back to x's shape; mean=True divides by the count.",
    attr_schema={**REDUCE_ATTRS, "mean": Bool(False)},
))


# Unbroadcasting: autodiff sums a gradient back to the shape of an input that was broadcast.
def _sum_to_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (g,), target = shapes, tuple(attrs["shape"])
    if len(target) > len(g):
        fail(f"cannot sum shape {g} to the larger shape {target}")
    lead = len(g) - len(target)
    out = []
    for t, d in zip(target, g[lead:], strict=True):
        if t is not None and t != 1 and d is not None and d != t:
            fail(f"cannot sum shape {g} to {target}")
        out.append(d if t is None else t)
    return tuple(out)


def _sum_to_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    g = in_shapes[0]
    lead = len(g) - len(out_shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, t in enumerate(out_shape) if t == 1 and g[lead + i] != 1)
    squeezed = tuple(d for i, d in enumerate(g) if i not in axes)

    def sum_to(x: np.ndarray, out: np.ndarray) -> None:
        if axes:
            np.sum(x, axis=axes, out=out.reshape(squeezed))
        else:
            np.copyto(out, x.reshape(out_shape))

    return sum_to


register(OpDef(
    "sum_to", _sum_to_shape, _sum_to_kernel, arity=1, label_attrs=("shape",),
    grad=lambda c: [c.apply("expand_like", c.gout, c.inputs[0])],
    doc="Sum a broadcast gradient back to `shape` (None dims keep the input's size).",
    attr_schema={"shape": Ints(low=0, unknown=True)},  # autodiff passes symbolic shapes (None)
))


def _expand_like_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return shapes[1]


def _expand_like_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def expand(t: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, t)

    return expand


register(OpDef(
    "expand_like", _expand_like_shape, _expand_like_kernel, arity=2, nondiff=(1,), shape_only=(1,),
    grad=lambda c: [c.apply("sum_to", c.gout, shape=c.inputs[0].shape), None],
    doc="Broadcast t (right-aligned, NumPy rules) to x's shape.", attr_schema={},
))


def _extremum_grad(c: GradContext) -> list:
    # Like PyTorch's amax/amin: the gradient is shared evenly among the entries equal to the extremum.
    x, a = c.inputs[0], c.attrs
    spread = {"axis": a.get("axis"), "keepdims": a.get("keepdims", False)}
    hit = c.apply("where", c.apply("equal", x, c.apply("broadcast_like", c.out, x, **spread)), 1.0, 0.0)
    count = c.apply("broadcast_like", c.apply("sum", hit, **spread), x, **spread)
    return [c.apply("broadcast_like", c.gout, x, **spread) * hit / count]


def _nonempty_reduce_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x = shapes[0]
    empty = [i for i in norm_axes(attrs.get("axis"), len(x)) if x[i] == 0]
    if empty:
        fail(f"the maximum or minimum over axis {empty[0]} of {x}, which is empty, is undefined",
             "reduce a non-empty axis, or use sum (0 over an empty axis)")
    return _reduce_shape(shapes, attrs)


register(OpDef("max", _nonempty_reduce_shape, _reduce_kernel("max"), arity=1, label_attrs=("axis",),
               grad=_extremum_grad, dtype=_same,
               doc="Largest entry over axis (torch.amax); ties share the gradient evenly.", attr_schema=REDUCE_ATTRS))
register(OpDef("min", _nonempty_reduce_shape, _reduce_kernel("min"), arity=1, label_attrs=("axis",),
               grad=_extremum_grad, dtype=_same,
               doc="Smallest entry over axis (torch.amin); ties share the gradient evenly.", attr_schema=REDUCE_ATTRS))
register(OpDef("any", _reduce_shape, _reduce_kernel("any"), arity=1, label_attrs=("axis",), dtype=boolean,
               doc="Whether any entry over axis is true (nonzero); bool, no gradient.", attr_schema=REDUCE_ATTRS))
register(OpDef("all", _reduce_shape, _reduce_kernel("all"), arity=1, label_attrs=("axis",), dtype=boolean,
               doc="Whether every entry over axis is true (nonzero); bool, no gradient.", attr_schema=REDUCE_ATTRS))


def _arg_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    axis = attrs.get("axis")
    if axis is not None and not isinstance(axis, int):
        fail(f"argmax/argmin take one axis or None, got {axis}")
    (x,) = shapes
    axes = norm_axes(axis, len(x))
    if any(x[i] == 0 for i in axes):
        fail(f"cannot take the arg-extremum over an empty axis of {x}")
    return reduced_shape(x, axis, attrs.get("keepdims", False))


def _arg_kernel(fn: Any):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        axis, keepdims = attrs.get("axis"), attrs.get("keepdims", False)

        def arg(x: np.ndarray, out: np.ndarray) -> None:
            fn(x, axis=axis, out=out, keepdims=keepdims)

        return arg

    return factory


register(OpDef("argmax", _arg_shape, _arg_kernel(np.argmax), arity=1, label_attrs=("axis",),
               dtype=lambda d, a: "int64",
               doc="int64 index of the largest entry along axis (of the flattened x when None); first of ties.",
               attr_schema=REDUCE_ATTRS))
register(OpDef("argmin", _arg_shape, _arg_kernel(np.argmin), arity=1, label_attrs=("axis",),
               dtype=lambda d, a: "int64",
               doc="int64 index of the smallest entry along axis (of the flattened x when None); first of ties.",
               attr_schema=REDUCE_ATTRS))
