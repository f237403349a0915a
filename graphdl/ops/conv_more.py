"""conv1d and conv_transpose2d, built on the conv2d family's kernels (graphdl/ops/conv.py) without new ones.

conv1d is conv2d on images of unit height: its three ops (forward, input and weight gradient) wrap the
2-d ops' shape rules and kernels from the op table, viewing every (N, C, L) array as (N, C, 1, L).
conv_transpose2d is conv2d's input gradient used as a forward op, so its gradients are conv2d (for the
input) and conv2d's weight gradient with the roles of input and output gradient swapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.attrs import Int, Ints
from graphdl.errors import GraphError
from graphdl.ops.api import _int, _node
from graphdl.ops.window import WINDOW_ATTRS
from graphdl.registry import GradContext, OpDef, fail, get_op, register
from graphdl.tensor import Tensor

LABEL_1D = ("kernel", "stride", "padding", "dilation", "groups")


CONV1D_ATTRS = {"kernel": Ints(1, low=1), "stride": Ints(1, default=(1,), low=1),
                "dilation": Ints(1, default=(1,), low=1), "padding": Ints(2, default=(0, 0), low=0),
                "groups": Int(1, low=1)}


def _up(shape: tuple) -> tuple:
    """(N, C, L) -> (N, C, 1, L); a weight (O, I, k) -> (O, I, 1, k); other ranks unchanged."""
    return (*shape[:2], 1, shape[2]) if len(shape) == 3 else tuple(shape)


def _attrs_2d(attrs: dict[str, Any]) -> dict[str, Any]:
    """A conv1d node's attributes as those of the equivalent unit-height conv2d."""
    (k,), (s,), (d,) = attrs["kernel"], attrs.get("stride", (1,)), attrs.get("dilation", (1,))
    left, right = attrs.get("padding", (0, 0))
    return {"kernel": (1, k), "stride": (1, s), "padding": (0, 0, left, right), "dilation": (1, d),
            "groups": attrs.get("groups", 1)}


def _check_1d(shapes: tuple, attrs: dict[str, Any]) -> None:
    for name, n in (("kernel", 1), ("stride", 1), ("dilation", 1), ("padding", 2)):
        if name in attrs and len(tuple(attrs[name])) != n:
            fail(f"{name} {attrs[name]} must hold {n} value(s) for a 1-d convolution")
    for s in shapes[:2]:
        if len(s) != 3:
            fail(f"conv1d needs 3-d (batch, channels, length) inputs and (out, in/groups, k) weights, got {s}",
                 "reshape the input to (N, C, L)")


def _lifted(op2d: str) -> dict[str, Any]:
    """Shape rule, kernel factory and workspace rule of the 1-d version of the conv2d-family op ``op2d``."""

    def lift(attrs: dict, in_shapes: tuple, out_shape: tuple) -> tuple:
        return _attrs_2d(attrs), tuple(_up(s) for s in in_shapes), _up(out_shape)

    def shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
        _check_1d(shapes, attrs)
        out = get_op(op2d).shape(tuple(_up(s) for s in shapes), _attrs_2d(attrs))
        return (*out[:2], out[3])

    def kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
               workspace: list[np.ndarray] | None = None):
        op = get_op(op2d)
        extra = {} if op.workspace is None else {"workspace": workspace}
        k2 = op.kernel(*lift(attrs, in_shapes, out_shape), dtype, **extra)

        def conv1d(*arrays: np.ndarray) -> None:
            k2(*(a.reshape(_up(a.shape)) for a in arrays))

        return conv1d

    def workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list:
        rule = get_op(op2d).workspace
        return [] if rule is None else rule(*lift(attrs, in_shapes, out_shape), dtype)

    return {"shape": shape, "kernel": kernel, "workspace": workspace}


def _conv1d_grad(c: GradContext) -> list:
    x, w = c.inputs[0], c.inputs[1]
    grads = [c.apply("conv1d_input_grad", c.gout, w, x, **c.attrs), c.apply("conv1d_weight_grad", x, c.gout, **c.attrs)]
    if len(c.inputs) == 3:
        grads.append(c.apply("sum", c.gout, axis=(0, 2)))
    return grads


register(OpDef("conv1d", **_lifted("conv2d"), grad=_conv1d_grad, label_attrs=LABEL_1D,
               doc="Cross-correlation of (N, C, L) x with W (out, in/groups, k), plus bias per output channel.",
               attr_schema=CONV1D_ATTRS))
register(OpDef(
    "conv1d_input_grad", **_lifted("conv2d_input_grad"), arity=3, nondiff=(2,), shape_only=(2,), label_attrs=LABEL_1D,
    grad=lambda c: [c.apply("conv1d", c.gout, c.inputs[1], **c.attrs),
                    c.apply("conv1d_weight_grad", c.gout, c.inputs[0], **c.attrs), None],
    doc="Gradient of conv1d for its input; `like` gives the input's shape.", attr_schema=CONV1D_ATTRS,
))
register(OpDef(
    "conv1d_weight_grad", **_lifted("conv2d_weight_grad"), arity=2, label_attrs=LABEL_1D,
    grad=lambda c: [c.apply("conv1d_input_grad", c.inputs[1], c.gout, c.inputs[0], **c.attrs),
                    c.apply("conv1d", c.inputs[0], c.gout, **c.attrs)],
    doc="Gradient of conv1d for its weight.", attr_schema=CONV1D_ATTRS,
))


# -- transposed 2-d convolution -------------------------------------------------------------------
def _conv_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes of the conv2d whose input gradient this transposed convolution is."""
    return {k: attrs[k] for k in ("kernel", "stride", "padding", "dilation", "groups") if k in attrs}


def _transpose_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, w = shapes[0], shapes[1]
    if len(x) != 4 or len(w) != 4 or x[2] is None or x[3] is None:
        fail(f"conv_transpose2d needs a 4-d NCHW input of known height and width and a 4-d weight "
             f"(in, out/groups, kh, kw), got {x} and {w}")
    kernel, groups = tuple(attrs["kernel"]), attrs.get("groups", 1)
    stride, dilation = tuple(attrs.get("stride", (1, 1))), tuple(attrs.get("dilation", (1, 1)))
    pt, pb, pl, pr = attrs.get("padding", (0, 0, 0, 0))
    oh, ow = attrs.get("output_padding", (0, 0))
    if not (0 <= oh < stride[0] and 0 <= ow < stride[1]):
        # PyTorch also allows output_padding < dilation; then conv2d of the output no longer has x's size.
        fail(f"output_padding {(oh, ow)} must be smaller than the stride {stride}")
    if x[1] is not None and x[1] != w[0]:
        fail(f"input has {x[1]} channels but the weight {w} expects {w[0]}", f"make the input have {w[0]} channels")
    h = (x[2] - 1) * stride[0] - pt - pb + dilation[0] * (kernel[0] - 1) + oh + 1
    wd = (x[3] - 1) * stride[1] - pl - pr + dilation[1] * (kernel[1] - 1) + ow + 1
    if h < 1 or wd < 1:
        fail(f"the output would be {h}x{wd}: padding {(pt, pb, pl, pr)} is too large")
    out = (x[0], w[1] * groups, h, wd)
    get_op("conv2d_input_grad").shape((x, w, out), _conv_attrs(attrs))  # the same checks as conv2d's
    if len(shapes) == 3 and tuple(shapes[2]) != (out[1],):
        fail(f"bias has shape {shapes[2]}, expected ({out[1]},)")
    return out


def _transpose_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list:
    rule = get_op("conv2d_input_grad").workspace
    return [] if rule is None else rule(_conv_attrs(attrs), (*in_shapes[:2], out_shape), out_shape, dtype)


def _transpose_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                      workspace: list[np.ndarray] | None = None):
    x_shape, w_shape = in_shapes[0], in_shapes[1]
    op = get_op("conv2d_input_grad")
    extra = {} if op.workspace is None else {"workspace": workspace}
    k = op.kernel(_conv_attrs(attrs), (x_shape, w_shape, out_shape), out_shape, dtype, **extra)
    co = out_shape[1]

    def conv_transpose2d(x: np.ndarray, w: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        k(x, w, out, out)  # the third input only gives the shape (conv2d_input_grad's shape_only `like`)
        if len(rest) == 2:
            np.add(out, rest[0].reshape(co, 1, 1), out=out)

    return conv_transpose2d


def _transpose_grad(c: GradContext) -> list:
    x, w = c.inputs[0], c.inputs[1]
    a = _conv_attrs(c.attrs)
    grads = [c.apply("conv2d", c.gout, w, **a), c.apply("conv2d_weight_grad", c.gout, x, **a)]
    if len(c.inputs) == 3:
        grads.append(c.apply("sum", c.gout, axis=(0, 2, 3)))
    return grads


register(OpDef(
    "conv_transpose2d", _transpose_shape, _transpose_kernel, grad=_transpose_grad, workspace=_transpose_workspace,
    label_attrs=("kernel", "stride", "padding", "output_padding", "dilation", "groups"),
    doc="Transposed 2-d convolution of NCHW x with W (in, out/groups, kh, kw), plus bias (PyTorch's "
        "conv_transpose2d: the input gradient of the conv2d with the same arguments).",
    attr_schema={**WINDOW_ATTRS, "output_padding": Ints(2, default=(0, 0), low=0)},
))


def _ints(v: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    """An int for all n entries, or n ints, else GraphError naming ``what``."""
    entries = (v,) * n if not isinstance(v, list | tuple) else tuple(v)
    if len(entries) != n or any(isinstance(i, bool) or not isinstance(i, int | np.integer) for i in entries):
        raise GraphError(f"{what} must be an int or {n} ints, got {v!r:.40}")
    return tuple(int(i) for i in entries)


def conv1d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1, padding: int | Sequence[int] = 0,
           dilation: int = 1, groups: int = 1) -> Tensor:
    """1-d cross-correlation of (N, C, L) x with W (out, in/groups, k), as torch.nn.functional.conv1d
    (padding: an int for both ends, or (left, right))."""
    x, w = _node(x, "conv1d: x"), _node(w, "conv1d: w")
    if len(w.shape) != 3:
        raise GraphError(f"conv1d: w must be 3-d (out, in/groups, k), got {w.shape}")
    attrs = {"kernel": (w.shape[2],), "stride": _ints(stride, 1, "stride"), "padding": _ints(padding, 2, "padding"),
             "dilation": _ints(dilation, 1, "dilation"), "groups": _int(groups, "conv1d: groups")}
    return x.graph.apply("conv1d", [x, w] + ([b] if b is not None else []), attrs)


def conv_transpose2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int | Sequence[int] = 1,
                     padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> Tensor:
    """Transposed convolution with torch.nn.functional.conv_transpose2d's arguments; W is (in, out/groups, kh, kw)."""
    x, w = _node(x, "conv_transpose2d: x"), _node(w, "conv_transpose2d: w")
    ph, pw = _ints(padding, 2, "padding")
    attrs = {"kernel": tuple(w.shape[2:]), "stride": _ints(stride, 2, "stride"), "padding": (ph, ph, pw, pw),
             "output_padding": _ints(output_padding, 2, "output_padding"), "dilation": _ints(dilation, 2, "dilation"),
             "groups": _int(groups, "conv_transpose2d: groups")}
    return x.graph.apply("conv_transpose2d", [x, w] + ([b] if b is not None else []), attrs)
