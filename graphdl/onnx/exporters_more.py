"""ONNX exporters of conv1d / conv_transpose2d, the PyTorch activations and the class losses' ops;
registered into ``EXPORTERS`` when graphdl/onnx/exporters.py imports this module.

Activations whose ONNX form holds float32 attributes (HardSigmoid, Selu, Celu) are spelled out in the
input's precision, as the Gelu exporter does.
"""

from __future__ import annotations

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext
from graphdl.onnx.exporters import exporter
from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE


@exporter("conv1d")
def _conv1d(ctx: ExportContext, n: Node) -> None:
    a = n.attr
    ctx.emit("Conv", n.inputs, n.name, kernel_shape=list(a["kernel"]), strides=list(a.get("stride", (1,))),
             pads=list(a.get("padding", (0, 0))), dilations=list(a.get("dilation", (1,))),
             group=int(a.get("groups", 1)))


@exporter("conv_transpose2d")
def _conv_transpose2d(ctx: ExportContext, n: Node) -> None:
    a = n.attr
    pt, pb, pl, pr = a.get("padding", (0, 0, 0, 0))
    ctx.emit("ConvTranspose", n.inputs, n.name, kernel_shape=list(a["kernel"]), strides=list(a.get("stride", (1, 1))),
             pads=[pt, pl, pb, pr], output_padding=list(a.get("output_padding", (0, 0))),
             dilations=list(a.get("dilation", (1, 1))), group=int(a.get("groups", 1)))


# -- activations ---------------------------------------------------------------------------------
def _c(ctx: ExportContext, n: Node, part: str, value: float) -> str:
    return ctx.const(n, part, value, ctx.dtype(n.inputs[0]))


def _hard_unit(ctx: ExportContext, n: Node, x: str) -> str:
    """min(max(x / 6 + 1/2, 0), 1) in x's precision."""
    y = ctx.helper(n, "affine", "Add", [ctx.helper(n, "scaled", "Mul", [x, _c(ctx, n, "sixth", 1.0 / 6.0)]),
                                        _c(ctx, n, "half", 0.5)])
    return ctx.helper(n, "clipped", "Clip", [y, _c(ctx, n, "zero", 0.0), _c(ctx, n, "one", 1.0)])


@exporter("relu6")
def _relu6(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Clip", [n.inputs[0], _c(ctx, n, "zero", 0.0), _c(ctx, n, "six", 6.0)], n.name)


@exporter("hardsigmoid")
def _hardsigmoid(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Identity", [_hard_unit(ctx, n, n.inputs[0])], n.name)


@exporter("hardswish")
def _hardswish(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Mul", [n.inputs[0], _hard_unit(ctx, n, n.inputs[0])], n.name)


def _elu_form(ctx: ExportContext, n: Node, alpha: float, scale: float, input_scale: float) -> None:
    """scale * max(x, 0) + alpha * scale * (exp(input_scale * min(x, 0)) - 1)."""
    x = n.inputs[0]
    neg = ctx.helper(n, "neg_part", "Min", [x, _c(ctx, n, "zero", 0.0)])
    e = ctx.helper(n, "exp", "Exp", [ctx.helper(n, "neg_scaled", "Mul", [neg, _c(ctx, n, "input_scale", input_scale)])])
    tail = ctx.helper(n, "tail", "Mul", [ctx.helper(n, "expm1", "Sub", [e, _c(ctx, n, "one", 1.0)]),
                                         _c(ctx, n, "alpha_scale", alpha * scale)])
    pos = ctx.helper(n, "pos", "Mul", [ctx.helper(n, "pos_part", "Max", [x, _c(ctx, n, "zero2", 0.0)]),
                                       _c(ctx, n, "scale", scale)])
    ctx.emit("Add", [pos, tail], n.name)


@exporter("selu")
def _selu(ctx: ExportContext, n: Node) -> None:
    _elu_form(ctx, n, SELU_ALPHA, SELU_SCALE, 1.0)


@exporter("celu")
def _celu(ctx: ExportContext, n: Node) -> None:
    alpha = float(n.attr.get("alpha", 1.0))
    _elu_form(ctx, n, alpha, 1.0, 1.0 / alpha)


@exporter("mish")
def _mish(ctx: ExportContext, n: Node) -> None:
    sp = ctx.helper(n, "softplus", "Softplus", [n.inputs[0]])
    ctx.emit("Mul", [n.inputs[0], ctx.helper(n, "tanh", "Tanh", [sp])], n.name)


@exporter("softsign")
def _softsign(ctx: ExportContext, n: Node) -> None:
    d = ctx.helper(n, "denominator", "Add", [ctx.helper(n, "abs", "Abs", n.inputs), _c(ctx, n, "one", 1.0)])
    ctx.emit("Div", [n.inputs[0], d], n.name)


@exporter("logsigmoid")
def _logsigmoid(ctx: ExportContext, n: Node) -> None:
    x = n.inputs[0]
    e = ctx.helper(n, "exp", "Exp", [ctx.helper(n, "neg_abs", "Neg", [ctx.helper(n, "abs", "Abs", [x])])])
    log1p = ctx.helper(n, "log1p", "Log", [ctx.helper(n, "one_plus", "Add", [e, _c(ctx, n, "one", 1.0)])])
    ctx.emit("Sub", [ctx.helper(n, "neg_part", "Min", [x, _c(ctx, n, "zero", 0.0)]), log1p], n.name)


# -- class losses ------------------------------------------------------------------------------------
def _label_weights(ctx: ExportContext, n: Node, labels: str, weight: str | None, dtype: np.dtype) -> tuple[str, str]:
    """(safe labels, per-sample weight): ignored labels read class 0 and weigh 0."""
    ignore = n.attr.get("ignore_index")
    if ignore is None:
        safe, valid = labels, None
    else:
        hit = ctx.helper(n, "ignored", "Equal", [labels, ctx.const(n, "ignore_index", ignore, ctx.dtype(labels))])
        zero = ctx.const(n, "zero_label", 0, ctx.dtype(labels))
        safe = ctx.helper(n, "safe_labels", "Where", [hit, zero, labels])
        valid = ctx.helper(n, "valid", "Cast", [ctx.helper(n, "kept", "Not", [hit])],
                           to=ctx.onnx.helper.np_dtype_to_tensor_dtype(dtype))
    if weight is not None:
        w = ctx.helper(n, "class_weight", "Gather", [weight, safe], axis=0)
        w = w if valid is None else ctx.helper(n, "weight_kept", "Mul", [w, valid])
    elif valid is not None:
        w = valid
    else:
        w = ctx.helper(n, "ones", "Expand", [ctx.const(n, "one", 1.0, dtype),
                                             ctx.helper(n, "label_shape", "Shape", [labels])])
    return safe, w


@exporter("class_nll")
def _class_nll(ctx: ExportContext, n: Node) -> None:
    lp, labels = n.inputs[0], n.inputs[1]
    safe, w = _label_weights(ctx, n, labels, n.inputs[2] if len(n.inputs) == 3 else None, ctx.dtype(lp))
    axis = ctx.const(n, "axis", [1])
    picked = ctx.helper(n, "picked", "GatherElements", [lp, ctx.helper(n, "index", "Unsqueeze", [safe, axis])],
                        axis=1)
    picked = ctx.helper(n, "picked_row", "Squeeze", [picked, axis])
    ctx.emit("Mul", [ctx.helper(n, "neg", "Neg", [picked]), w], n.name)


@exporter("class_weight")
def _class_weight(ctx: ExportContext, n: Node) -> None:
    _, w = _label_weights(ctx, n, n.inputs[1], n.inputs[2] if len(n.inputs) == 3 else None, np.dtype(n.dtype))
    ctx.emit("Identity", [w], n.name)
