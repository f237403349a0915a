"""ONNX exporters of the layer ops: linear and matmul, convolution, pooling, normalisation, dropout,
embedding, attention and the losses; ``graphdl.onnx.exporters`` merges ``NN_EXPORTERS`` into its table.

Mode-dependent layers are written in inference mode (BatchNorm reads its running statistics, Dropout is
the identity). Where ONNX's float32 epsilon cannot hold a float64 model's, the normalisation is spelled
out in double precision.
"""

from __future__ import annotations

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, Exporter, ExportError
from graphdl.onnx.tables import registrar

NN_EXPORTERS: dict[str, Exporter] = {}
_exporter = registrar(NN_EXPORTERS)


@_exporter("linear")
def _linear(ctx: ExportContext, n: Node) -> None:
    if len(ctx.shape(n.inputs[0])) == 2:
        ctx.emit("Gemm", n.inputs, n.name)
    elif len(n.inputs) == 3:
        y = ctx.helper(n, "matmul", "MatMul", n.inputs[:2])
        ctx.emit("Add", [y, n.inputs[2]], n.name)
    else:
        ctx.emit("MatMul", n.inputs, n.name)


@_exporter("matmul")
def _matmul(ctx: ExportContext, n: Node) -> None:
    a, b = (ctx.shape(i) for i in n.inputs)
    ta, tb = bool(n.attr.get("transpose_a")), bool(n.attr.get("transpose_b"))
    if len(a) == len(b) == 2:
        ctx.emit("Gemm", n.inputs, n.name, transA=int(ta), transB=int(tb))
        return
    ins = list(n.inputs)
    for k, (flag, shape) in enumerate(((ta, a), (tb, b))):
        if flag:
            perm = [*range(len(shape) - 2), len(shape) - 1, len(shape) - 2]
            ins[k] = ctx.helper(n, f"transpose{k}", "Transpose", [ins[k]], perm=perm)
    ctx.emit("MatMul", ins, n.name)


def _window(n: Node, padding: tuple[int, ...] | None = None) -> dict:
    a = n.attr
    pt, pb, pl, pr = a.get("padding", (0, 0, 0, 0)) if padding is None else padding
    out = {"kernel_shape": list(a["kernel"]), "strides": list(a.get("stride", (1, 1))), "pads": [pt, pl, pb, pr]}
    dilation = list(a.get("dilation", (1, 1)))
    if dilation != [1, 1]:
        out["dilations"] = dilation
    return out


@_exporter("conv2d")
def _conv2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    attrs["dilations"] = list(n.attr.get("dilation", (1, 1)))
    group = int(n.attr.get("groups", 1))
    if tuple(n.attr.get("pool_blocks", (1, 1))) != (1, 1):  # never in an inference compile (passes.layout)
        raise ExportError(f"{n.describe()} has a blocked output (pool_blocks), which only training plans use")
    if not n.attr.get("channel_major"):
        ctx.emit("Conv", n.inputs, n.name, group=group, **attrs)
        return
    # (C, N, H, W) images, as graphdl's layout pass keeps them: ONNX's Conv is NCHW, so swap the first two
    # axes on the way in and out (ONNX Runtime cancels the pairs this leaves between layers)
    swap = [1, 0, 2, 3]
    x = ctx.helper(n, "nchw", "Transpose", [n.inputs[0]], perm=swap)
    y = ctx.emit("Conv", [x, *n.inputs[1:]], n.name, outputs=[ctx.fresh(f"{n.name}/nchw_out")], group=group, **attrs)
    ctx.emit("Transpose", [y], ctx.fresh(f"{n.name}/channel_major"), outputs=[n.name], perm=swap)


@_exporter("max_pool2d")
def _max_pool2d(ctx: ExportContext, n: Node) -> None:
    # ceil_mode as the explicit extra padding graphdl uses (ONNX's ceil_mode lacks PyTorch's rule that the
    # last window starts inside the input); padding never wins a max
    ctx.emit("MaxPool", n.inputs, n.name, **_window(n, _pooling_padding(ctx, n)))


def _pooling_padding(ctx: ExportContext, n: Node) -> tuple[int, int, int, int]:
    from graphdl.ops.pool import _effective

    return tuple(_effective(n.attr, ctx.nodes[n.inputs[0]].shape)["padding"])


@_exporter("avg_pool2d")
def _avg_pool2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    if "dilations" in attrs and ctx.opset < 19:
        raise ExportError(f"{n.describe()}: a dilated AveragePool needs opset 19 or later, not {ctx.opset}")
    user, eff = tuple(n.attr.get("padding", (0, 0, 0, 0))), _pooling_padding(ctx, n)
    if not n.attr.get("count_include_pad", True):  # ONNX then divides by the real inputs, as PyTorch
        ctx.emit("AveragePool", n.inputs, n.name, count_include_pad=0, **_window(n, eff))
    elif eff == user:
        ctx.emit("AveragePool", n.inputs, n.name, count_include_pad=1, **attrs)
    else:  # user padding counts, ceil_mode's extra padding does not: pad explicitly, count real inputs
        pt, pb, pl, pr = user
        pads = ctx.const(n, "pads", [0, 0, pt, pl, 0, 0, pb, pr])
        x = ctx.helper(n, "padded", "Pad", [n.inputs[0], pads, ctx.const(n, "zero", 0.0, ctx.dtype(n.inputs[0]))])
        extra = (0, eff[1] - pb, 0, eff[3] - pr)
        ctx.emit("AveragePool", [x], n.name, count_include_pad=0, **_window(n, extra))


def _exact_eps(ctx: ExportContext, x: str, eps: float) -> bool:
    """Whether ONNX's float32 epsilon attribute holds ``eps`` exactly enough for ``x``'s dtype."""
    return ctx.dtype(x) != np.float64 or float(np.float32(eps)) == eps


@_exporter("batch_norm")
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


@_exporter("layer_norm")
def _layer_norm(ctx: ExportContext, n: Node) -> None:
    k, x, shape = n.attr["ndim"], n.inputs[0], ctx.shape(n.inputs[0])
    eps = float(n.attr.get("eps", 1e-5))
    ins = list(n.inputs)
    if not _exact_eps(ctx, x, eps):  # as for batch_norm: spelled out in double precision
        axes = ctx.const(n, "axes", list(range(len(shape) - k, len(shape))))
        d = ctx.helper(n, "centered", "Sub", [x, ctx.helper(n, "mean", "ReduceMean", [x, axes])])
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
        ins.append(ctx.const(n, "scale", np.ones(shape[len(shape) - k:]), ctx.dtype(x)))
    stash = 11 if ctx.dtype(x) == np.float64 else 1  # statistics in the input's precision
    ctx.emit("LayerNormalization", ins, n.name, axis=-k, epsilon=eps, stash_type=stash)


@_exporter("group_norm")
def _group_norm(ctx: ExportContext, n: Node) -> None:
    # ONNX's InstanceNormalization over (N, groups, rest) is the group statistics; the per-channel scale and
    # shift follow on the original shape (opset 18's GroupNormalization scaled per group until opset 21)
    x, shape, groups = n.inputs[0], ctx.shape(n.inputs[0]), n.attr["groups"]
    eps, dtype = float(n.attr.get("eps", 1e-5)), ctx.dtype(n.inputs[0])
    grouped = ctx.helper(n, "grouped", "Reshape", [x, ctx.const(n, "grouped_shape", [0, groups, -1])])
    if _exact_eps(ctx, x, eps):
        ones, zeros = ctx.const(n, "ones", np.ones(groups), dtype), ctx.const(n, "zeros", np.zeros(groups), dtype)
        normal = ctx.helper(n, "normalised", "InstanceNormalization", [grouped, ones, zeros], epsilon=eps)
    else:  # float64 with an epsilon float32 cannot hold: spelled out in double precision
        axes = ctx.const(n, "axes", [2])
        d = ctx.helper(n, "centered", "Sub", [grouped, ctx.helper(n, "mean", "ReduceMean", [grouped, axes])])
        var = ctx.helper(n, "var", "ReduceMean", [ctx.helper(n, "square", "Mul", [d, d]), axes])
        std = ctx.helper(n, "std", "Sqrt", [ctx.helper(n, "var_eps", "Add", [var, ctx.const(n, "eps", eps, dtype)])])
        normal = ctx.helper(n, "normalised", "Div", [d, std])
    back = [0, *shape[1:]]
    if len(n.inputs) == 1:
        ctx.emit("Reshape", [normal, ctx.const(n, "shape", back)], n.name)
        return
    y = ctx.helper(n, "ungrouped", "Reshape", [normal, ctx.const(n, "shape", back)])
    col = ctx.const(n, "channel_column", [shape[1], *([1] * (len(shape) - 2))])
    gamma = ctx.helper(n, "gamma", "Reshape", [n.inputs[1], col])
    beta = ctx.helper(n, "beta", "Reshape", [n.inputs[2], col])
    ctx.emit("Add", [ctx.helper(n, "scaled", "Mul", [y, gamma]), beta], n.name)


#: graphdl's resize2d modes as ONNX Resize attributes (PyTorch's coordinate rules; half_pixel, not
#: pytorch_half_pixel, which maps a single output pixel to 0 where PyTorch maps it to the centre).
_RESIZE_MODES = {
    ("nearest", False): {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ("nearest-exact", False): {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                               "nearest_mode": "round_prefer_ceil"},
    ("bilinear", False): {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    ("bilinear", True): {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
}


@_exporter("resize2d")
def _resize2d(ctx: ExportContext, n: Node) -> None:
    x, a = n.inputs[0], n.attr
    attrs = dict(_RESIZE_MODES[(a.get("mode", "nearest"), bool(a.get("align_corners", False)))])
    roi = ""
    scale = (a.get("scale_h"), a.get("scale_w"))
    if None not in scale:  # the scale sets the coordinate mapping, as PyTorch's scale_factor
        scales = ctx.const(n, "scales", [*([] if ctx.opset >= 18 else [1.0, 1.0]), *scale], np.float32)
        if ctx.opset >= 18:
            attrs["axes"] = [2, 3]
        ctx.emit("Resize", [x, roi, scales], n.name, **attrs)
        return
    if ctx.opset >= 18:
        sizes = ctx.const(n, "sizes", list(a["size"]))
        attrs["axes"] = [2, 3]
    else:  # sizes of every axis: the batch and channels from the input's shape
        lead = ctx.helper(n, "lead", "Slice", [ctx.helper(n, "shape", "Shape", [x]), ctx.const(n, "zero", [0]),
                                               ctx.const(n, "two", [2])])
        sizes = ctx.helper(n, "sizes", "Concat", [lead, ctx.const(n, "size", list(a["size"]))], axis=0)
    ctx.emit("Resize", [x, roi, "", sizes], n.name, **attrs)


@_exporter("dropout")
def _dropout(ctx: ExportContext, n: Node) -> None:
    # Inference plans never drop: training_mode is written as false explicitly.
    ratio = ctx.const(n, "ratio", n.attr.get("p", 0.5), ctx.dtype(n.inputs[0]))
    mode = ctx.const(n, "training_mode", False, np.bool_)
    ctx.emit("Dropout", [n.inputs[0], ratio, mode], n.name)


@_exporter("conv1d")
def _conv1d(ctx: ExportContext, n: Node) -> None:
    a = n.attr
    left, right = a.get("padding", (0, 0))
    ctx.emit("Conv", n.inputs, n.name, kernel_shape=list(a["kernel"]), strides=list(a.get("stride", (1,))),
             pads=[left, right], dilations=list(a.get("dilation", (1,))), group=int(a.get("groups", 1)))


@_exporter("conv_transpose2d")
def _conv_transpose2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    attrs["dilations"] = list(n.attr.get("dilation", (1, 1)))
    ctx.emit("ConvTranspose", n.inputs, n.name, group=int(n.attr.get("groups", 1)),
             output_padding=list(n.attr.get("output_padding", (0, 0))), **attrs)


@_exporter("embedding")
def _embedding(ctx: ExportContext, n: Node) -> None:
    ids, table = n.inputs
    ctx.emit("Gather", [table, ids], n.name, axis=0)


@_exporter("attention")
def _attention(ctx: ExportContext, n: Node) -> None:
    # softmax(q k^T * scale + mask) v from standard ops (opset 17 has no Attention); the log-sum-exp output
    # (read only by the gradient) is written under "<node>:1".
    q, k, v, *mask = n.inputs
    q_shape, dt = ctx.shape(q), ctx.dtype(q)
    nd = len(q_shape)
    kt = ctx.helper(n, "kt", "Transpose", [k], perm=[*range(nd - 2), nd - 1, nd - 2])
    s = ctx.helper(n, "scores", "MatMul", [q, kt])
    scale = n.attr.get("scale")
    scale = 1.0 / float(np.sqrt(q_shape[-1])) if scale is None else float(scale)
    s = ctx.helper(n, "scaled", "Mul", [s, ctx.const(n, "scale", scale, dt)])
    if n.attr.get("causal"):
        L, S = q_shape[-2], ctx.shape(k)[-2]
        bias = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf)
        s = ctx.helper(n, "causal", "Add", [s, ctx.const(n, "causal_bias", bias, dt)])
    if mask:
        if ctx.dtype(mask[0]) == np.bool_:
            s = ctx.helper(n, "masked", "Where", [mask[0], s, ctx.const(n, "neg_inf", -np.inf, dt)])
        else:
            s = ctx.helper(n, "masked", "Add", [s, mask[0]])
    p = ctx.helper(n, "softmax", "Softmax", [s], axis=-1)
    ctx.emit("MatMul", [p, v], n.name)
    ctx.emit("ReduceLogSumExp", [s, ctx.const(n, "axes", [-1])], ctx.fresh(f"{n.name}/lse"), outputs=[f"{n.name}:1"],
             keepdims=0)


# -- losses ---------------------------------------------------------------------------------
@_exporter("pick")
def _pick(ctx: ExportContext, n: Node) -> None:
    x, labels = n.inputs
    axis = ctx.const(n, "axis", [1])
    idx = ctx.helper(n, "index", "Unsqueeze", [labels, axis])
    picked = ctx.helper(n, "gather", "GatherElements", [x, idx], axis=1)
    ctx.emit("Squeeze", [picked, axis], n.name)


@_exporter("softmax_cross_entropy")
def _softmax_cross_entropy(ctx: ExportContext, n: Node) -> None:
    ctx.emit("SoftmaxCrossEntropyLoss", n.inputs, n.name, reduction="mean")


@_exporter("mse")
def _mse(ctx: ExportContext, n: Node) -> None:
    d = ctx.helper(n, "diff", "Sub", n.inputs)
    sq = ctx.helper(n, "square", "Mul", [d, d])
    ctx.emit("ReduceMean", [sq], n.name, keepdims=0)


@_exporter("class_nll")
def _class_nll(ctx: ExportContext, n: Node) -> None:
    ignore = n.attr.get("ignore_index")
    extra = {} if ignore is None else {"ignore_index": int(ignore)}
    ctx.emit("NegativeLogLikelihoodLoss", n.inputs, n.name, reduction="none", **extra)


@_exporter("class_weight")
def _class_weight(ctx: ExportContext, n: Node) -> None:
    # weight[y] (1 without weights), 0 where y is ignore_index
    _, labels, *weight = n.inputs
    dt, ignore = np.dtype(n.dtype), n.attr.get("ignore_index")
    if ignore is None:
        valid = ctx.helper(n, "valid", "Equal", [labels, labels])
    else:
        valid = ctx.helper(n, "valid", "Not", [ctx.helper(n, "ignored", "Equal", [
            labels, ctx.const(n, "ignore_index", int(ignore), ctx.dtype(labels))])])
    mask = ctx.helper(n, "mask", "Cast", [valid], to=ctx.onnx.helper.np_dtype_to_tensor_dtype(dt))
    if not weight:
        ctx.emit("Identity", [mask], n.name)
        return
    safe = ctx.helper(n, "safe", "Mul", [labels, ctx.helper(n, "valid_int", "Cast", [valid], to=ctx.onnx.helper.
                                                             np_dtype_to_tensor_dtype(ctx.dtype(labels)))])
    picked = ctx.helper(n, "picked", "Gather", [weight[0], safe], axis=0)
    ctx.emit("Mul", [picked, mask], n.name)
