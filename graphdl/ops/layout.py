"""Ops that change how elements are laid out: reshape, transpose and concat (slicing: ops/indexing.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Int, Ints
from graphdl.ops.indexing import SLICE
from graphdl.registry import GradContext, OpDef, fail, register


def _reshape_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,), target = shapes, tuple(attrs["shape"])
    if sum(1 for d in target if d == -1 or d is None) > 1:
        fail(f"reshape target {target} has more than one unknown (-1/None) dimension")
    if any(d is not None and d < -1 for d in target):
        fail(f"reshape target {target} has a negative size")
    known_in = math.prod(d for d in x if d is not None)
    known_out = math.prod(d for d in target if d is not None and d != -1)
    if None in x:
        # The batch size is unknown: -1 takes whatever the elements give, which may split the batch
        # ((N*4, 5) -> (-1, 4, 5)) or merge it ((N, 4, 5) -> (-1, 5)); the concrete shapes of a plan
        # check that the split is exact once the batch size is known.
        if -1 not in target and None not in target:
            fail(f"cannot reshape {x}, whose batch size is unknown, to the fixed shape {target}",
                 "use -1 for the batch dimension")
        if known_in == 0 and known_out != 0:
            fail(f"cannot reshape {x} (no elements) to {target}")
        return tuple(None if d in (-1, None) else d for d in target)
    if -1 in target or None in target:
        if known_out == 0 or known_in % known_out:
            fail(f"cannot reshape {x} ({known_in} elements) to {target}",
                 f"the known dimensions of the target must divide {known_in}")
        return tuple(known_in // known_out if d in (-1, None) else d for d in target)
    if known_in != known_out:
        fail(f"cannot reshape {x} ({known_in} elements) to {target} ({known_out} elements)")
    return target


def _reshape_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def reshape(x: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        np.copyto(out, x.reshape(out_shape))

    return reshape


register(OpDef(
    "reshape", _reshape_shape, _reshape_kernel, arity=1, inplace=(0,), label_attrs=("shape",),
    grad=lambda c: [c.apply("reshape_like", c.gout, c.inputs[0])],
    doc="x with the same elements in a new shape; one -1 takes the remaining size (it may split or "
        "merge an unknown batch dimension, checked when the batch size is known).",
    attr_schema={"shape": Ints(low=-1, unknown=True)},
))


def _reshape_like_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    if None not in g and None not in x and math.prod(g) != math.prod(x):
        fail(f"cannot reshape {g} ({math.prod(g)} elements) to the shape of {x} ({math.prod(x)} elements)")
    return x


register(OpDef(
    "reshape_like", _reshape_like_shape, _reshape_kernel, arity=2, inplace=(0,), nondiff=(1,), shape_only=(1,),
    grad=lambda c: [c.apply("reshape_like", c.gout, c.inputs[0]), None],
    doc="g reshaped to the shape of x (the gradient of reshape; exact for any number of unknown dimensions).",
    attr_schema={},
))


def _flatten_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,), start = shapes, attrs["start_dim"]
    if not 0 <= start < max(len(x), 1):
        fail(f"start_dim {start} is out of range for {x}")
    tail = x[start:]
    if None in tail:
        fail(f"dimensions {start}.. of {x} must be known to flatten them")
    return (*x[:start], math.prod(tail))


register(OpDef(
    "flatten", _flatten_shape, _reshape_kernel, arity=1, inplace=(0,), label_attrs=("start_dim",),
    grad=lambda c: [c.apply("reshape_like", c.gout, c.inputs[0])],
    doc="x with dimensions start_dim.. merged into one; the leading dimensions stay as they are, known or not.",
    attr_schema={"start_dim": Int(low=0)},
))


def _transpose_axes(attrs: dict[str, Any], ndim: int) -> tuple[int, ...]:
    axes = attrs.get("axes")
    return tuple(reversed(range(ndim))) if axes is None else tuple(a % ndim for a in axes)


def _transpose_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    axes = attrs.get("axes")
    if axes is not None and sorted(a % len(x) if -len(x) <= a < len(x) else a for a in axes) != list(range(len(x))):
        fail(f"axes {tuple(axes)} are not a permutation of the {len(x)} axes of {x}")
    return tuple(x[a] for a in _transpose_axes(attrs, len(x)))


def _transpose_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axes = _transpose_axes(attrs, len(in_shapes[0]))

    def transpose(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x.transpose(axes))

    return transpose


register(OpDef(
    "transpose", _transpose_shape, _transpose_kernel, arity=1, label_attrs=("axes",),
    grad=lambda c: [c.apply("transpose", c.gout, axes=tuple(
        int(i) for i in np.argsort(_transpose_axes(c.attrs, len(c.inputs[0].shape)))))],
    doc="Permute the axes (reverse them when axes is None).",
    attr_schema={"axes": Ints(default=None, low=0, nullable=True)},
))


def _concat_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    if not shapes:
        fail("concat needs at least one input")
    first = shapes[0]
    axis = attrs.get("axis", 1)
    if not -len(first) <= axis < len(first):
        fail(f"axis {axis} is out of range for {len(first)}-d inputs")
    axis %= len(first)
    total = 0
    for s in shapes:
        if len(s) != len(first) or any(
                i != axis and a is not None and b is not None and a != b for i, (a, b) in enumerate(zip(s, first))):
            fail(f"inputs {', '.join(map(str, shapes))} differ outside the concatenation axis {axis}",
                 "make every other dimension equal")
        if s[axis] is None:
            fail(f"cannot concatenate along axis {axis}, whose size is unknown")
        total += s[axis]
    return tuple(total if i == axis else d for i, d in enumerate(first))


def _concat_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = attrs.get("axis", 1) % len(out_shape)

    def concat(*args: np.ndarray) -> None:
        np.concatenate(args[:-1], axis=axis, out=args[-1])

    return concat


def _concat_grad(c: GradContext) -> list:
    axis = c.attrs.get("axis", 1) % len(c.out.shape)
    grads, start = [], 0
    for x in c.inputs:
        stop = start + x.shape[axis]
        index = ((SLICE, None, None, 1),) * axis + ((SLICE, start, stop, 1),)
        grads.append(c.apply("slice", c.gout, index=index))
        start = stop
    return grads


register(OpDef("concat", _concat_shape, _concat_kernel, grad=_concat_grad, label_attrs=("axis",),
               doc="Join the inputs along axis.", attr_schema={"axis": Int(1)}))
