"""The exporter table: one small function per graphdl op, emitting the ONNX nodes that compute it.

Each exporter gets the ``ExportContext`` and the node; its final ONNX node produces the value named
after the graphdl node. ``TRAINING_ONLY`` lists ops that never appear in an inference plan (gradient
ops, optimizer updates, counters, schedules); a test checks that every registered op is in exactly
one of the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, ExportError

Exporter = Callable[[ExportContext, Node], None]
EXPORTERS: dict[str, Exporter] = {}

#: Ops that exist only in training plans: gradients, optimizer updates, step counters, schedules.
TRAINING_ONLY = frozenset({
    "relu_grad", "conv2d_input_grad", "conv2d_weight_grad", "embedding_grad", "unpick", "unslice",
    "softmax_cross_entropy_grad", "batch_norm_grad", "batch_norm_stats", "max_pool2d_grad", "max_pool2d_pick",
    "avg_pool2d_grad", "broadcast_like", "sum_to", "expand_like", "sgd_update", "adam_update", "rmsprop_update",
    "adagrad_update", "increment", "learning_rate", "matmul_sgd_update",
})


def exporter(*ops: str) -> Callable[[Exporter], Exporter]:
    def register(fn: Exporter) -> Exporter:
        for op in ops:
            EXPORTERS[op] = fn
        return fn

    return register


def _same(op_type: str) -> Exporter:
    def export(ctx: ExportContext, n: Node) -> None:
        ctx.emit(op_type, n.inputs, n.name)

    return export


for _op, _onnx in {
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "neg": "Neg", "exp": "Exp", "log": "Log",
    "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "greater": "Greater", "greater_equal": "GreaterOrEqual",
    "less": "Less", "less_equal": "LessOrEqual", "equal": "Equal", "where": "Where", "sqrt": "Sqrt", "pow": "Pow",
    "sign": "Sign", "abs": "Abs", "maximum": "Max", "minimum": "Min", "erf": "Erf",
}.items():
    EXPORTERS[_op] = _same(_onnx)


@exporter("scalar")
def _scalar(ctx: ExportContext, n: Node) -> None:
    ctx.initializer(n.name, np.asarray(n.attr["value"], dtype=n.dtype))


@exporter("clip")
def _clip(ctx: ExportContext, n: Node) -> None:
    a, dt = n.attr, ctx.dtype(n.inputs[0])
    lo = "" if a.get("min") is None else ctx.const(n, "min", a["min"], dt)
    hi = "" if a.get("max") is None else ctx.const(n, "max", a["max"], dt)
    ctx.emit("Clip", [n.inputs[0], lo, hi], n.name)


@exporter("leaky_relu")
def _leaky_relu(ctx: ExportContext, n: Node) -> None:
    ctx.emit("LeakyRelu", n.inputs, n.name, alpha=float(n.attr.get("negative_slope", 0.01)))


@exporter("elu")
def _elu(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Elu", n.inputs, n.name, alpha=float(n.attr.get("alpha", 1.0)))


@exporter("gelu")
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


@exporter("silu")
def _silu(ctx: ExportContext, n: Node) -> None:
    s = ctx.helper(n, "sigmoid", "Sigmoid", n.inputs)
    ctx.emit("Mul", [n.inputs[0], s], n.name)


@exporter("softplus")
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


@exporter("softmax", "log_softmax")
def _softmax(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Softmax" if n.op == "softmax" else "LogSoftmax", n.inputs, n.name, axis=int(n.attr.get("axis", -1)))


@exporter("linear")
def _linear(ctx: ExportContext, n: Node) -> None:
    x = ctx.nodes[n.inputs[0]]
    if len(x.shape) == 2:
        ctx.emit("Gemm", n.inputs, n.name)
    elif len(n.inputs) == 3:
        y = ctx.helper(n, "matmul", "MatMul", n.inputs[:2])
        ctx.emit("Add", [y, n.inputs[2]], n.name)
    else:
        ctx.emit("MatMul", n.inputs, n.name)


@exporter("matmul")
def _matmul(ctx: ExportContext, n: Node) -> None:
    a, b = (ctx.nodes[i] for i in n.inputs)
    ta, tb = bool(n.attr.get("transpose_a")), bool(n.attr.get("transpose_b"))
    if len(a.shape) == len(b.shape) == 2:
        ctx.emit("Gemm", n.inputs, n.name, transA=int(ta), transB=int(tb))
        return
    ins = list(n.inputs)
    for k, (flag, node) in enumerate(((ta, a), (tb, b))):
        if flag:
            perm = [*range(len(node.shape) - 2), len(node.shape) - 1, len(node.shape) - 2]
            ins[k] = ctx.helper(n, f"transpose{k}", "Transpose", [ins[k]], perm=perm)
    ctx.emit("MatMul", ins, n.name)


def _window(n: Node) -> dict:
    a = n.attr
    pt, pb, pl, pr = a.get("padding", (0, 0, 0, 0))
    out = {"kernel_shape": list(a["kernel"]), "strides": list(a.get("stride", (1, 1))), "pads": [pt, pl, pb, pr]}
    dilation = list(a.get("dilation", (1, 1)))
    if dilation != [1, 1]:
        out["dilations"] = dilation
    return out


@exporter("conv2d")
def _conv2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    attrs["dilations"] = list(n.attr.get("dilation", (1, 1)))
    ctx.emit("Conv", n.inputs, n.name, group=int(n.attr.get("groups", 1)), **attrs)


@exporter("max_pool2d")
def _max_pool2d(ctx: ExportContext, n: Node) -> None:
    ctx.emit("MaxPool", n.inputs, n.name, **_window(n))


@exporter("avg_pool2d")
def _avg_pool2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    if "dilations" in attrs and ctx.opset < 19:
        raise ExportError(f"{n.describe()}: a dilated AveragePool needs opset 19 or later, not {ctx.opset}")
    ctx.emit("AveragePool", n.inputs, n.name, count_include_pad=1, **attrs)


def _exact_eps(ctx: ExportContext, x: str, eps: float) -> bool:
    """Whether ONNX's float32 epsilon attribute holds ``eps`` exactly enough for ``x``'s dtype."""
    return ctx.dtype(x) != np.float64 or float(np.float32(eps)) == eps


@exporter("batch_norm")
def _batch_norm(ctx: ExportContext, n: Node) -> None:
    # Inference mode, explicitly: the running statistics; ONNX's momentum weighs the old running value.
    a = n.attr
    eps = float(a.get("eps", 1e-5))
    if _exact_eps(ctx, n.inputs[0], eps):
        ctx.emit("BatchNormalization", n.inputs, n.name, epsilon=eps, momentum=1.0 - float(a.get("momentum", 0.1)))
        return
    # float64 with an epsilon float32 cannot hold: graphdl's own arithmetic, in double precision
    x, gamma, beta, mean, var = n.inputs
    col = ctx.const(n, "column", [-1] + [1] * (len(n.shape) - 2))
    gamma, beta, mean, var = (ctx.helper(n, f"{k}_column", "Reshape", [v, col])
                              for k, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)))
    std = ctx.helper(n, "std", "Sqrt", [ctx.helper(n, "var_eps", "Add", [var, ctx.const(n, "eps", eps, np.float64)])])
    scale = ctx.helper(n, "scale", "Div", [gamma, std])
    shift = ctx.helper(n, "shift", "Sub", [beta, ctx.helper(n, "mean_scaled", "Mul", [mean, scale])])
    ctx.emit("Add", [ctx.helper(n, "scaled", "Mul", [x, scale]), shift], n.name)


@exporter("layer_norm")
def _layer_norm(ctx: ExportContext, n: Node) -> None:
    k, x = n.attr["ndim"], ctx.nodes[n.inputs[0]]
    eps = float(n.attr.get("eps", 1e-5))
    ins = list(n.inputs)
    if not _exact_eps(ctx, x.name, eps):  # as for batch_norm: spelled out in double precision
        axes = ctx.const(n, "axes", list(range(len(x.shape) - k, len(x.shape))))
        d = ctx.helper(n, "centered", "Sub", [x.name, ctx.helper(n, "mean", "ReduceMean", [x.name, axes])])
        var = ctx.helper(n, "var", "ReduceMean", [ctx.helper(n, "square", "Mul", [d, d]), axes])
        var_eps = ctx.helper(n, "var_eps", "Add", [var, ctx.const(n, "eps", eps, np.float64)])
        std = ctx.helper(n, "std", "Sqrt", [var_eps])
        if len(ins) == 1:
            ctx.emit("Div", [d, std], n.name)
            return
        y = ctx.helper(n, "normalised", "Div", [d, std])
        ctx.emit("Add", [ctx.helper(n, "scaled", "Mul", [y, ins[1]]), ins[2]], n.name)
        return
    if len(ins) == 1:  # ONNX needs a scale: ones, a constant (multiplying by 1 changes no value)
        ins.append(ctx.const(n, "scale", np.ones(x.shape[len(x.shape) - k:]), x.dtype))
    stash = 11 if x.dtype == "float64" else 1  # statistics in the input's precision
    ctx.emit("LayerNormalization", ins, n.name, axis=-k, epsilon=eps, stash_type=stash)


@exporter("dropout")
def _dropout(ctx: ExportContext, n: Node) -> None:
    # Inference plans never drop: training_mode is written as false explicitly.
    ratio = ctx.const(n, "ratio", n.attr.get("p", 0.5), ctx.dtype(n.inputs[0]))
    mode = ctx.const(n, "training_mode", False, np.bool_)
    ctx.emit("Dropout", [n.inputs[0], ratio, mode], n.name)


@exporter("reshape")
def _reshape(ctx: ExportContext, n: Node) -> None:
    target = [-1 if d is None or d == -1 else int(d) for d in n.attr["shape"]]
    ctx.emit("Reshape", [n.inputs[0], ctx.const(n, "shape", target)], n.name)


@exporter("transpose")
def _transpose(ctx: ExportContext, n: Node) -> None:
    axes = n.attr.get("axes")
    nd = len(n.shape)
    perm = list(reversed(range(nd))) if axes is None else [int(a) % nd for a in axes]
    ctx.emit("Transpose", n.inputs, n.name, perm=perm)


@exporter("concat")
def _concat(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Concat", n.inputs, n.name, axis=int(n.attr.get("axis", 1)))


@exporter("slice")
def _slice(ctx: ExportContext, n: Node) -> None:
    a = n.attr
    ins = [n.inputs[0], ctx.const(n, "starts", [a["start"]]), ctx.const(n, "ends", [a["stop"]]),
           ctx.const(n, "axes", [a["axis"]])]
    ctx.emit("Slice", ins, n.name)


@exporter("sum", "mean", "max")
def _reduce(ctx: ExportContext, n: Node) -> None:
    op_type = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[n.op]
    axis, keep = n.attr.get("axis"), int(bool(n.attr.get("keepdims", False)))
    axes = None if axis is None else ([axis] if isinstance(axis, int) else list(axis))
    axes_as_input = op_type == "ReduceSum" or ctx.opset >= 18
    if axes is None:
        ctx.emit(op_type, n.inputs, n.name, keepdims=keep)
    elif axes_as_input:
        ctx.emit(op_type, [n.inputs[0], ctx.const(n, "axes", axes)], n.name, keepdims=keep)
    else:
        ctx.emit(op_type, n.inputs, n.name, axes=axes, keepdims=keep)


@exporter("embedding")
def _embedding(ctx: ExportContext, n: Node) -> None:
    ids, table = n.inputs
    ctx.emit("Gather", [table, ids], n.name, axis=0)


@exporter("pick")
def _pick(ctx: ExportContext, n: Node) -> None:
    x, labels = n.inputs
    axis = ctx.const(n, "axis", [1])
    idx = ctx.helper(n, "index", "Unsqueeze", [labels, axis])
    picked = ctx.helper(n, "gather", "GatherElements", [x, idx], axis=1)
    ctx.emit("Squeeze", [picked, axis], n.name)


@exporter("softmax_cross_entropy")
def _softmax_cross_entropy(ctx: ExportContext, n: Node) -> None:
    ctx.emit("SoftmaxCrossEntropyLoss", n.inputs, n.name, reduction="mean")


@exporter("mse")
def _mse(ctx: ExportContext, n: Node) -> None:
    d = ctx.helper(n, "diff", "Sub", n.inputs)
    sq = ctx.helper(n, "square", "Mul", [d, d])
    ctx.emit("ReduceMean", [sq], n.name, keepdims=0)

