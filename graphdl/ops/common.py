"""Helpers shared by op families: symbolic broadcasting, axis normalisation, kernel factories."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphdl.ir import Shape
from graphdl.registry import InputValueError, fail


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting over symbolic shapes (``None`` = unknown batch dimension)."""
    arrays = [s for s in shapes if s]
    if not arrays:
        return ()
    if all(s == arrays[0] for s in arrays):  # the common case: equal shapes and scalars broadcast to it
        return tuple(arrays[0])
    ndim = max(len(s) for s in shapes)
    out: list[int | None] = []
    for i in range(ndim):
        dims = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            fail(
                f"shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast "
                f"(axis {i - ndim}: {' vs '.join(str(d) for d in dims)})",
                "make the sizes equal, or 1 where the value should repeat",
            )
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def norm_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """Non-negative sorted axes; ``None`` means all."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            fail(f"axis {a} is out of range for a {ndim}-d input")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        fail(f"axis {axis} repeats an axis")
    return tuple(sorted(out))


def reduced_shape(shape: Shape, axis: Any, keepdims: bool) -> Shape:
    axes = norm_axes(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def agree(a: Shape, b: Shape) -> bool:
    """Whether two shapes can be the same at run time: same rank, equal where both are known (an unknown
    batch dimension agrees with any size)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def same_shape(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> Shape:
    """Shape rule of unary elementwise ops."""
    return shapes[0]


def broadcast_rule(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> Shape:
    """Shape rule of n-ary elementwise ops."""
    return broadcast(*shapes)


def ufunc_kernel(ufunc: np.ufunc) -> Callable[..., Callable[..., None]]:
    """Kernel factory for a ufunc: the kernel is the ufunc itself, called as ``ufunc(*ins, out)``."""

    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> Callable[..., None]:
        return ufunc

    return factory


#: The unsigned type of each integer width: viewed as unsigned, a negative index is a huge one.
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def check_index_range(a: np.ndarray, k: int, index: int, what: str, hint: str) -> None:
    """Raise InputValueError unless every entry of the integer array ``a`` (input ``index``) is in [0, k).

    One reduction over ``a`` viewed as unsigned (negatives become huge), no array allocated; the first
    offending entry is looked up only when there is one.
    """
    if a.size and a.view(_UNSIGNED[a.dtype.itemsize]).max() >= k:
        pos = np.unravel_index(int(np.flatnonzero((a < 0) | (a >= k))[0]), a.shape)
        bad = int(a[pos])
        at = pos[0] if len(pos) == 1 else pos
        raise InputValueError(index, f"holds {what} {bad} at index {at}, outside [0, {k})", hint)


def label_hint(k: int) -> str:
    """What to do about a class label outside [0, k)."""
    return (f"Labels are class ids 0..{k - 1}: check how the labels are encoded, or give the last layer "
            f"as many outputs as there are classes")
