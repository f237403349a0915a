"""Reading and writing along one axis at integer positions: gather, scatter and scatter_add (PyTorch's
semantics), and gather's adjoint. Index inputs are integer arrays that never receive a gradient.

For axis ``d``, ``gather(x, index)[i, j, k] = x[i, index[i, j, k], k]`` (d = 1) and ``scatter`` writes
``src[i, j, k]`` to ``out[i, index[i, j, k], k]``. ``index`` has x's number of axes and, off axis d, sizes
at most x's. gather and the scatter-add into zeros (``gather_adjoint``) are each other's gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.attrs import Bool, Float, Int
from graphdl.registry import GradContext, InputValueError, OpDef, RuleError, fail, register

GATHER_ATTRS = {"axis": Int(), "wrap": Bool(False)}


def _axis(attrs: dict[str, Any], ndim: int) -> int:
    a = attrs["axis"]
    if not -ndim <= a < max(ndim, 1):
        fail(f"axis {a} is out of range for a {ndim}-d input")
    return a % max(ndim, 1)


def _check_index(x: tuple, index: tuple, attrs: dict[str, Any], what: str = "x") -> int:
    if len(index) != len(x):
        fail(f"index {index} must have as many axes as {what} {x}")
    axis = _axis(attrs, len(x))
    for d, (n, m) in enumerate(zip(x, index)):
        if d != axis and n is not None and m is not None and m > n:
            fail(f"index {index} is larger than {what} {x} on axis {d}", f"make index at most {what} off axis {axis}")
    return axis


def _index_dtype(position: int):
    def rule(dtypes: tuple, attrs: dict[str, Any]) -> str:
        if not np.issubdtype(np.dtype(dtypes[position]), np.integer):
            raise RuleError(f"the index must be integers, got {dtypes[position]}", "feed int64 indices", kind="dtype")
        values = [d for k, d in enumerate(dtypes) if k != position]
        if len(set(values)) > 1:
            raise RuleError(f"values have dtypes {', '.join(values)}", "make them the same dtype", kind="dtype")
        return values[0]

    return rule


class _Where:
    """Full fancy indices for the positions an index array names along one axis."""

    def __init__(self, index_shape: tuple[int, ...], axis: int, size: int, wrap: bool = False) -> None:
        self.axis, self.size, self.wrap = axis, size, wrap
        nd = len(index_shape)
        self.grid = [np.arange(m).reshape([-1 if k == d else 1 for k in range(nd)]) for d, m in enumerate(index_shape)]

    def __call__(self, index: np.ndarray) -> tuple[np.ndarray, ...]:
        if index.size:
            lo, hi = int(index.min()), int(index.max())
            if hi >= self.size or lo < (-self.size if self.wrap else 0):
                low = -self.size if self.wrap else 0
                raise InputValueError(1, f"holds indices from {lo} to {hi}, out of range [{low}, {self.size}) for "
                                         f"an axis of size {self.size}", "Keep the indices within the axis")
            if self.wrap and lo < 0:
                index = np.where(index < 0, index + self.size, index)
        return tuple(index if d == self.axis else g for d, g in enumerate(self.grid))


def _gather_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, index = shapes
    _check_index(x, index, attrs)
    return index


def _gather_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    x_shape, index_shape = in_shapes
    axis = _axis(attrs, len(x_shape))
    where = _Where(index_shape, axis, x_shape[axis], attrs.get("wrap", False))

    def gather(x: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x[where(index)])

    return gather


register(OpDef(
    "gather", _gather_shape, _gather_kernel, arity=2, nondiff=(1,), dtype=_index_dtype(1), label_attrs=("axis",),
    grad=lambda c: [c.apply("gather_adjoint", c.gout, c.inputs[1], c.inputs[0], **c.attrs), None],
    doc="x read along `axis` at the positions in index (torch.gather; wrap=True also takes negative "
        "positions from the end, as NumPy take_along_axis).", attr_schema=GATHER_ATTRS,
))


def _adjoint_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, index, like = shapes
    _check_index(like, index, attrs)
    if len(g) != len(index) or any(a is not None and b is not None and a != b for a, b in zip(g, index)):
        fail(f"gradient {g} must have the index's shape {index}")
    return like


def _adjoint_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = _axis(attrs, len(out_shape))
    where = _Where(in_shapes[1], axis, out_shape[axis], attrs.get("wrap", False))

    def gather_adjoint(g: np.ndarray, index: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        out.fill(0)
        np.add.at(out, where(index), g)

    return gather_adjoint


def _adjoint_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    return _index_dtype(1)(dtypes[:2], attrs)


register(OpDef(
    "gather_adjoint", _adjoint_shape, _adjoint_kernel, arity=3, nondiff=(1, 2), shape_only=(2,),
    dtype=_adjoint_dtype, label_attrs=("axis",),
    grad=lambda c: [c.apply("gather", c.gout, c.inputs[1], **c.attrs), None, None],
    doc="Zeros of like's shape with g added at the positions index names along `axis` (gather's gradient).",
    attr_schema=GATHER_ATTRS,
))


def _scatter_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, index = shapes[0], shapes[1]
    _check_index(x, index, attrs)
    if len(shapes) == 3 and (len(shapes[2]) != len(index) or any(
            a is not None and b is not None and a != b for a, b in zip(shapes[2], index))):
        fail(f"src {shapes[2]} must have the index's shape {index}", "slice src to the index's shape")
    if len(shapes) == 2 and "value" not in attrs:
        fail("scatter needs a src input or a value attribute")
    return x


def _scatter_kernel(add: bool):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        axis = _axis(attrs, len(out_shape))
        where = _Where(in_shapes[1], axis, out_shape[axis])
        value = np.asarray(attrs.get("value", 0.0), dtype=dtype)

        def scatter(x: np.ndarray, index: np.ndarray, *rest: np.ndarray) -> None:
            out = rest[-1]
            src = rest[0] if len(rest) == 2 else value
            np.copyto(out, x)
            if add:
                np.add.at(out, where(index), src)
            else:
                out[where(index)] = src

        return scatter

    return factory


def _scatter_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    return _index_dtype(1)(dtypes, attrs)


def _scatter_grad(c: GradContext) -> list:
    x_grad = c.apply("scatter", c.gout, c.inputs[1], axis=c.attrs["axis"], value=0.0)
    if len(c.inputs) == 2:
        return [x_grad, None]
    return [x_grad, None, c.apply("gather", c.gout, c.inputs[1], axis=c.attrs["axis"])]


register(OpDef(
    "scatter", _scatter_shape, _scatter_kernel(add=False), nondiff=(1,), dtype=_scatter_dtype,
    label_attrs=("axis",), grad=_scatter_grad,
    doc="A copy of x with src (or the scalar attribute value) written along `axis` at the positions in index "
        "(torch.scatter; where an index repeats, which write wins is unspecified).",
    attr_schema={"axis": Int(), "value": Float(0.0)},
))
register(OpDef(
    "scatter_add", _scatter_shape, _scatter_kernel(add=True), arity=3, nondiff=(1,), dtype=_scatter_dtype,
    label_attrs=("axis",),
    grad=lambda c: [c.gout, None, c.apply("gather", c.gout, c.inputs[1], axis=c.attrs["axis"])],
    doc="A copy of x with src added along `axis` at the positions in index; repeated positions add up "
        "(torch.scatter_add).", attr_schema={"axis": Int()},
))
