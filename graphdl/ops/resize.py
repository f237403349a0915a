"""resize2d: resample the height and width of NCHW input to a given size, as PyTorch's ``interpolate`` and
``Upsample`` do (modes nearest, nearest-exact and bilinear, with or without ``align_corners``; a given
``scale`` sets the coordinate mapping as PyTorch's ``scale_factor`` does). resize2d_adjoint is its gradient,
and resize2d the adjoint's.

Each axis is resampled on its own. An output index reads one input index (nearest) or two (bilinear),
and along an axis those indices never decrease. So the forward is gathers and weighted sums, and the
adjoint sums runs of consecutive outputs (``np.add.reduceat``): work in proportion to the output, with no
interpolation matrices, in planner-placed scratch buffers (no allocation while a plan runs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Bool, Float, Ints, Str
from graphdl.registry import GradContext, OpDef, fail, register, scratch

MODES = ("nearest", "nearest-exact", "bilinear")
RESIZE_ATTRS = {"size": Ints(2, low=1), "mode": Str(*MODES, default="nearest"), "align_corners": Bool(False),
                "scale_h": Float(None, low=0.0, nullable=True), "scale_w": Float(None, low=0.0, nullable=True)}


def taps(n_in: int, n_out: int, mode: str, align_corners: bool, scale: float | None,
         dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(first input index, second input index, weight of the second) for each output index along one axis;
    the weight is None for nearest modes (one index). PyTorch's rules (aten/src/ATen/native/UpSample.h):
    ``scale`` is the output/input ratio the caller asked for, else n_out / n_in; computed in float32 for
    float32 data, as PyTorch's opmath."""
    real = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    d = np.arange(n_out)
    if mode in ("nearest", "nearest-exact"):
        step = real(1.0 / scale) if scale else real(n_in / n_out)
        pos = (d + 0.5).astype(real) * step if mode == "nearest-exact" else d.astype(real) * step
        i0 = d.copy() if n_out == n_in else np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        return i0, i0, None
    if align_corners:
        step = real((n_in - 1) / (n_out - 1)) if n_out > 1 else real(0.0)
        src = d.astype(real) * step
    else:
        step = real(1.0 / scale) if scale else real(n_in / n_out)
        src = np.maximum(step * (d.astype(real) + real(0.5)) - real(0.5), real(0.0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(dtype)


def _both_taps(attrs: dict[str, Any], x: tuple, y: tuple, dtype: Any) -> tuple[tuple, tuple]:
    """``taps`` along height and along width, for resizing NCHW shape ``x`` to ``y``."""
    mode, corners = attrs.get("mode", "nearest"), attrs.get("align_corners", False)
    return (taps(x[2], y[2], mode, corners, attrs.get("scale_h"), dtype),
            taps(x[3], y[3], mode, corners, attrs.get("scale_w"), dtype))


def _resize_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, size = shapes[0], tuple(attrs["size"])
    if len(x) != 4 or None in x[2:]:
        fail(f"resize2d needs (batch, channels, height, width) with known height and width, got {x}")
    if len(size) != 2 or min(size) < 1:
        fail(f"resize2d size must be two sizes >= 1 (height, width), got {size}")
    if attrs.get("align_corners") and attrs.get("mode", "nearest") != "bilinear":
        fail("align_corners applies to mode 'bilinear' only", "drop align_corners for nearest modes")
    for n, s, key in ((x[2], size[0], "scale_h"), (x[3], size[1], "scale_w")):
        scale = attrs.get(key)
        if scale is not None and not (scale > 0 and math.isfinite(scale) and math.floor(n * scale) == s):
            fail(f"resize2d {key}={scale} does not give size {s} from {n} (the size is floor(input * scale))")
    return (x[0], x[1], *size)


def _workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list:
    """The rows resampled first; for bilinear also the second tap's values (the larger of both passes)."""
    n, c, h, w = in_shapes[0]
    ho, wo = out_shape[2:]
    second = [((n * c * ho * max(w, wo),), dtype)] if attrs.get("mode", "nearest") == "bilinear" else []
    return [((n, c, ho, w), dtype), *second]


def _resize_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype, workspace: Any = None):
    n, c, h, w = in_shapes[0]
    ho, wo = out_shape[2:]
    (h0, h1, hw), (w0, w1, ww) = _both_taps(attrs, in_shapes[0], out_shape, dtype)
    rows, *second = scratch(workspace, _workspace(attrs, in_shapes, out_shape, dtype))
    if second:
        other = second[0][: n * c * ho * w].reshape(n, c, ho, w)
        other_out = second[0][: n * c * ho * wo].reshape(n, c, ho, wo)
    hcol = None if hw is None else hw.reshape(ho, 1)

    def resize2d(x: np.ndarray, out: np.ndarray) -> None:
        np.take(x, h0, axis=2, out=rows)
        if hcol is not None:  # rows = x[h0] + (x[h1] - x[h0]) * weight
            np.take(x, h1, axis=2, out=other)
            np.subtract(other, rows, out=other)
            np.multiply(other, hcol, out=other)
            np.add(rows, other, out=rows)
        np.take(rows, w0, axis=3, out=out)
        if ww is not None:
            np.take(rows, w1, axis=3, out=other_out)
            np.subtract(other_out, out, out=other_out)
            np.multiply(other_out, ww, out=other_out)
            np.add(out, other_out, out=out)

    return resize2d


class _Adjoint:
    """One tap's adjoint along one axis: each input index gets the weighted sum of the (consecutive)
    outputs that read it there."""

    def __init__(self, index: np.ndarray, weight: np.ndarray | None, axis: int) -> None:
        self.starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        self.targets, self.axis = index[self.starts], axis
        self.weight = None if weight is None else (weight.reshape(-1, 1) if axis == 2 else weight)
        self.every = bool(np.array_equal(self.targets, np.arange(len(self.targets))))

    def add(self, g: np.ndarray, out: np.ndarray, weighted: np.ndarray, full: np.ndarray, runs: np.ndarray,
            first: bool) -> None:
        """out = (first) or += this tap's adjoint of g; ``weighted`` has g's shape, ``full`` and ``runs``
        out's (scratch)."""
        src = g
        if self.weight is not None:
            np.multiply(g, self.weight, out=weighted)
            src = weighted
        target = out if first else full
        k = len(self.starts)
        if self.every and k == out.shape[self.axis]:  # every input index is read: the run sums are the result
            np.add.reduceat(src, self.starts, axis=self.axis, out=target)
        else:
            part = runs[:, :, :k] if self.axis == 2 else runs[..., :k]
            np.add.reduceat(src, self.starts, axis=self.axis, out=part)
            target.fill(0)
            target[(slice(None), slice(None), self.targets) if self.axis == 2 else (..., self.targets)] = part
        if not first:
            np.add(out, full, out=out)


def _adjoint_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list:
    n, c, ho, wo = in_shapes[0]
    h, w = out_shape[2:]
    big = n * c * max(h, ho) * max(w, wo)
    return [((n, c, ho, w), dtype), ((big,), dtype), ((big,), dtype), ((big,), dtype)]


def _adjoint_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype, workspace: Any = None):
    n, c, ho, wo = in_shapes[0]
    h, w = out_shape[2:]
    (h0, h1, hw), (w0, w1, ww) = _both_taps(attrs, out_shape, in_shapes[0], dtype)  # of the forward resize
    cols, a, b, r = scratch(workspace, _adjoint_workspace(attrs, in_shapes, out_shape, dtype))
    wide = [_Adjoint(w0, None if ww is None else 1 - ww, 3)] + ([] if ww is None else [_Adjoint(w1, ww, 3)])
    tall = [_Adjoint(h0, None if hw is None else 1 - hw, 2)] + ([] if hw is None else [_Adjoint(h1, hw, 2)])

    def view(buf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return buf[: math.prod(shape)].reshape(shape)

    wide_bufs = (view(a, (n, c, ho, wo)), view(b, (n, c, ho, w)), view(r, (n, c, ho, w)))
    tall_bufs = (view(a, (n, c, ho, w)), view(b, (n, c, h, w)), view(r, (n, c, h, w)))

    def resize2d_adjoint(g: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        for k, tap in enumerate(wide):
            tap.add(g, cols, *wide_bufs, k == 0)
        for k, tap in enumerate(tall):
            tap.add(cols, out, *tall_bufs, k == 0)

    return resize2d_adjoint


def _adjoint_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    expected = _resize_shape((x,), attrs)
    if len(g) != 4 or any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient of shape {g} does not fit the resize of {x} ({expected})")
    return x


def _resize_grad(c: GradContext) -> list:
    return [c.apply("resize2d_adjoint", c.gout, c.inputs[0], **c.attrs)]


def _adjoint_grad(c: GradContext) -> list:
    return [c.apply("resize2d", c.gout, **c.attrs), None]


register(OpDef(
    "resize2d", _resize_shape, _resize_kernel, arity=1, grad=_resize_grad, workspace=_workspace,
    label_attrs=("size", "mode"), attr_schema=RESIZE_ATTRS,
    doc="Resample NCHW height and width to `size` (PyTorch's interpolate: nearest, nearest-exact or bilinear, "
        "align_corners; `scale` = the scale_factor asked for, which sets the coordinate mapping).",
))
register(OpDef(
    "resize2d_adjoint", _adjoint_shape, _adjoint_kernel, arity=2, nondiff=(1,), shape_only=(1,),
    grad=_adjoint_grad, workspace=_adjoint_workspace, label_attrs=("size", "mode"), attr_schema=RESIZE_ATTRS,
    doc="Gradient of resize2d: inputs (gradient of the output, x for its shape); each input position gets "
        "the weighted sum of the outputs that read it.",
))


