"""ONNX exporters of the elementwise ops that are one ONNX node each, and of the activations;
``graphdl.onnx.exporters`` merges ``ELEMENTWISE_EXPORTERS`` into its table (before the math family,
whose dtype-promoting arithmetic replaces the one-node versions of add, sub, mul, div, pow, maximum,
minimum, where and the comparisons).

Where ONNX's operator holds float32 constants or attributes (tanh-GELU, CELU, HardSigmoid), a float64
model gets the formula spelled out in double precision.
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, Exporter, ExportError, same
from graphdl.onnx.tables import registrar

ELEMENTWISE_EXPORTERS: dict[str, Exporter] = {}
_exporter = registrar(ELEMENTWISE_EXPORTERS)


# (arithmetic, comparisons, where, maximum and minimum: math_exporters.py, with dtype promotion)
for _op, _onnx in {
    "neg": "Neg", "exp": "Exp", "log": "Log", "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
    "sqrt": "Sqrt", "sign": "Sign", "abs": "Abs", "erf": "Erf",
}.items():
    ELEMENTWISE_EXPORTERS[_op] = same(_onnx)


@_exporter("clip")
def _clip(ctx: ExportContext, n: Node) -> None:
    a, dt = n.attr, ctx.dtype(n.inputs[0])
    lo = "" if a.get("min") is None else ctx.const(n, "min", a["min"], dt)
    hi = "" if a.get("max") is None else ctx.const(n, "max", a["max"], dt)
    ctx.emit("Clip", [n.inputs[0], lo, hi], n.name)


@_exporter("leaky_relu")
def _leaky_relu(ctx: ExportContext, n: Node) -> None:
    ctx.emit("LeakyRelu", n.inputs, n.name, alpha=float(n.attr.get("negative_slope", 0.01)))


@_exporter("elu")
def _elu(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Elu", n.inputs, n.name, alpha=float(n.attr.get("alpha", 1.0)))


@_exporter("gelu")
def _gelu(ctx: ExportContext, n: Node) -> None:
    if ctx.opset < 20:
        raise ExportError(f"{n.describe()}: ONNX Gelu needs opset 20 or later, not {ctx.opset}")
    x, approximate = n.inputs[0], n.attr.get("approximate", "none")
    if approximate == "tanh" and ctx.dtype(x) == np.float64:
        # ONNX's Gelu function body holds float32 constants: spell it out in double precision
        dt = np.float64
        cube = ctx.helper(n, "cube", "Mul", [ctx.helper(n, "square", "Mul", [x, x]), x])
        cubic = ctx.helper(n, "cubic", "Mul", [cube, ctx.const(n, "c", 0.044715, dt)])
        inner = ctx.helper(n, "inner", "Add", [x, cubic])
        t = ctx.helper(n, "tanh", "Tanh", [ctx.helper(n, "scaled", "Mul", [inner, ctx.const(
            n, "sqrt_2_over_pi", math.sqrt(2.0 / math.pi), dt)])])
        half_x = ctx.helper(n, "half_x", "Mul", [x, ctx.const(n, "half", 0.5, dt)])
        ctx.emit("Mul", [half_x, ctx.helper(n, "one_plus", "Add", [t, ctx.const(n, "one", 1.0, dt)])], n.name)
        return
    ctx.emit("Gelu", n.inputs, n.name, approximate=approximate)


@_exporter("silu")
def _silu(ctx: ExportContext, n: Node) -> None:
    s = ctx.helper(n, "sigmoid", "Sigmoid", n.inputs)
    ctx.emit("Mul", [n.inputs[0], s], n.name)


@_exporter("softplus")
def _softplus(ctx: ExportContext, n: Node) -> None:
    # log(1 + exp(beta x)) / beta, and x where beta x > threshold (ONNX Softplus has neither parameter)
    x, dt = n.inputs[0], ctx.dtype(n.inputs[0])
    beta, threshold = float(n.attr.get("beta", 1.0)), float(n.attr.get("threshold", 20.0))
    bx = x if beta == 1.0 else ctx.helper(n, "scaled", "Mul", [x, ctx.const(n, "beta", beta, dt)])
    sp = ctx.helper(n, "softplus", "Softplus", [bx])
    if beta != 1.0:
        sp = ctx.helper(n, "unscaled", "Div", [sp, ctx.const(n, "beta", beta, dt)])
    if math.isinf(threshold):
        ctx.emit("Identity", [sp], n.name)
        return
    linear = ctx.helper(n, "linear", "Greater", [bx, ctx.const(n, "threshold", threshold, dt)])
    ctx.emit("Where", [linear, x, sp], n.name)


@_exporter("softmax", "log_softmax")
def _softmax(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Softmax" if n.op == "softmax" else "LogSoftmax", n.inputs, n.name, axis=int(n.attr.get("axis", -1)))


# -- activations from several ONNX nodes, or with float64 spelled out ------------------------
@_exporter("relu6")
def _relu6(ctx: ExportContext, n: Node) -> None:
    dt = ctx.dtype(n.inputs[0])
    ctx.emit("Clip", [n.inputs[0], ctx.const(n, "min", 0.0, dt), ctx.const(n, "max", 6.0, dt)], n.name)


@_exporter("hardsigmoid")
def _hardsigmoid(ctx: ExportContext, n: Node) -> None:
    # min(max(x / 6 + 1/2, 0), 1), in the input's precision (HardSigmoid's alpha is a float32 attribute)
    x, dt = n.inputs[0], ctx.dtype(n.inputs[0])
    y = ctx.helper(n, "affine", "Add", [ctx.helper(n, "scaled", "Mul", [x, ctx.const(n, "sixth", 1.0 / 6.0, dt)]),
                                        ctx.const(n, "half", 0.5, dt)])
    ctx.emit("Clip", [y, ctx.const(n, "zero", 0.0, dt), ctx.const(n, "one", 1.0, dt)], n.name)


@_exporter("hardswish")
def _hardswish(ctx: ExportContext, n: Node) -> None:
    ctx.emit("HardSwish", n.inputs, n.name)


@_exporter("selu")
def _selu(ctx: ExportContext, n: Node) -> None:
    from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE

    ctx.emit("Selu", n.inputs, n.name, alpha=SELU_ALPHA, gamma=SELU_SCALE)


@_exporter("celu")
def _celu(ctx: ExportContext, n: Node) -> None:
    alpha, x, dt = float(n.attr.get("alpha", 1.0)), n.inputs[0], ctx.dtype(n.inputs[0])
    if dt != np.float64:
        ctx.emit("Celu", n.inputs, n.name, alpha=alpha)
        return
    # ONNX's Celu is float32 only: max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    zero = ctx.const(n, "zero", 0.0, dt)
    e = ctx.helper(n, "exp", "Exp", [ctx.helper(n, "scaled", "Div", [x, ctx.const(n, "alpha", alpha, dt)])])
    neg = ctx.helper(n, "neg", "Mul", [ctx.helper(n, "expm1", "Sub", [e, ctx.const(n, "one", 1.0, dt)]),
                                      ctx.const(n, "alpha", alpha, dt)])
    ctx.emit("Add", [ctx.helper(n, "pos", "Max", [x, zero]), ctx.helper(n, "negpart", "Min", [neg, zero])], n.name)


@_exporter("mish")
def _mish(ctx: ExportContext, n: Node) -> None:
    if ctx.opset < 18:
        t = ctx.helper(n, "tanh", "Tanh", [ctx.helper(n, "softplus", "Softplus", n.inputs)])
        ctx.emit("Mul", [n.inputs[0], t], n.name)
        return
    ctx.emit("Mish", n.inputs, n.name)


@_exporter("softsign")
def _softsign(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Softsign", n.inputs, n.name)


@_exporter("logsigmoid")
def _logsigmoid(ctx: ExportContext, n: Node) -> None:
    # log(sigmoid(x)) = -softplus(-x)
    sp = ctx.helper(n, "softplus", "Softplus", [ctx.helper(n, "neg", "Neg", n.inputs)])
    ctx.emit("Neg", [sp], n.name)
