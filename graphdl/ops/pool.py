"""2-d pooling over NCHW images: max (gradient to the first maximum, as PyTorch) and average
(padding counts as zeros, PyTorch's ``count_include_pad=True``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ops.window import WINDOW_ATTRS, Padded, check_image, geometry, offset_slices, out_hw
from graphdl.registry import GradContext, OpDef, fail, register

LABEL = ("kernel", "stride", "padding")


def _pool_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    check_image(x, "pooling")
    (kh, kw), _, (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    if max(pt, pb) * 2 > dh * (kh - 1) + 1 or max(pl, pr) * 2 > dw * (kw - 1) + 1:
        fail(f"padding {(pt, pb, pl, pr)} is more than half the {kh}x{kw} kernel", "pad at most kernel_size // 2")
    return (x[0], x[1], *out_hw(x, attrs))


def _like_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    expected = _pool_shape((x,), attrs)
    if any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient {g} does not match the pooling output {expected}")
    return x


def _max_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    padded = Padded(in_shapes[0], geometry(attrs)[3], dtype, fill=-np.inf)
    offsets = offset_slices(attrs, out_shape[2:])

    def max_pool2d(x: np.ndarray, out: np.ndarray) -> None:
        # one strided slice per kernel offset: kh * kw vectorised maxima over the whole output
        xp = padded.load(x)
        np.copyto(out, xp[offsets[0][2]])
        for _, _, index in offsets[1:]:
            np.maximum(out, xp[index], out=out)

    return max_pool2d


class _Scatter:
    """col2im for pooling: add per-offset (N, C, Ho, Wo) contributions into a padded gradient."""

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], hw: tuple, dtype: np.dtype) -> None:
        n, c, h, w = x_shape
        pt, pb, pl, pr = geometry(attrs)[3]
        self.padded = any((pt, pb, pl, pr))
        self.dxp = np.empty((n, c, h + pt + pb, w + pl + pr), dtype=dtype) if self.padded else None
        self.inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))
        self.offsets = offset_slices(attrs, hw)

    def target(self, out: np.ndarray) -> np.ndarray:
        dst = self.dxp if self.padded else out
        dst.fill(0)
        return dst

    def finish(self, out: np.ndarray) -> None:
        if self.padded:
            np.copyto(out, self.dxp[self.inner])


class _Argmax:
    """Per window of x, the index (in kernel scan order) of its first maximum, as PyTorch picks it.

    Offsets are scanned in increasing order and the index only changes on a strictly larger value,
    so ``idx = max(idx, k * (x_k > best))`` keeps the first maximum with fast same-type ufuncs
    (``copyto(..., where=)`` is an order of magnitude slower).
    """

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], pooled: tuple, dtype: np.dtype) -> None:
        self.padded = Padded(x_shape, geometry(attrs)[3], dtype, fill=-np.inf)
        self.offsets = offset_slices(attrs, pooled[2:])
        self.best = np.empty(pooled, dtype=dtype)
        self.idx = np.empty(pooled, dtype=np.uint8 if len(self.offsets) < 256 else np.int64)
        self.step = np.empty(pooled, dtype=self.idx.dtype)
        self.mask = np.empty(pooled, dtype=bool)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xp = self.padded.load(x)
        np.copyto(self.best, xp[self.offsets[0][2]])
        self.idx.fill(0)
        for k, (_, _, index) in enumerate(self.offsets[1:], start=1):
            np.greater(xp[index], self.best, out=self.mask)
            np.maximum(self.best, xp[index], out=self.best)
            np.copyto(self.step, self.mask)
            np.multiply(self.step, k, out=self.step)
            np.maximum(self.idx, self.step, out=self.idx)
        return self.idx


def _max_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    g_shape, x_shape = in_shapes
    argmax = _Argmax(x_shape, attrs, g_shape, dtype)
    mask = np.empty(g_shape, dtype=bool)
    fmask = np.empty(g_shape, dtype=dtype)
    part = np.empty(g_shape, dtype=dtype)
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), dtype)
    (kh, kw), (sh, sw), (dh, dw), _ = geometry(attrs)
    # Windows that do not overlap (stride >= extent): each input position gets at most one value,
    # so the products are written straight into place instead of added to a zeroed buffer.
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
    padded_hw = (scatter.dxp if scatter.padded else np.empty((0, 0, *x_shape[2:]))).shape[2:]
    tiled = disjoint and (sh * g_shape[2], sw * g_shape[3]) == tuple(padded_hw) and (sh, sw) == (kh, kw)

    def max_pool2d_grad(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        idx = argmax(x)
        # windows that tile the input exactly write every position: no zeroing needed
        dst = (scatter.dxp if scatter.padded else out) if tiled else scatter.target(out)
        for k, (_, _, index) in enumerate(scatter.offsets):
            np.equal(idx, k, out=mask)
            np.copyto(fmask, mask)  # a float mask: multiplying by bools casts through a new buffer
            view = dst[index]
            if disjoint:
                np.multiply(g, fmask, out=view)
            else:
                np.multiply(g, fmask, out=part)
                np.add(view, part, out=view)
        scatter.finish(out)

    return max_pool2d_grad


def _max_pick_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    h_shape, x_shape = in_shapes
    argmax = _Argmax(x_shape, attrs, out_shape, dtype)
    padded = Padded(h_shape, geometry(attrs)[3], dtype)
    offsets = offset_slices(attrs, out_shape[2:])
    mask = np.empty(out_shape, dtype=bool)

    def max_pool2d_pick(h: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        idx = argmax(x)
        hp = padded.load(h)
        for k, (_, _, index) in enumerate(offsets):
            np.equal(idx, k, out=mask)
            np.copyto(out, hp[index], where=mask)

    return max_pool2d_pick


def _pick_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    h, x = shapes
    if len(h) != len(x) or any(a is not None and b is not None and a != b for a, b in zip(h, x)):
        fail(f"values {h} must have the pooled input's shape {x}")
    return _pool_shape((x,), attrs)


register(OpDef("max_pool2d", _pool_shape, _max_kernel, arity=1, label_attrs=LABEL,
               grad=lambda c: [c.apply("max_pool2d_grad", c.gout, c.inputs[0], **c.attrs)],
               doc="Largest value of each window (padding never wins).", attr_schema=WINDOW_ATTRS))
# max_pool2d_grad is linear in g and max_pool2d_pick is its transpose, so each is the other's gradient.
register(OpDef("max_pool2d_grad", _like_shape, _max_grad_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               grad=lambda c: [c.apply("max_pool2d_pick", c.gout, c.inputs[1], **c.attrs), None],
               doc="Gradient of max_pool2d: g routed to the first maximum of each window of x.",
               attr_schema=WINDOW_ATTRS))
register(OpDef("max_pool2d_pick", _pick_shape, _max_pick_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               grad=lambda c: [c.apply("max_pool2d_grad", c.gout, c.inputs[1], **c.attrs), None],
               doc="h read at the first maximum of each window of x (same shape as x).", attr_schema=WINDOW_ATTRS))


def _avg_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    padded = Padded(in_shapes[0], geometry(attrs)[3], dtype)
    offsets = offset_slices(attrs, out_shape[2:])
    scale = 1.0 / len(offsets)

    def avg_pool2d(x: np.ndarray, out: np.ndarray) -> None:
        xp = padded.load(x)
        np.copyto(out, xp[offsets[0][2]])
        for _, _, index in offsets[1:]:
            np.add(out, xp[index], out=out)
        np.multiply(out, scale, out=out)

    return avg_pool2d


def _avg_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    g_shape, x_shape = in_shapes
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), dtype)
    part = np.empty(g_shape, dtype=dtype)
    scale = 1.0 / math.prod(geometry(attrs)[0])

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
               doc="Mean of each window; padded positions count as zeros.", attr_schema=WINDOW_ATTRS))
register(OpDef("avg_pool2d_grad", _like_shape, _avg_grad_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               grad=lambda c: [c.apply("avg_pool2d", c.gout, **c.attrs), None],
               doc="Gradient of avg_pool2d: g / window size spread over each window (linear in g).",
               attr_schema=WINDOW_ATTRS))
