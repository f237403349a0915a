"""2-d average pooling over NCHW images: padding counts as zeros (PyTorch's ``count_include_pad=True``)
unless ``count_include_pad`` is False; ``ceil_mode``'s extra padding is never counted (see ``pool``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ops.pool import (
    LABEL,
    POOL_ATTRS,
    _bind,
    _ceil,
    _declare,
    _effective,
    _like_shape,
    _padded_part,
    _pool_shape,
    _rule,
    _Scatter,
)
from graphdl.ops.window import Padded, geometry, offset_slices
from graphdl.registry import GradContext, OpDef, register


def _divisor(attrs: dict[str, Any], x: tuple, hw: tuple, dtype: np.dtype) -> np.ndarray | float:
    """1 / the number of counted positions per window: the window size, unless count_include_pad is False
    (real inputs only) or ceil_mode added padding (not counted)."""
    eff = _effective(attrs, x)
    kernel, _, _, (pt, pb, pl, pr) = geometry(eff)
    user = geometry(attrs)[3]
    if attrs.get("count_include_pad", True) and eff["padding"] == tuple(user):
        return 1.0 / math.prod(kernel)
    h, w = x[2], x[3]
    counted = np.zeros((1, 1, h + pt + pb, w + pl + pr), dtype=dtype)
    if attrs.get("count_include_pad", True):
        counted[:, :, :h + user[0] + user[1], :w + user[2] + user[3]] = 1
    else:
        counted[:, :, pt:pt + h, pl:pl + w] = 1
    total = sum(counted[index] for _, _, index in offset_slices(eff, hw))
    return 1.0 / np.maximum(total, 1)



def _avg_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                workspace: list[np.ndarray] | None = None):
    scale = _divisor(attrs, in_shapes[0], out_shape[2:], dtype)
    attrs = _effective(attrs, in_shapes[0])
    ws = _bind(workspace, _avg_decl(attrs, in_shapes, out_shape, dtype))
    padded = Padded(in_shapes[0], geometry(attrs)[3], ws.get("xp"))
    offsets = offset_slices(attrs, out_shape[2:])

    def avg_pool2d(x: np.ndarray, out: np.ndarray) -> None:
        xp = padded.load(x)
        np.copyto(out, xp[offsets[0][2]])
        for _, _, index in offsets[1:]:
            np.add(out, xp[index], out=out)
        np.multiply(out, scale, out=out)

    return avg_pool2d


def _avg_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    return _declare(_padded_part("xp", in_shapes[0], attrs, dtype))


def _avg_grad_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    g_shape, x_shape = in_shapes
    return _declare(("part", g_shape, dtype), _padded_part("dxp", x_shape, attrs, dtype))


def _avg_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                     workspace: list[np.ndarray] | None = None):
    g_shape, x_shape = in_shapes
    scale = _divisor(attrs, x_shape, g_shape[2:], dtype)
    attrs = _effective(attrs, x_shape)
    ws = _bind(workspace, _avg_grad_decl(attrs, in_shapes, out_shape, dtype))
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), ws.get("dxp"))
    part = ws["part"]

    def avg_pool2d_grad(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        np.multiply(g, scale, out=part)
        dst = scatter.target(out)
        for _, _, index in scatter.offsets:
            view = dst[index]
            np.add(view, part, out=view)
        scatter.finish(out)

    return avg_pool2d_grad


def _avg_grad(c: GradContext) -> list:
    return [c.apply("avg_pool2d_grad", c.gout, c.inputs[0], **c.attrs)]


register(OpDef("avg_pool2d", _pool_shape, _avg_kernel, arity=1, label_attrs=LABEL, grad=_avg_grad,
               workspace=_rule(_ceil(_avg_decl, 0)),
               doc="Mean of each window; padded positions count as zeros (unless count_include_pad is False).",
               attr_schema=POOL_ATTRS))
register(OpDef("avg_pool2d_grad", _like_shape, _avg_grad_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               workspace=_rule(_ceil(_avg_grad_decl, 1)),
               grad=lambda c: [c.apply("avg_pool2d", c.gout, **c.attrs), None],
               doc="Gradient of avg_pool2d: g / window size spread over each window (linear in g).",
               attr_schema=POOL_ATTRS))
