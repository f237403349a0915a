"""2-d pooling over NCHW images: max (gradient to the first maximum, as PyTorch) here, average in
``pool_avg`` (which shares this file's attributes, shape rules and helpers). ``ceil_mode`` (PyTorch's)
is extra bottom/right padding that no window starts in: -inf for max pooling, and never counted in an
average's divisor. Kernels and workspace rules see it as padding (``_ceil``).

max_pool2d has two outputs: the maxima and, in training plans, the index of each window's first maximum
(in kernel scan order), which its gradient reads instead of scanning x again. In inference plans the
index is not computed but zero (``training`` is False; a gradient built there scans x itself)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import Bool
from graphdl.ops.common import agree
from graphdl.ops.window import (
    WINDOW_ATTRS,
    Padded,
    Tiles,
    check_image,
    geometry,
    offset_slices,
    offset_views,
    out_hw,
    padded_shape,
)
from graphdl.registry import GradContext, OpDef, fail, register, scratch

LABEL = ("kernel", "stride", "padding", "ceil_mode", "count_include_pad")
POOL_ATTRS = {**WINDOW_ATTRS, "ceil_mode": Bool(False), "count_include_pad": Bool(True)}


def _effective(attrs: dict[str, Any], x: tuple) -> dict[str, Any]:
    """The attributes with ceil_mode turned into extra bottom/right padding (PyTorch's output size rule:
    rounded up, but the last window starts inside the input or its top/left padding)."""
    if not attrs.get("ceil_mode"):
        return attrs
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    extra = []
    for size, k, s, d, before, after in ((x[2], kh, sh, dh, pt, pb), (x[3], kw, sw, dw, pl, pr)):
        span = size + before + after - d * (k - 1) - 1
        out = -(-span // s) + 1 if span >= 0 else 0
        if out > 1 and (out - 1) * s >= size + before:
            out -= 1
        extra.append(max(0, (out - 1) * s + d * (k - 1) + 1 - (size + before + after)))
    return {**attrs, "padding": (pt, pb + extra[0], pl, pr + extra[1])}


def _ceil(fn: Callable[..., Any], pooled: int) -> Callable[..., Any]:
    """A kernel factory or workspace declaration that sees ceil_mode as padding (``in_shapes[pooled]`` is
    the pooled input)."""
    return lambda attrs, in_shapes, *rest, **kw: fn(_effective(attrs, in_shapes[pooled]), in_shapes, *rest, **kw)


def _pool_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,) = shapes
    check_image(x, "pooling")
    (kh, kw), _, (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    if max(pt, pb) * 2 > dh * (kh - 1) + 1 or max(pl, pr) * 2 > dw * (kw - 1) + 1:
        fail(f"padding {(pt, pb, pl, pr)} is more than half the {kh}x{kw} kernel", "pad at most kernel_size // 2")
    return (x[0], x[1], *out_hw(x, _effective(attrs, x)))


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


def _index_dtype(attrs: dict[str, Any]) -> type:
    return np.uint8 if math.prod(geometry(attrs)[0]) < 256 else np.int64


def _splits(shape: tuple) -> bool:
    """Whether a kernel with this (N, C, Ho, Wo) output (or output gradient) cuts its batch for threads."""
    return shape[0] > 1 and threads.splits(math.prod(shape))


def _over_batch(part: Callable[[slice], None], shape: tuple) -> None:
    """``part`` on the whole batch, or on slices of it in threads when the (N, C, Ho, Wo) output is large."""
    if _splits(shape):
        threads.split_over_threads(part, shape[0])
    else:
        part(slice(None))


def _max_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    out = _pool_shape(shapes, attrs)
    return out, out


def _max_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: Any) -> dict:
    dtype = dtype[0] if isinstance(dtype, tuple) else dtype  # the op has two outputs
    if attrs.get("training", False):  # the argmax scan, whose maxima and indices are the outputs
        return _declare(_padded_part("xp", in_shapes[0], attrs, dtype), *_scan_parts(attrs, out_shape[0], dtype))
    return _declare(_padded_part("xp", in_shapes[0], attrs, dtype), _rows_part(attrs, out_shape[0], dtype),
                    ("plane", out_shape[0], dtype) if Tiles.fit(attrs, out_shape[0]) else None)


def _max_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple,
                workspace: list[np.ndarray] | None = None):
    ws = _bind(workspace, _max_decl(attrs, in_shapes, out_shapes, dtypes))
    padded = Padded(in_shapes[0], geometry(attrs)[3], ws.get("xp"), fill=-np.inf)
    offsets = offset_slices(attrs, out_shapes[0][2:])
    argmax = _Argmax(in_shapes[0], attrs, out_shapes[0], ws) if attrs.get("training", False) else None
    tiles, rows, plane = Tiles.fitting(attrs, out_shapes[0]), ws.get("rows"), ws.get("plane")

    def max_pool2d(x: np.ndarray, out: np.ndarray, idx: np.ndarray) -> None:
        def part(s: slice) -> None:
            if argmax is not None:  # training: the maxima and where they are, in one scan
                argmax(x, best=out, idx=idx, batch=s)
                return
            idx[s].fill(0)  # not computed in inference plans (nothing reads it); zeros rather than stale bytes
            # kh * kw vectorised maxima over the whole output, in scan order (the same bits as the
            # training scan's, signed zeros and NaN payloads included); a 4-d strided view is read
            # directly (as fast as copying it out first), views of ``rows`` are copied out
            xp, o = padded.load(x[s], s), out[s]
            through_rows = tiles is not None and tiles.fits(xp)
            views = offset_views(xp, offsets, tiles, rows[s] if through_rows else None)
            np.copyto(o, next(views))
            for view in views:
                if through_rows:
                    np.copyto(plane[s], view)
                    view = plane[s]
                np.maximum(o, view, out=o)

        _over_batch(part, out.shape)

    return threads.splitting(max_pool2d, _splits(out_shapes[0]))


class _Scatter:
    """col2im for pooling: add per-offset (N, C, Ho, Wo) contributions into a padded gradient."""

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], hw: tuple, dxp: np.ndarray | None) -> None:
        _, _, h, w = x_shape
        pt, pb, pl, pr = geometry(attrs)[3]
        self.padded = any((pt, pb, pl, pr))
        self.dxp = dxp
        self.inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))
        self.offsets = offset_slices(attrs, hw)

    def target(self, out: np.ndarray, batch: slice = slice(None)) -> np.ndarray:
        """Where the ``batch`` slice of the gradient is summed, zeroed (``out`` is that slice)."""
        dst = self.dxp[batch] if self.padded else out
        dst.fill(0)
        return dst

    def finish(self, out: np.ndarray, batch: slice = slice(None)) -> None:
        if self.padded:
            np.copyto(out, self.dxp[batch][self.inner])


def _argmax_parts(x_shape: tuple, attrs: dict[str, Any], pooled: tuple, dtype: np.dtype) -> list[tuple | None]:
    return [_padded_part("xp", x_shape, attrs, dtype), ("best", pooled, dtype), ("idx", pooled, _index_dtype(attrs)),
            *_scan_parts(attrs, pooled, dtype)]


def _scan_parts(attrs: dict[str, Any], pooled: tuple, dtype: np.dtype) -> list[tuple | None]:
    """The workspace of the argmax scan itself: one offset's values copied out of x, and two masks."""
    return [_rows_part(attrs, pooled, dtype), ("plane", pooled, dtype), ("step", pooled, _index_dtype(attrs)),
            ("mask", pooled, np.bool_)]


def _rows_part(attrs: dict[str, Any], pooled: tuple, dtype: np.dtype) -> tuple | None:
    tiles = Tiles.fitting(attrs, pooled)
    return ("rows", tiles.rows_shape(pooled), dtype) if tiles is not None else None


class _Argmax:
    """Per window of x, the index (in kernel scan order) of its first maximum, as PyTorch picks it.

    Offsets are scanned in increasing order and the index only changes on a strictly larger value,
    so ``idx = max(idx, k * (x_k > best))`` keeps the first maximum with fast same-type ufuncs
    (``copyto(..., where=)`` is an order of magnitude slower). Each offset's strided view of x is
    copied once into a contiguous ``plane`` that the comparison and the maximum then read: a ufunc
    over a strided view runs a short inner loop per output row (about as slow as the copy), so one
    strided pass per offset instead of two makes the scan ~1.4x faster (2x2/2 on 64x32x28x28).
    """

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], pooled: tuple, ws: dict[str, np.ndarray]) -> None:
        self.padded = Padded(x_shape, geometry(attrs)[3], ws.get("xp"), fill=-np.inf)
        self.offsets = offset_slices(attrs, pooled[2:])
        self.best, self.idx, self.step, self.mask = ws.get("best"), ws.get("idx"), ws["step"], ws["mask"]
        self.plane, self.rows, self.tiles = ws["plane"], ws.get("rows"), Tiles.fitting(attrs, pooled)
        self.mask8 = self.mask.view(np.uint8)  # the bools as 0/1 bytes: no casting pass

    def __call__(self, x: np.ndarray, best: np.ndarray | None = None, idx: np.ndarray | None = None,
                 batch: slice = slice(None)) -> np.ndarray:
        """The indices (into ``idx``, else the workspace); the maxima land in ``best`` if given. Only
        the ``batch`` slice of the samples is scanned, and that slice of the indices returned."""
        best = (self.best if best is None else best)[batch]
        idx = (self.idx if idx is None else idx)[batch]
        step, mask, mask8, plane = self.step[batch], self.mask[batch], self.mask8[batch], self.plane[batch]
        xp = self.padded.load(x[batch], batch)
        views = offset_views(xp, self.offsets, self.tiles, None if self.rows is None else self.rows[batch])
        np.copyto(best, next(views))
        idx.fill(0)
        for k, view in enumerate(views, start=1):
            np.copyto(plane, view)
            np.greater(plane, best, out=mask)
            np.maximum(best, plane, out=best)
            np.multiply(mask8, step.dtype.type(k), out=step)  # k typed: int64 past 255
            np.maximum(idx, step, out=idx)
        return idx


def _max_grad_geometry(attrs: dict, g_shape: tuple, x_shape: tuple) -> tuple[bool, bool]:
    """(disjoint, tiled): windows that do not overlap (stride >= extent) give each input position at
    most one value, so products are written straight into place; windows that also tile the
    (padded) input exactly write every position, so nothing needs zeroing."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
    padded_hw = (x_shape[2] + pt + pb, x_shape[3] + pl + pr)
    tiled = disjoint and (sh * g_shape[2], sw * g_shape[3]) == padded_hw and (sh, sw) == (kh, kw)
    return disjoint, tiled


def _saved_index(attrs: dict, in_shapes: tuple) -> bool:
    """Whether a max_pool2d_grad node reads the forward node's indices (inputs g, x, idx in a training
    plan) rather than scanning x again (inference plans, and format-v1 files with inputs g, x)."""
    return len(in_shapes) == 3 and attrs.get("training", False)


def _max_grad_decl(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> dict:
    g_shape, x_shape = in_shapes[:2]
    scan = [] if _saved_index(attrs, in_shapes) else _argmax_parts(x_shape, attrs, g_shape, dtype)
    if scan == []:
        scan = [("mask", g_shape, np.bool_)]
    return _declare(*scan, _rows_part(attrs, g_shape, dtype), ("fmask", g_shape, dtype),
                    _padded_part("dxp", x_shape, attrs, dtype))


def _max_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                     workspace: list[np.ndarray] | None = None):
    g_shape, x_shape = in_shapes[:2]
    ws = _bind(workspace, _max_grad_decl(attrs, in_shapes, out_shape, dtype))
    argmax = None if _saved_index(attrs, in_shapes) else _Argmax(x_shape, attrs, g_shape, ws)
    mask, fmask = ws["mask"], ws["fmask"]
    scatter = _Scatter(x_shape, attrs, tuple(g_shape[2:]), ws.get("dxp"))
    disjoint, tiled = _max_grad_geometry(attrs, g_shape, x_shape)
    tiles, rows = Tiles.fitting(attrs, g_shape), ws.get("rows")

    def max_pool2d_grad(g: np.ndarray, x: np.ndarray, *rest: np.ndarray) -> None:
        def one(s: slice) -> None:
            out = rest[-1][s]
            idx = argmax(x, batch=s) if argmax is not None else rest[0][s]
            dst = (scatter.dxp[s] if scatter.padded else out) if tiled else scatter.target(out, s)
            gs, m, fm = g[s], mask[s], fmask[s]

            def product(k: int, into: np.ndarray) -> np.ndarray:
                """g where the first maximum is at offset k, g * 0 elsewhere (g times a 0/1 float mask)."""
                np.equal(idx, k, out=m)
                np.copyto(fm, m)  # a float mask: multiplying by bools casts through a new buffer
                return np.multiply(gs, fm, out=into)

            if tiles is not None and tiles.fits(dst):  # per kernel row: 1-d strided writes, one copy of runs
                for i in range(tiles.kh):
                    for j in range(tiles.kw):
                        product(i * tiles.kw + j, tiles.plane(rows[s], j))
                    tiles.store(rows[s], dst, i)
            else:
                for k, (_, _, index) in enumerate(scatter.offsets):
                    view = dst[index]
                    if disjoint:  # each position of x is in at most one window; a strided copy is
                        np.copyto(view, product(k, fm))  # faster than a ufunc writing that view
                    else:
                        np.add(view, product(k, fm), out=view)
            scatter.finish(out, s)

        _over_batch(one, g.shape)

    return threads.splitting(max_pool2d_grad, _splits(g_shape))


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


def _window(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != "training"}


def _max_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    if len(shapes) not in (2, 3):
        fail(f"max_pool2d_grad takes (g, x) or (g, x, indices), got {len(shapes)} inputs")
    if len(shapes) == 3 and not agree(shapes[2], shapes[0]):
        fail(f"indices {shapes[2]} do not match the gradient {shapes[0]}")
    return _like_shape(shapes[:2], attrs)


def _routes(attrs: dict[str, Any]) -> tuple[int, int] | None:
    """g routed within each (sample, channel) plane, unless a window's first position can be padding: a
    window of -inf or NaN keeps index 0, and g at a padded position is dropped."""
    pt, _, pl, _ = geometry(attrs)[3]
    return (0, 2) if pt == 0 and pl == 0 else None


def _max_pool_grad(c: GradContext) -> list:
    if c.gout is None:  # only the indices are read: they are no function of x
        return [None]
    return [c.apply("max_pool2d_grad", c.gout, c.inputs[0], c.outs[1], **c.attrs)]


MAX_POOL_ATTRS = {**POOL_ATTRS, "training": Bool(False)}
register(OpDef("max_pool2d", _max_shape, _ceil(_max_kernel, 0), arity=1, label_attrs=LABEL,
               workspace=_rule(_ceil(_max_decl, 0)),
               grad=_max_pool_grad, modal=True, multi_output=True,
               dtype=lambda d, a: (d[0], np.dtype(_index_dtype(a)).name),
               doc="Largest value of each window (padding never wins). Output 1: in training plans, the index of "
                   "each window's first maximum in kernel scan order, which the gradient reads (zeros otherwise).",
               attr_schema=MAX_POOL_ATTRS))
# max_pool2d_grad is linear in g and max_pool2d_pick is its transpose, so each is the other's gradient.
register(OpDef("max_pool2d_grad", _max_grad_shape, _ceil(_max_grad_kernel, 1), nondiff=(1, 2), label_attrs=LABEL,
               workspace=_rule(_ceil(_max_grad_decl, 1)), modal=True, dtype=lambda d, a: d[0], routes=_routes,
               # with the saved indices x only gives the shape: the pooled input need not outlive the forward
               shape_only=lambda attrs, arity: (1,) if _saved_index(attrs, (None,) * arity) else (),
               grad=lambda c: [c.apply("max_pool2d_pick", c.gout, c.inputs[1], **_window(c.attrs)), None, None],
               doc="Gradient of max_pool2d: g routed to the first maximum of each window of x (inputs g, x and, "
                   "in training plans, the forward node's indices).",
               attr_schema=MAX_POOL_ATTRS))
register(OpDef("max_pool2d_pick", _pick_shape, _ceil(_max_pick_kernel, 1), arity=2, nondiff=(1,),
               label_attrs=LABEL, workspace=_rule(_ceil(_max_pick_decl, 1)),
               grad=lambda c: [c.apply("max_pool2d_grad", c.gout, c.inputs[1], **c.attrs), None],
               doc="h read at the first maximum of each window of x (same shape as x).", attr_schema=POOL_ATTRS))
