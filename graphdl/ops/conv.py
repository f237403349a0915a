"""2-d convolution (NCHW, weight (out, in/groups, kh, kw)) by im2col and one batched GEMM per call.

``conv2d`` has two gradient ops, one per input: ``conv2d_input_grad`` (the transposed convolution,
col2im over the kernel offsets) and ``conv2d_weight_grad`` (a GEMM against the windows). Each of the
three is bilinear, so every gradient of a gradient is again one of the three: second order works.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.ops.window import WINDOW_ATTRS, Padded, check_image, geometry, offset_slices, out_hw, windows
from graphdl.registry import GradContext, OpDef, fail, register

LABEL = ("kernel", "stride", "padding", "dilation", "groups")


def _check(x: tuple, w: tuple, attrs: dict[str, Any]) -> tuple[int, int]:
    check_image(x, "conv2d")
    groups = attrs.get("groups", 1)
    if len(w) != 4:
        fail(f"weight must be 4-d (out_channels, in_channels/groups, kh, kw), got {w}")
    if tuple(w[2:]) != tuple(attrs["kernel"]):
        fail(f"weight {w} does not have the kernel size {tuple(attrs['kernel'])}")
    if x[1] is not None and x[1] != w[1] * groups:
        fail(f"input has {x[1]} channels but the weight expects {w[1] * groups} ({w[1]} per group x {groups} "
             f"groups)", f"make the previous layer output {w[1] * groups} channels")
    if w[0] % groups:
        fail(f"{w[0]} output channels do not split into {groups} groups")
    return out_hw(x, attrs)


def _conv_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, w = shapes[0], shapes[1]
    ho, wo = _check(x, w, attrs)
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        fail(f"bias has shape {shapes[2]}, expected ({w[0]},)")
    return (x[0], w[0], ho, wo)


class _Im2col:
    """The windows of x copied to (N, G, C/G*kh*kw, Ho*Wo) matrices, into a preallocated buffer.

    Ho*Wo last keeps the copy's inner loop on contiguous output pixels and makes the forward pass one
    batched GEMM whose result is already NCHW.
    """

    def __init__(self, x_shape: tuple, attrs: dict[str, Any], dtype: np.dtype) -> None:
        n, c = x_shape[:2]
        (kh, kw), _, _, padding = geometry(attrs)
        self.attrs, self.groups = attrs, attrs.get("groups", 1)
        self.hw = out_hw(x_shape, attrs)
        self.padded = Padded(x_shape, padding, dtype)
        g, cg = self.groups, c // self.groups
        self.cols = np.empty((n, g, cg, kh, kw, *self.hw), dtype=dtype)
        self.matrix = self.cols.reshape(n, g, cg * kh * kw, self.hw[0] * self.hw[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        win = windows(self.padded.load(x), self.attrs, self.hw, self.groups)  # (N, G, Cg, Ho, Wo, kh, kw)
        np.copyto(self.cols, win.transpose(0, 1, 2, 5, 6, 3, 4))
        return self.matrix


def _conv_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    im2col = _Im2col(in_shapes[0], attrs, dtype)
    groups = im2col.groups
    n, co, ho, wo = out_shape
    split = (n, groups, co // groups, ho * wo)
    w_split = (groups, co // groups, -1)

    def conv2d(x: np.ndarray, w: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        # (G, Cout/G, K) @ (N, G, K, Ho*Wo) -> (N, G, Cout/G, Ho*Wo): the NCHW output itself
        np.matmul(w.reshape(w_split), im2col(x), out=out.reshape(split))
        if len(rest) == 2:
            np.add(out, rest[0].reshape(co, 1, 1), out=out)

    return conv2d


def _conv_grad(c: GradContext) -> list:
    x, w = c.inputs[0], c.inputs[1]
    grads = [c.apply("conv2d_input_grad", c.gout, w, x, **c.attrs), c.apply("conv2d_weight_grad", x, c.gout, **c.attrs)]
    if len(c.inputs) == 3:
        grads.append(c.apply("sum", c.gout, axis=(0, 2, 3)))
    return grads


register(OpDef("conv2d", _conv_shape, _conv_kernel, grad=_conv_grad, label_attrs=LABEL,
               doc="Cross-correlation of NCHW x with W (out, in/groups, kh, kw), plus bias per output channel.",
               attr_schema=WINDOW_ATTRS))


def _input_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, w, x = shapes
    expected = _conv_shape((x, w), attrs)
    if any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient {g} does not match the convolution's output {expected}")
    return x


def _input_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    g_shape, w_shape, x_shape = in_shapes
    groups = attrs.get("groups", 1)
    n, c, h, wd = x_shape
    (kh, kw), _, _, (pt, pb, pl, pr) = geometry(attrs)
    hw = out_hw(x_shape, attrs)
    dcols = np.empty((n, groups, c // groups, kh, kw, *hw), dtype=dtype)
    dcols_mat = dcols.reshape(n, groups, -1, hw[0] * hw[1])
    padded = any((pt, pb, pl, pr))
    dxp = np.empty((n, c, h + pt + pb, wd + pl + pr), dtype=dtype) if padded else None
    inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + wd))
    offsets = offset_slices(attrs, hw)
    g_split = (n, groups, g_shape[1] // groups, hw[0] * hw[1])
    w_split = (groups, w_shape[0] // groups, -1)

    def conv2d_input_grad(g: np.ndarray, w: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        # columns (N, G, K, Ho*Wo) = W^T (G, K, Cout/G) @ g (N, G, Cout/G, Ho*Wo), then col2im
        np.matmul(w.reshape(w_split).transpose(0, 2, 1), g.reshape(g_split), out=dcols_mat)
        dst = dxp if padded else out
        dst.fill(0)
        grouped = dst.reshape(n, groups, c // groups, *dst.shape[2:])
        for i, j, index in offsets:
            view = grouped[(slice(None), *index)]
            np.add(view, dcols[:, :, :, i, j], out=view)
        if padded:
            np.copyto(out, dxp[inner])

    return conv2d_input_grad


def _input_grad_grad(c: GradContext) -> list:
    g, w, _ = c.inputs
    return [c.apply("conv2d", c.gout, w, **c.attrs), c.apply("conv2d_weight_grad", c.gout, g, **c.attrs), None]


register(OpDef("conv2d_input_grad", _input_grad_shape, _input_grad_kernel, grad=_input_grad_grad, arity=3,
               nondiff=(2,), shape_only=(2,), label_attrs=LABEL,
               doc="Gradient of conv2d for its input (a transposed convolution); `like` gives the input's shape.",
               attr_schema=WINDOW_ATTRS))


def _weight_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, g = shapes
    check_image(x, "conv2d_weight_grad")
    groups = attrs.get("groups", 1)
    ho, wo = out_hw(x, attrs)
    if len(g) != 4 or (g[2], g[3]) != (ho, wo):
        fail(f"gradient {g} does not match the convolution's output (?, ?, {ho}, {wo})")
    if g[1] is None or x[1] is None:
        fail("channel counts must be known")
    return (g[1], x[1] // groups, *tuple(attrs["kernel"]))


def _weight_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    x_shape, g_shape = in_shapes
    im2col = _Im2col(x_shape, attrs, dtype)
    groups = im2col.groups
    n = x_shape[0]
    cog = out_shape[0] // groups
    g_split = (n, groups, cog, g_shape[2] * g_shape[3])
    per_sample = np.empty((n, groups, cog, im2col.matrix.shape[2]), dtype=dtype)

    def conv2d_weight_grad(x: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
        # per sample g (G, Cout/G, Ho*Wo) @ columns^T (G, Ho*Wo, K), summed over the batch
        np.matmul(g.reshape(g_split), im2col(x).transpose(0, 1, 3, 2), out=per_sample)
        np.sum(per_sample, axis=0, out=out.reshape(groups, cog, -1))

    return conv2d_weight_grad


def _weight_grad_grad(c: GradContext) -> list:
    x, g = c.inputs
    return [c.apply("conv2d_input_grad", g, c.gout, x, **c.attrs), c.apply("conv2d", x, c.gout, **c.attrs)]


register(OpDef("conv2d_weight_grad", _weight_grad_shape, _weight_grad_kernel, grad=_weight_grad_grad, arity=2,
               label_attrs=LABEL, doc="Gradient of conv2d for its weight: windows of x against the output gradient.",
               attr_schema=WINDOW_ATTRS))
