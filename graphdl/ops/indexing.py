"""Indexing: basic slicing (``slice``, one op for any mix of slices, integers and new axes) and
integer-array indexing along an axis (``index``), each with its scatter-into-zeros gradient.

``slice`` keeps its index in the attribute ``index``: one entry per input axis (missing trailing
entries mean ``:``), each ``("slice", start, stop, step)``, ``("int", k)`` or ``("new",)`` for a new
axis of size 1. Negative starts, stops and integers count from the end, as in NumPy; on a dimension
of unknown size they are resolved (and bounds checked) when the plan's shapes are known.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import ABSENT, AttrSpec, Int
from graphdl.registry import OpDef, RuleError, fail, register

SLICE, INT, NEW = "slice", "int", "new"

Entry = tuple[Any, ...]


#: Either ``index`` (entries, see index_entries) or a plain slice along one axis (axis, start, stop).
SLICE_ATTRS = {"index": AttrSpec("entries", ABSENT), "axis": Int(ABSENT, low=0), "start": Int(ABSENT, nullable=True),
               "stop": Int(ABSENT, nullable=True)}


INDEX_ATTRS = {"axis": Int(0), "span": Int(1, low=0)}


def index_entries(attrs: dict[str, Any]) -> tuple[Entry, ...]:
    """The index of a slice node; also reads the older one-axis form (axis, start, stop)."""
    if "index" in attrs:
        return tuple(tuple(e) for e in attrs["index"])
    return ((SLICE, None, None, 1),) * attrs["axis"] + ((SLICE, attrs["start"], attrs["stop"], 1),)


def numpy_index(entries: tuple[Entry, ...]) -> tuple:
    """The NumPy index tuple of the entries."""
    out: list[Any] = []
    for e in entries:
        if e[0] == SLICE:
            out.append(slice(e[1], e[2], e[3]))
        elif e[0] == INT:
            out.append(int(e[1]))
        else:
            out.append(None)
    return tuple(out)


def _slice_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    entries = index_entries(attrs)
    consumed = sum(1 for e in entries if e[0] != NEW)
    if consumed > len(x):
        fail(f"index {numpy_index(entries)} has {consumed} entries for a {len(x)}-d input")
    out: list[int | None] = []
    axis = 0
    for e in entries:
        if e[0] == NEW:
            out.append(1)
            continue
        d = x[axis]
        if e[0] == SLICE:
            if e[3] == 0:
                fail("slice step cannot be zero")
            out.append(None if d is None else len(range(*slice(e[1], e[2], e[3]).indices(d))))
        elif e[0] == INT:
            if d is not None and not -d <= e[1] < d:
                fail(f"index {e[1]} is out of range for axis {axis} of size {d}")
        else:
            fail(f"unknown index entry {e}")
        axis += 1
    return (*out, *x[axis:])


def _slice_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    index = numpy_index(index_entries(attrs))

    def slice_(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x[index])

    return slice_


def _unslice_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    index = numpy_index(index_entries(attrs))

    def unslice(g: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        out.fill(0)
        out[index] = g

    return unslice


def _unslice_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    expected = _slice_shape((x,), attrs)
    if len(expected) != len(g) or any(a is not None and b is not None and a != b for a, b in zip(expected, g)):
        fail(f"gradient of shape {g} does not fit the slice of {x} ({expected})")
    return x


register(OpDef(
    "slice", _slice_shape, _slice_kernel, arity=1, label_attrs=("index",),
    grad=lambda c: [c.apply("unslice", c.gout, c.inputs[0], **c.attrs)],
    doc="Basic NumPy indexing x[...] with slices (any step, negative bounds), integers and new axes.",
    attr_schema=SLICE_ATTRS,
))
register(OpDef(
    "unslice", _unslice_shape, _unslice_kernel, arity=2, nondiff=(1,), shape_only=(1,), label_attrs=("index",),
    grad=lambda c: [c.apply("slice", c.gout, **c.attrs), None],
    doc="Zeros of like's shape with g written at the slice's index (the gradient of slice).", attr_schema=SLICE_ATTRS,
))


# -- integer-array indexing ---------------------------------------------------------------------------
def _index_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    if np.dtype(dtypes[1]).kind not in "iu":
        raise RuleError(f"indices must be integers, got {dtypes[1]}",
                        "index with an integer tensor or array (a boolean mask must be a NumPy array)",
                        kind="dtype")
    return dtypes[0]


def _index_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, idx = shapes[0], shapes[1]
    axis, span = attrs.get("axis", 0), attrs.get("span", 1)
    if not 0 <= axis <= len(x) - span:
        fail(f"axis {axis} (spanning {span}) is out of range for a {len(x)}-d input")
    if span > 1 and None in x[axis:axis + span]:
        fail(f"indexing {span} axes at once (a boolean mask) needs their sizes known, got {x}")
    return (*x[:axis], *idx, *x[axis + span:])


def _merged(shape: tuple, axis: int, span: int) -> tuple:
    return (*shape[:axis], math.prod(shape[axis:axis + span]), *shape[axis + span:])


def _index_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis, span = attrs.get("axis", 0), attrs.get("span", 1)
    merged = _merged(in_shapes[0], axis, span)
    size = merged[axis]

    def index(x: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
        if idx.size and (idx.max() >= size or idx.min() < -size):
            raise IndexError(f"an index is out of range for axis {axis} of size {size} "
                             f"(indices from {idx.min()} to {idx.max()})")
        np.take(x.reshape(merged), idx, axis=axis, out=out, mode="wrap")  # in range: checked above

    return index


def _index_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis, span = attrs.get("axis", 0), attrs.get("span", 1)
    merged = _merged(out_shape, axis, span)
    lead = (slice(None),) * axis

    def index_grad(g: np.ndarray, idx: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        out.fill(0)
        np.add.at(out.reshape(merged), (*lead, idx), g)  # repeated indices add up

    return index_grad


register(OpDef(
    "index", _index_shape, _index_kernel, arity=2, nondiff=(1,), dtype=_index_dtype, label_attrs=("axis",),
    grad=lambda c: [c.apply("index_grad", c.gout, c.inputs[1], c.inputs[0], **c.attrs), None],
    doc="numpy.take(x, idx, axis): entries of x picked by an integer array along axis (negative indices "
        "count from the end); span > 1 indexes that many axes flattened (boolean masks).", attr_schema=INDEX_ATTRS,
))
register(OpDef(
    "index_grad", lambda s, a: s[2], _index_grad_kernel, arity=3, nondiff=(1, 2), shape_only=(2,),
    dtype=lambda d, a: d[0], label_attrs=("axis",),
    grad=lambda c: [c.apply("index", c.gout, c.inputs[1], **c.attrs), None, None],
    doc="Zeros of like's shape with g added at the indexed positions (the gradient of index).", attr_schema=INDEX_ATTRS,
))
