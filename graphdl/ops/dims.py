"""Ops that add, drop or broadcast axes, or mask a triangle: expand_dims, squeeze, broadcast_to, tril,
triu, one_hot. Each moves or masks values without arithmetic, so its gradient is its adjoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.attrs import DTYPES, REQUIRED, Axes, Int, Ints, Str
from graphdl.ops.common import check_index_range, label_hint, norm_axes
from graphdl.registry import OpDef, RuleError, fail, register


def _copy_reshaped(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def copy(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x.reshape(out.shape))

    return copy


def _expand_axes(attrs: dict[str, Any], ndim: int) -> tuple[int, ...]:
    out_ndim = ndim + len(attrs["axis"])
    return norm_axes(attrs["axis"], out_ndim)


def _expand_dims_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    axes = _expand_axes(attrs, len(x))
    rest = iter(x)
    return tuple(1 if i in axes else next(rest) for i in range(len(x) + len(axes)))


def _squeeze_axes(x: tuple, attrs: dict[str, Any]) -> tuple[int, ...]:
    if attrs.get("axis") is None:
        return tuple(i for i, d in enumerate(x) if d == 1)
    axes = norm_axes(attrs["axis"], len(x))
    for a in axes:
        if x[a] != 1:
            fail(f"cannot squeeze axis {a} of {x}: its size is {'unknown' if x[a] is None else x[a]}, not 1",
                 "squeeze only axes of size 1")
    return axes


def _squeeze_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    axes = _squeeze_axes(x, attrs)
    return tuple(d for i, d in enumerate(x) if i not in axes)


register(OpDef(
    "expand_dims", _expand_dims_shape, _copy_reshaped, arity=1, inplace=(0,), label_attrs=("axis",),
    grad=lambda c: [c.apply("squeeze", c.gout, axis=_expand_axes(c.attrs, len(c.inputs[0].shape)))],
    doc="Insert axes of size 1 at the positions `axis` of the output (NumPy expand_dims, torch unsqueeze).",
    attr_schema={"axis": Axes(REQUIRED, nullable=False)},
))
register(OpDef(
    "squeeze", _squeeze_shape, _copy_reshaped, arity=1, inplace=(0,), label_attrs=("axis",),
    grad=lambda c: [c.apply("expand_dims", c.gout, axis=_squeeze_axes(c.inputs[0].shape, c.attrs))],
    doc="Remove axes of size 1: those in `axis`, or all of them when axis is None (NumPy squeeze).",
    attr_schema={"axis": Axes()},
))


def _broadcast_to_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,), target = shapes, tuple(attrs["shape"])
    if len(target) < len(x):
        fail(f"cannot broadcast {x} to {target}, which has fewer axes")
    lead = len(target) - len(x)
    out = list(target[:lead])
    for d, t in zip(x, target[lead:]):
        if t is None:  # unknown in the target: the input's (batch) size
            out.append(d)
        elif d is not None and d not in (1, t):
            fail(f"cannot broadcast {x} to {target}: size {d} is neither 1 nor {t}",
                 "make the sizes equal, or 1 where the value should repeat")
        else:
            out.append(t)
    if any(d is None for d in out[:lead]):
        fail(f"new leading axes of {target} must have known sizes")
    return tuple(out)


def _broadcast_to_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def broadcast_to(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x)

    return broadcast_to


register(OpDef(
    "broadcast_to", _broadcast_to_shape, _broadcast_to_kernel, arity=1, label_attrs=("shape",),
    grad=lambda c: [c.apply("sum_to", c.gout, shape=c.inputs[0].shape)],
    doc="x repeated along axes of size 1 (and new leading axes) to `shape` (NumPy broadcast_to); "
        "None in shape keeps the input's size.", attr_schema={"shape": Ints(low=0, unknown=True)},
))


def _tri_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    if len(x) < 2:
        fail(f"needs an input of at least 2 dimensions (the last two form the matrix), got {x}")
    return x


def _tri_kernel(lower: bool):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        n, m = out_shape[-2:]
        k = int(attrs.get("k", 0))
        drop = ~np.tri(n, m, k, dtype=bool) if lower else np.tri(n, m, k - 1, dtype=bool)
        zero = np.zeros((), dtype=dtype)

        def tri(x: np.ndarray, out: np.ndarray) -> None:  # alias-safe: out may be x
            np.copyto(out, x)
            np.copyto(out, zero, where=drop)

        return tri

    return factory


for _name, _lower, _doc in (("tril", True, "on and below"), ("triu", False, "on and above")):
    register(OpDef(
        _name, _tri_shape, _tri_kernel(_lower), arity=1, inplace=(0,), label_attrs=("k",),
        grad=lambda c, _n=_name: [c.apply(_n, c.gout, k=c.attrs.get("k", 0))],
        doc=f"The entries {_doc} the k-th diagonal of the last two axes, zeros elsewhere (NumPy/torch {_name}).",
        attr_schema={"k": Int(0)},
    ))


def _one_hot_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (ids,) = shapes
    if int(attrs["num_classes"]) < 0:
        fail(f"num_classes must be >= 0, got {attrs['num_classes']}")
    return (*ids, int(attrs["num_classes"]))


def _one_hot_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    if not np.issubdtype(np.dtype(dtypes[0]), np.integer):
        raise RuleError(f"one_hot needs integer class ids, got {dtypes[0]}", "feed int64 ids", kind="dtype")
    return str(np.dtype(attrs["dtype"]))


def _one_hot_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    k = out_shape[-1]
    classes = np.arange(k)

    hint = label_hint(k)

    def one_hot(ids: np.ndarray, out: np.ndarray) -> None:
        check_index_range(ids, k, 0, "class id", hint)
        np.equal(ids[..., None], classes, out=out, casting="unsafe")

    return one_hot


register(OpDef(
    "one_hot", _one_hot_shape, _one_hot_kernel, arity=1, dtype=_one_hot_dtype, nondiff=(0,),
    label_attrs=("num_classes",),
    doc="1 at the position of each class id along a new last axis of size num_classes, 0 elsewhere "
        "(torch one_hot; the dtype attribute picks the output dtype).",
    attr_schema={"num_classes": Int(low=0), "dtype": Str(*DTYPES)},
))
