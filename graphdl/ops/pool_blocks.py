"""Max pooling over blocked images: the compiler's ``pool_blocks`` layout (``passes.layout``).

A convolution whose output only a tiling max pooling reads (kernel == stride == (bh, bw), no padding)
can write its output as (C, N, bh, bw, H/bh, W/bw) — value ``[c, n, i, j, y, x]`` is the convolution's
pixel (y*bh + i, x*bw + j) — at the cost of a strided im2col of its input (``conv2d``'s ``pool_blocks``).
Each window offset (i, j) is then a plane with H/bh*W/bw-long contiguous rows, so the pooling below
runs on contiguous runs instead of copying every offset out of the image with stride bw (the benchmark
CNN's first pooling, 32x64x28x28, one thread: forward 0.80 -> 0.50 ms, gradient 0.82-0.93 -> 0.45-0.53
ms); the layout pass uses it where the image before the convolution is the smaller of the two (few input
channels, as in a first layer), so that the strided im2col costs less than it saves.

``max_pool_blocks`` gives the same values and indices as ``max_pool2d`` (the index of each window's first
maximum in kernel scan order, i*bw + j; the index moves only on a strictly larger value). Its gradient
``max_pool_blocks_grad`` routes g to that offset; ``max_pool_blocks_pick`` (its transpose) reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import Ints
from graphdl.ops.common import agree
from graphdl.registry import GradContext, OpDef, fail, register, scratch


def index_dtype(attrs: dict[str, Any]) -> type:
    return np.uint8 if math.prod(attrs["blocks"]) < 256 else np.int64


#: The window (bh, bw): the blocked image's axes 2 and 3.
BLOCKS = {"blocks": Ints(2, low=1)}


def _pooled(x: tuple) -> tuple:
    return (x[0], x[1], x[4], x[5])


def window_offsets(bh: int, bw: int) -> list[tuple[int, int]]:
    """Window offsets in kernel scan order."""
    return [(i, j) for i in range(bh) for j in range(bw)]


def _splits(pooled: tuple) -> bool:
    """Whether a kernel over this (C, N, H/bh, W/bw) pooled shape cuts axis 0 for threads."""
    return pooled[0] > 1 and threads.splits(math.prod(pooled))


def _split(part: Callable[[slice], None], pooled: tuple) -> None:
    """``part`` on all of axis 0, or on slices of it in threads for large outputs (each (c, n) plane is
    independent of the others)."""
    if _splits(pooled):
        threads.split_over_threads(part, pooled[0])
    else:
        part(slice(None))


def _check_blocked(x: tuple, attrs: dict[str, Any]) -> None:
    if len(x) != 6 or tuple(x[2:4]) != tuple(attrs["blocks"]):
        fail(f"a blocked image of {tuple(attrs['blocks'])} windows is 6-d (C, N, {attrs['blocks'][0]}, "
             f"{attrs['blocks'][1]}, H/bh, W/bw), got {x}")


def _max_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    _check_blocked(x, attrs)
    return _pooled(x), _pooled(x)


def _max_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: Any) -> list[tuple]:
    pooled = _pooled(in_shapes[0])
    return [(pooled, np.bool_), (pooled, index_dtype(attrs))]


def pool_planes(x: np.ndarray, best: np.ndarray, index: np.ndarray, mask: np.ndarray, step: np.ndarray,
                offsets: list[tuple[int, int]]) -> None:
    """Max pooling of the blocked image ``x`` (C, n, bh, bw, H/bh, W/bw) into ``best`` and ``index`` (C, n,
    H/bh, W/bw; views of larger arrays are fine), ``mask`` (bool) and ``step`` (index dtype) of that shape
    as scratch: one pass per window offset over a plane of H/bh*W/bw-long contiguous rows."""
    mask8 = mask.view(np.uint8)  # the bools as 0/1 bytes: no casting pass
    np.copyto(best, x[:, :, 0, 0])
    index.fill(0)
    for k, (i, j) in enumerate(offsets[1:], start=1):
        plane = x[:, :, i, j]
        np.greater(plane, best, out=mask)
        np.maximum(best, plane, out=best)
        np.multiply(mask8, step.dtype.type(k), out=step)  # k typed: int64 past 255
        np.maximum(index, step, out=index)


def _max_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple,
                workspace: list[np.ndarray] | None = None):
    mask_buf, step_buf = scratch(workspace, _max_workspace(attrs, in_shapes, out_shapes, dtypes))
    offsets = window_offsets(*attrs["blocks"])

    def max_pool_blocks(x: np.ndarray, out: np.ndarray, idx: np.ndarray) -> None:
        _split(lambda s: pool_planes(x[s], out[s], idx[s], mask_buf[s], step_buf[s], offsets), out.shape)

    return threads.splitting(max_pool_blocks, _splits(out_shapes[0]))


def _grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, idx = shapes
    if len(g) != 4 or not agree(idx, g):
        fail(f"gradient {g} and indices {idx} must be one 4-d (C, N, H/bh, W/bw) shape")
    bh, bw = attrs["blocks"]
    return (g[0], g[1], bh, bw, g[2], g[3])


def _check_index(dtypes: tuple, attrs: dict[str, Any]) -> str:
    if not np.issubdtype(np.dtype(dtypes[1]), np.integer):
        fail(f"indices must be integers, got {dtypes[1]}")
    return dtypes[0]


def _grad_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    return [(in_shapes[0], np.bool_), (in_shapes[0], dtype)]


def _grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                 workspace: list[np.ndarray] | None = None):
    mask_buf, fmask_buf = scratch(workspace, _grad_workspace(attrs, in_shapes, out_shape, dtype))
    offsets = window_offsets(*attrs["blocks"])

    def max_pool_blocks_grad(g: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
        def part(s: slice) -> None:
            gs, index, mask, fmask = g[s], idx[s], mask_buf[s], fmask_buf[s]
            for k, (i, j) in enumerate(offsets):
                np.equal(index, k, out=mask)
                np.copyto(fmask, mask)  # a float mask: multiplying by bools casts through a new buffer
                np.multiply(gs, fmask, out=out[s, :, i, j])

        _split(part, g.shape)

    return threads.splitting(max_pool_blocks_grad, _splits(in_shapes[0]))


def _pick_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    h, idx = shapes
    _check_blocked(h, attrs)
    if not agree(idx, _pooled(h)):
        fail(f"indices {idx} do not match the pooled shape {_pooled(h)} of {h}")
    return _pooled(h)


def _pick_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                 workspace: list[np.ndarray] | None = None):
    (mask,) = scratch(workspace, [(out_shape, np.bool_)])
    offsets = window_offsets(*attrs["blocks"])

    def max_pool_blocks_pick(h: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
        for k, (i, j) in enumerate(offsets):
            np.equal(idx, k, out=mask)
            np.copyto(out, h[:, :, i, j], where=mask)

    return max_pool_blocks_pick


def _max_grad(c: GradContext) -> list:
    if c.gout is None:  # only the indices are read: they are no function of x
        return [None]
    return [c.apply("max_pool_blocks_grad", c.gout, c.outs[1], **c.attrs)]


register(OpDef("max_pool_blocks", _max_shape, _max_kernel, arity=1, multi_output=True,
               dtype=lambda d, a: (d[0], np.dtype(index_dtype(a)).name), workspace=_max_workspace, grad=_max_grad,
               label_attrs=("blocks",),
               doc="Largest value of each (bh, bw) window of a blocked (C, N, bh, bw, H/bh, W/bw) image, and the "
                   "index of its first maximum in kernel scan order (as max_pool2d).",
               attr_schema=BLOCKS))
# max_pool_blocks_grad is linear in g and max_pool_blocks_pick is its transpose, so each is the other's gradient.
register(OpDef("max_pool_blocks_grad", _grad_shape, _grad_kernel, arity=2, nondiff=(1,), dtype=_check_index,
               workspace=_grad_workspace, label_attrs=("blocks",), routes=(0, 2),
               grad=lambda c: [c.apply("max_pool_blocks_pick", c.gout, c.inputs[1], **c.attrs), None],
               doc="Gradient of max_pool_blocks: g routed to the saved index of each window (a blocked image).",
               attr_schema=BLOCKS))
register(OpDef("max_pool_blocks_pick", _pick_shape, _pick_kernel, arity=2, nondiff=(1,), dtype=_check_index,
               workspace=lambda attrs, in_shapes, out_shape, dtype: [(out_shape, np.bool_)],
               label_attrs=("blocks",),
               grad=lambda c: [c.apply("max_pool_blocks_grad", c.gout, c.inputs[1], **c.attrs), None],
               doc="h (a blocked image) read at the saved index of each window.", attr_schema=BLOCKS))
