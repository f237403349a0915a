"""The functional API of the structural ops, with NumPy and PyTorch names and argument orders.

stack, squeeze, expand_dims/unsqueeze, flip, roll, repeat, tile, broadcast_to, pad, tril, triu, einsum,
gather, scatter, scatter_add, take_along_axis, one_hot and interpolate. Functions that NumPy defines on the flattened
array when ``axis`` is None (roll, repeat, take_along_axis) flatten first, as NumPy does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from graphdl.errors import GraphError, choice
from graphdl.ops import contract
from graphdl.ops.api import _apply, _int, _node, _seq, _tensor
from graphdl.tensor import Tensor


def _flat(x: Tensor) -> Tensor:
    return _apply("reshape", x, shape=(-1,))


def _axes(axis: int | Sequence[int]) -> tuple[int, ...]:
    """One axis or several as a tuple; the op's attribute schema checks the entries."""
    return tuple(axis) if isinstance(axis, list | tuple) else (axis,)  # type: ignore[return-value]


def expand_dims(x: Tensor, axis: int | Sequence[int]) -> Tensor:
    """Insert axes of size 1 so that they sit at positions ``axis`` of the result (NumPy expand_dims)."""
    return _apply("expand_dims", x, axis=_axes(axis))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert an axis of size 1 at ``dim`` (torch.unsqueeze)."""
    return expand_dims(x, dim)


def squeeze(x: Tensor, axis: int | Sequence[int] | None = None) -> Tensor:
    """Remove axes of size 1: those in ``axis`` (each must have size 1), or all of them."""
    return _apply("squeeze", x, axis=None if axis is None else _axes(axis))


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis ``axis`` (NumPy stack, torch.stack)."""
    tensors = [_node(t, "stack: each of tensors") for t in (tensors if isinstance(tensors, list | tuple) else
                                                            [tensors])]
    if not tensors:
        raise GraphError("stack needs at least one tensor")
    axis = _int(axis, "stack: axis")
    nd = len(tensors[0].shape) + 1
    if not -nd <= axis < nd:
        raise GraphError(f"stack: axis {axis} is out of range for {nd - 1}-d inputs")
    return _apply("concat", *(expand_dims(t, axis) for t in tensors), axis=axis % nd)


def flip(x: Tensor, axis: int | Sequence[int] | None = None) -> Tensor:
    """Reverse the order of elements along ``axis`` (all axes when None)."""
    return _apply("flip", x, axis=None if axis is None else _axes(axis))


def roll(x: Tensor, shift: int | Sequence[int], axis: int | Sequence[int] | None = None) -> Tensor:
    """Shift elements by ``shift`` along ``axis``, wrapping around; None rolls the flattened array."""
    if axis is None:
        if not isinstance(shift, int):
            raise GraphError("roll: give one int shift when axis is None")
        if None in x.shape:
            raise GraphError(f"roll with axis=None needs a fully known shape, got {x.shape}")
        return _apply("reshape", _apply("roll", _flat(x), shift=shift, axis=0), shape=x.shape)
    return _apply("roll", x, shift=shift if isinstance(shift, int) else tuple(shift),
                  axis=axis if isinstance(axis, int) else tuple(axis))


def repeat(x: Tensor, repeats: int | Sequence[int], axis: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times along ``axis`` (NumPy repeat, which is
    torch.repeat_interleave, not torch's Tensor.repeat: that is ``tile``); None repeats the flattened array."""
    if axis is None:
        x, axis = _flat(x), 0
    return _apply("repeat", x, repeats=_seq(repeats), axis=axis)


def tile(x: Tensor, reps: int | Sequence[int]) -> Tensor:
    """Repeat the whole tensor ``reps`` times per axis (NumPy tile; torch's Tensor.repeat for len(reps) >= ndim)."""
    return _apply("tile", x, reps=_axes(reps))


def broadcast_to(x: Tensor, shape: Sequence[int | None]) -> Tensor:
    """x repeated along its size-1 axes (and new leading axes) to ``shape``; None keeps the input's size."""
    return _apply("broadcast_to", x, shape=_seq(shape))


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad as torch.nn.functional.pad: ``pad`` is (left, right) of the last axis, then of the one before, ...;
    mode is constant (filled with ``value``), reflect, replicate or circular."""
    return _apply("pad", x, pad=_seq(pad), mode=mode, value=value)


def tril(x: Tensor, k: int = 0) -> Tensor:
    """Zero the entries above the k-th diagonal of the last two axes."""
    return _apply("tril", x, k=k)


def triu(x: Tensor, k: int = 0) -> Tensor:
    """Zero the entries below the k-th diagonal of the last two axes."""
    return _apply("triu", x, k=k)


def einsum(equation: str, *operands: Tensor) -> Tensor:
    """Sum of products over named axes, NumPy/torch syntax (``...`` and implicit outputs included;
    a letter repeated within one operand, a diagonal, is not supported)."""
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise GraphError(f"einsum: the equation must be a string like 'ij,jk->ik', got {equation!r:.40}")
    operands = tuple(_node(t, "einsum: each operand") for t in operands)
    try:
        eq = contract.normalize(equation, [len(t.shape) for t in operands])
    except ValueError as e:
        raise GraphError(f"einsum: {e}") from None
    return _apply("einsum", *operands, equation=eq)


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """torch.gather: ``out[i][j] = x[index[i][j]][j]`` for dim 0; index has x's number of axes."""
    return _apply("gather", x, index, axis=dim)


def scatter(x: Tensor, dim: int, index: Tensor, src: Tensor | float) -> Tensor:
    """torch.scatter: a copy of x with src (a tensor of index's shape, or a number) written at index along dim."""
    if isinstance(src, Tensor):
        return _apply("scatter", x, index, src, axis=dim)
    return _apply("scatter", x, index, axis=dim, value=src)


def scatter_add(x: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """torch.scatter_add: a copy of x with src (index's shape) added at index along dim; repeats add up."""
    return _apply("scatter_add", x, index, src, axis=dim)


def take_along_axis(arr: Tensor, indices: Tensor, axis: int | None) -> Tensor:
    """NumPy take_along_axis: indices broadcast against arr off ``axis``; negative indices count from the end."""
    arr, indices = _node(arr, "take_along_axis: arr"), _node(indices, "take_along_axis: indices")
    if axis is None:
        arr, indices, axis = _flat(arr), _flat(indices), 0
    axis = _int(axis, "take_along_axis: axis")
    if len(arr.shape) != len(indices.shape):
        raise GraphError(f"take_along_axis: indices {indices.shape} must have as many axes as arr {arr.shape}")
    nd = len(arr.shape)
    axis %= max(nd, 1)
    a_shape = [d for k, d in enumerate(arr.shape) if k != axis]
    i_shape = [d for k, d in enumerate(indices.shape) if k != axis]
    if a_shape != i_shape:
        both = [a if i == 1 else i for a, i in zip(a_shape, i_shape)]
        arr = broadcast_to(arr, [*both[:axis], arr.shape[axis], *both[axis:]])
        indices = broadcast_to(indices, [*both[:axis], indices.shape[axis], *both[axis:]])
    return _apply("gather", arr, indices, axis=axis, wrap=True)


def one_hot(ids: Tensor, num_classes: int, dtype: str | None = None) -> Tensor:
    """1 at each class id along a new last axis of size num_classes (torch one_hot, but num_classes is
    required and the result has the graph's float dtype unless ``dtype`` is given)."""
    return _apply("one_hot", ids, num_classes=num_classes, dtype=_tensor(ids).graph.dtype if dtype is None else dtype)




def interpolate(x: Tensor, size: int | Sequence[int] | None = None, scale_factor: float | Sequence[float] | None = None,
                mode: str = "nearest", align_corners: bool | None = None) -> Tensor:
    """Resample NCHW ``x`` to ``size`` or by ``scale_factor`` (output floor(in * s), the factor setting
    the coordinate mapping), as PyTorch's ``F.interpolate`` with mode nearest, nearest-exact or bilinear."""
    return _apply("resize2d", x, **resize_attrs(x, size, scale_factor, mode, align_corners))


def resize_attrs(x: Tensor, size: int | Sequence[int] | None, scale_factor: float | Sequence[float] | None,
                 mode: str, align_corners: bool | None) -> dict:
    """The attributes of the resize2d node ``interpolate`` (or ``layers.Upsample``) adds."""
    x = _node(x, "interpolate: x")
    mode = choice(mode, "interpolate: mode", ("nearest", "nearest-exact", "bilinear"))
    if (size is None) == (scale_factor is None):
        raise GraphError("interpolate takes either size or scale_factor (exactly one)")
    if align_corners is not None and mode != "bilinear":
        raise GraphError(f"interpolate: align_corners only applies to mode 'bilinear', not {mode!r}; leave it None")
    if x.ndim != 4 or None in x.shape[2:]:
        raise GraphError(f"interpolate resamples (N, C, H, W) input with known H and W, got '{x.name}' {x.shape}")
    attrs: dict = {"mode": mode, "align_corners": bool(align_corners)}
    if scale_factor is not None:
        pair = tuple(scale_factor) if isinstance(scale_factor, list | tuple) else (scale_factor,) * 2
        if len(pair) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in pair):
            raise GraphError(f"interpolate: scale_factor must be a number > 0 or two, got {scale_factor!r}")
        attrs["size"] = tuple(math.floor(n * float(v)) for n, v in zip(x.shape[2:], pair))
        if min(attrs["size"]) < 1:
            raise GraphError(f"interpolate: scale_factor {scale_factor!r} makes '{x.name}' {x.shape} empty")
        attrs["scale_h"], attrs["scale_w"] = (float(v) for v in pair)
    else:
        pair = tuple(size) if isinstance(size, list | tuple) else (size, size)
        attrs["size"] = tuple(_int(v, "interpolate: size") for v in pair)
    return attrs


__all__ = ["broadcast_to", "einsum", "expand_dims", "flip", "gather", "interpolate", "one_hot", "pad", "repeat",
           "roll", "scatter", "scatter_add", "squeeze", "stack", "take_along_axis", "tile", "tril", "triu",
           "unsqueeze"]
