"""2-d pooling over NCHW images: max (gradient to the first maximum, as PyTorch) and average
(padding counts as zeros, PyTorch's ``count_include_pad=True``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ops.window import WINDOW_ATTRS, Padded, check_image, geometry, offset_slices, out_hw, padded_shape
from graphdl.registry import GradContext, OpDef, fail, register, scratch

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


def _rule(decl):
    """The OpDef workspace rule of a named declaration: its (shape, dtype) pairs in order."""
    return lambda attrs, in_shapes, out_shape, dtype: list(decl(attrs, in_shapes, out_shape, dtype).values())


def _declare(*parts: tuple[str, tuple, object] | None) -> dict[str, tuple[tuple, object]]:
    """Named workspace declarations (None entries are skipped); the rule returns their values in order."""
    return {name: (tuple(shape), dt) for name, shape, dt in filter(None, parts)}


def _bind(workspace: list[np.ndarray] | None, declared: dict[str, tuple[tuple, object]]) -> dict[str, np.ndarray]:
    return dict(zip(declared, scratch(workspace, list(declared.values()))))


def _padded_part(name: str, shape: tuple, attrs: dict[str, Any], dtype: np.dtype) -> tuple | None:
    padding = geometry(attrs)[3]
    return (name, padded_shape(shape, padding), dtype) if any(padding) else None


def _max_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    return _declare(_padded_part("xp", in_shapes[0], attrs, dtype))


def _max_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                workspace: list[np.ndarray] | None = None):
    ws = _bind(workspace, _max_decl(attrs, in_shapes, out_shape, dtype))
    padded = Padded(in_shapes[0], geometry(attrs)[3], ws.get("xp"), fill=-np.inf)
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

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], hw: tuple, dxp: np.ndarray | None) -> None:
        _, _, h, w = x_shape
        pt, pb, pl, pr = geometry(attrs)[3]
        self.padded = any((pt, pb, pl, pr))
        self.dxp = dxp
        self.inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))
        self.offsets = offset_slices(attrs, hw)

    def target(self, out: np.ndarray) -> np.ndarray:
        dst = self.dxp if self.padded else out
        dst.fill(0)
        return dst

    def finish(self, out: np.ndarray) -> None:
        if self.padded:
            np.copyto(out, self.dxp[self.inner])


def _argmax_parts(x_shape: tuple, attrs: dict[str, Any], pooled: tuple, dtype: np.dtype) -> list[tuple | None]:
    n_offsets = math.prod(geometry(attrs)[0])
    index = np.uint8 if n_offsets < 256 else np.int64
    return [_padded_part("xp", x_shape, attrs, dtype), ("best", pooled, dtype), ("idx", pooled, index),
            ("step", pooled, index), ("mask", pooled, np.bool_)]


class _Argmax:
    """Per window of x, the index (in kernel scan order) of its first maximum, as PyTorch picks it.

    Offsets are scanned in increasing order and the index only changes on a strictly larger value,
    so ``idx = max(idx, k * (x_k > best))`` keeps the first maximum with fast same-type ufuncs
    (``copyto(..., where=)`` is an order of magnitude slower).
    """

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], pooled: tuple, ws: dict[str, np.ndarray]) -> None:
        self.padded = Padded(x_shape, geometry(attrs)[3], ws.get("xp"), fill=-np.inf)
        self.offsets = offset_slices(attrs, pooled[2:])
        self.best, self.idx, self.step, self.mask = ws["best"], ws["idx"], ws["step"], ws["mask"]

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


def _max_grad_geometry(attrs: dict, g_shape: tuple, x_shape: tuple) -> tuple[bool, bool]:
    """(disjoint, tiled): windows that do not overlap (stride >= extent) give each input position at
    most one value, so products are written straight into place; windows that also tile the
    (padded) input exactly write every position, so nothing needs zeroing."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
    padded_hw = (x_shape[2] + pt + pb, x_shape[3] + pl + pr)
    tiled = disjoint and (sh * g_shape[2], sw * g_shape[3]) == padded_hw and (sh, sw) == (kh, kw)
    return disjoint, tiled


def _max_grad_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    g_shape, x_shape = in_shapes
    disjoint, _ = _max_grad_geometry(attrs, g_shape, x_shape)
    return _declare(*_argmax_parts(x_shape, attrs, g_shape, dtype), ("fmask", g_shape, dtype),
                    None if disjoint else ("part", g_shape, dtype), _padded_part("dxp", x_shape, attrs, dtype))


def _max_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                     workspace: list[np.ndarray] | None = None):
    g_shape, x_shape = in_shapes
    ws = _bind(workspace, _max_grad_decl(attrs, in_shapes, out_shape, dtype))
    argmax = _Argmax(x_shape, attrs, g_shape, ws)
    mask, fmask, part = ws["mask"], ws["fmask"], ws.get("part")
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), ws.get("dxp"))
    disjoint, tiled = _max_grad_geometry(attrs, g_shape, x_shape)

    def max_pool2d_grad(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        idx = argmax(x)
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


def _max_pick_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    h_shape, x_shape = in_shapes
    return _declare(*_argmax_parts(x_shape, attrs, out_shape, dtype), _padded_part("hp", h_shape, attrs, dtype))


def _max_pick_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                     workspace: list[np.ndarray] | None = None):
    h_shape, x_shape = in_shapes
    ws = _bind(workspace, _max_pick_decl(attrs, in_shapes, out_shape, dtype))
    argmax = _Argmax(x_shape, attrs, out_shape, ws)
    padded = Padded(h_shape, geometry(attrs)[3], ws.get("hp"))
    offsets = offset_slices(attrs, out_shape[2:])
    mask = ws["mask"]

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


register(OpDef("max_pool2d", _pool_shape, _max_kernel, arity=1, label_attrs=LABEL, workspace=_rule(_max_decl),
               grad=lambda c: [c.apply("max_pool2d_grad", c.gout, c.inputs[0], **c.attrs)],
               doc="Largest value of each window (padding never wins).", attr_schema=WINDOW_ATTRS))
# max_pool2d_grad is linear in g and max_pool2d_pick is its transpose, so each is the other's gradient.
register(OpDef("max_pool2d_grad", _like_shape, _max_grad_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               workspace=_rule(_max_grad_decl),
               grad=lambda c: [c.apply("max_pool2d_pick", c.gout, c.inputs[1], **c.attrs), None],
               doc="Gradient of max_pool2d: g routed to the first maximum of each window of x.",
               attr_schema=WINDOW_ATTRS))
register(OpDef("max_pool2d_pick", _pick_shape, _max_pick_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               workspace=_rule(_max_pick_decl),
               grad=lambda c: [c.apply("max_pool2d_grad", c.gout, c.inputs[1], **c.attrs), None],
               doc="h read at the first maximum of each window of x (same shape as x).", attr_schema=WINDOW_ATTRS))


def _avg_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                workspace: list[np.ndarray] | None = None):
    ws = _bind(workspace, _max_decl(attrs, in_shapes, out_shape, dtype))
    padded = Padded(in_shapes[0], geometry(attrs)[3], ws.get("xp"))
    offsets = offset_slices(attrs, out_shape[2:])
    scale = 1.0 / len(offsets)

    def avg_pool2d(x: np.ndarray, out: np.ndarray) -> None:
        xp = padded.load(x)
        np.copyto(out, xp[offsets[0][2]])
        for _, _, index in offsets[1:]:
            np.add(out, xp[index], out=out)
        np.multiply(out, scale, out=out)

    return avg_pool2d


def _avg_grad_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    g_shape, x_shape = in_shapes
    return _declare(("part", g_shape, dtype), _padded_part("dxp", x_shape, attrs, dtype))


def _avg_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                     workspace: list[np.ndarray] | None = None):
    g_shape, x_shape = in_shapes
    ws = _bind(workspace, _avg_grad_decl(attrs, in_shapes, out_shape, dtype))
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), ws.get("dxp"))
    part = ws["part"]
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
               workspace=_rule(_max_decl),
               doc="Mean of each window; padded positions count as zeros.", attr_schema=WINDOW_ATTRS))
register(OpDef("avg_pool2d_grad", _like_shape, _avg_grad_kernel, arity=2, nondiff=(1,), label_attrs=LABEL,
               workspace=_rule(_avg_grad_decl),
               grad=lambda c: [c.apply("avg_pool2d", c.gout, **c.attrs), None],
               doc="Gradient of avg_pool2d: g / window size spread over each window (linear in g).",
               attr_schema=WINDOW_ATTRS))
