"""The exporter table: one small function per graphdl op, emitting the ONNX nodes that compute it.

Each exporter gets the ``ExportContext`` and the node; its final ONNX node produces the value named
after the graphdl node. ``TRAINING_ONLY`` lists ops that never appear in an inference plan (gradient
ops, optimizer updates, counters, schedules); a test checks that every registered op is in exactly
one of the two.
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, Exporter, ExportError, export_body, registrar, same
from graphdl.ops.common import norm_axes

EXPORTERS: dict[str, Exporter] = {}

#: Ops that exist only in training plans: gradients, optimizer updates, step counters, schedules.
TRAINING_ONLY = frozenset({
    "relu_grad", "conv2d_input_grad", "conv2d_weight_grad", "embedding_grad", "unpick", "unslice",
    "softmax_cross_entropy_grad", "batch_norm_grad", "batch_norm_stats",
    "batch_norm_backward", "batch_norm_update", "max_pool2d_grad", "max_pool2d_pick",
    # blocked pooling exists in training plans only: an inference compile turns it back into max_pool2d
    "max_pool_blocks", "max_pool_blocks_grad", "max_pool_blocks_pick",
    "avg_pool2d_grad", "broadcast_like", "sum_to", "sgd_update", "adam_update", "rmsprop_update",
    "adagrad_update", "increment", "learning_rate", "matmul_sgd_update", "gather_adjoint", "remap_adjoint",
    "class_nll_grad", "conv1d_input_grad", "conv1d_weight_grad",
    # data-parallel training: gradient all-reduce in buckets
    "allreduce_start", "allreduce_wait", "bucket_slice",
})


exporter = registrar(EXPORTERS)
_same = same


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
    if len(ctx.shape(n.inputs[0])) == 2:
        ctx.emit("Gemm", n.inputs, n.name)
    elif len(n.inputs) == 3:
        y = ctx.helper(n, "matmul", "MatMul", n.inputs[:2])
        ctx.emit("Add", [y, n.inputs[2]], n.name)
    else:
        ctx.emit("MatMul", n.inputs, n.name)


@exporter("matmul")
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


@exporter("conv2d")
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


@exporter("max_pool2d")
def _max_pool2d(ctx: ExportContext, n: Node) -> None:
    # ceil_mode as the explicit extra padding graphdl uses (ONNX's ceil_mode lacks PyTorch's rule that the
    # last window starts inside the input); padding never wins a max
    ctx.emit("MaxPool", n.inputs, n.name, **_window(n, _pooling_padding(ctx, n)))


def _pooling_padding(ctx: ExportContext, n: Node) -> tuple[int, int, int, int]:
    from graphdl.ops.pool import _effective

    return tuple(_effective(n.attr, ctx.nodes[n.inputs[0]].shape)["padding"])


@exporter("avg_pool2d")
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



# -- structural ops -------------------------------------------------------------------------
@exporter("expand_dims")
def _expand_dims(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Unsqueeze", [n.inputs[0], ctx.const(n, "axes", list(norm_axes(n.attr["axis"], len(n.shape))))], n.name)


@exporter("squeeze")
def _squeeze(ctx: ExportContext, n: Node) -> None:
    x = ctx.shape(n.inputs[0])
    axis = n.attr.get("axis")
    axes = [i for i, d in enumerate(x) if d == 1] if axis is None else list(norm_axes(axis, len(x)))
    ctx.emit("Squeeze", [n.inputs[0], ctx.const(n, "axes", axes)], n.name)


@exporter("broadcast_to")
def _broadcast_to(ctx: ExportContext, n: Node) -> None:
    # Expand broadcasts both ways: a 1 (for None, "keep the input's size") leaves an axis as it is
    shape = [1 if d is None else int(d) for d in n.attr["shape"]]
    ctx.emit("Expand", [n.inputs[0], ctx.const(n, "shape", shape)], n.name)


@exporter("reshape_like")
def _reshape_like(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Reshape", [n.inputs[0], ctx.helper(n, "shape", "Shape", [n.inputs[1]])], n.name)


@exporter("expand_like")
def _expand_like(ctx: ExportContext, n: Node) -> None:
    # also in inference plans: a recurrent layer's zero initial state of the batch's size
    ctx.emit("Expand", [n.inputs[0], ctx.helper(n, "shape", "Shape", [n.inputs[1]])], n.name)


@exporter("tril", "triu")
def _tri(ctx: ExportContext, n: Node) -> None:
    k = ctx.const(n, "k", int(n.attr.get("k", 0)))
    ctx.emit("Trilu", [n.inputs[0], k], n.name, upper=int(n.op == "triu"))


@exporter("one_hot")
def _one_hot(ctx: ExportContext, n: Node) -> None:
    depth = ctx.const(n, "depth", int(n.attr["num_classes"]))
    values = ctx.const(n, "values", [0, 1], np.dtype(n.dtype))
    ctx.emit("OneHot", [n.inputs[0], depth, values], n.name, axis=-1)


@exporter("einsum")
def _einsum(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Einsum", n.inputs, n.name, equation=n.attr["equation"])


@exporter("gather")
def _gather(ctx: ExportContext, n: Node) -> None:
    ctx.emit("GatherElements", n.inputs, n.name, axis=int(n.attr["axis"]))


@exporter("scatter", "scatter_add")
def _scatter(ctx: ExportContext, n: Node) -> None:
    x, index = n.inputs[:2]
    if len(n.inputs) == 3:
        src = n.inputs[2]
    elif None not in ctx.shape(index):  # a number written everywhere index points
        src = ctx.const(n, "src", np.full(ctx.shape(index), n.attr.get("value", 0.0)), ctx.dtype(x))
    else:
        value = ctx.const(n, "value", n.attr.get("value", 0.0), ctx.dtype(x))
        src = ctx.helper(n, "src", "Expand", [value, ctx.helper(n, "index_shape", "Shape", [index])])
    ctx.emit("ScatterElements", [x, index, src], n.name, axis=int(n.attr["axis"]),
             reduction="add" if n.op == "scatter_add" else "none")


@exporter("flip")
def _flip(ctx: ExportContext, n: Node) -> None:
    axes = list(norm_axes(n.attr.get("axis"), len(n.shape)))
    k = len(axes)
    ins = [n.inputs[0], ctx.const(n, "starts", [-1] * k), ctx.const(n, "ends", [-(2**63)] * k),
           ctx.const(n, "axes", axes), ctx.const(n, "steps", [-1] * k)]
    ctx.emit("Slice", ins, n.name)


@exporter("roll")
def _roll(ctx: ExportContext, n: Node) -> None:
    xs = ctx.shape(n.inputs[0])
    shift, axis = n.attr["shift"], n.attr["axis"]
    pairs = list(zip((shift,) if isinstance(shift, int) else shift, (axis,) if isinstance(axis, int) else axis))
    total: dict[int, int] = {}
    for s, a in pairs:  # shifts on one axis add up, as in NumPy
        total[a % len(xs)] = total.get(a % len(xs), 0) + int(s)
    cur = n.inputs[0]
    for k, (a, s) in enumerate(sorted(total.items())):
        size = xs[a]
        if size is None:
            raise ExportError(f"{n.describe()}: rolling axis {a}, whose size is unknown, is not exported")
        s %= max(size, 1)
        ax = ctx.const(n, f"axis{k}", [a])
        tail = ctx.helper(n, f"tail{k}", "Slice", [cur, ctx.const(n, f"cut{k}", [size - s]),
                                                   ctx.const(n, f"end{k}", [size]), ax])
        head = ctx.helper(n, f"head{k}", "Slice", [cur, ctx.const(n, f"zero{k}", [0]),
                                                   ctx.const(n, f"cut{k}_", [size - s]), ax])
        last = k == len(total) - 1
        cur = (ctx.emit("Concat", [tail, head], n.name, axis=a) if last
               else ctx.helper(n, f"rolled{k}", "Concat", [tail, head], axis=a))
    if not total:
        ctx.emit("Identity", [cur], n.name)


@exporter("tile")
def _tile(ctx: ExportContext, n: Node) -> None:
    reps = [int(r) for r in n.attr["reps"]]
    src = n.inputs[0]
    lead = len(reps) - len(ctx.shape(src))
    if lead > 0:
        src = ctx.helper(n, "lead", "Unsqueeze", [src, ctx.const(n, "lead_axes", list(range(lead)))])
    reps = [1] * max(-lead, 0) + reps
    ctx.emit("Tile", [src, ctx.const(n, "reps", reps)], n.name)


@exporter("repeat")
def _repeat(ctx: ExportContext, n: Node) -> None:
    xs = ctx.shape(n.inputs[0])
    (axis,) = norm_axes(n.attr["axis"], len(xs))
    r = n.attr["repeats"]
    size = xs[axis]
    if not isinstance(r, int):  # one count per element: gather the input positions
        counts = np.asarray(r, dtype=np.int64)
        index = ctx.const(n, "index", np.repeat(np.arange(len(counts)), counts))
        ctx.emit("Gather", [n.inputs[0], index], n.name, axis=axis)
        return
    if size is None or None in xs[axis + 1:]:
        raise ExportError(f"{n.describe()}: repeat needs the sizes from axis {axis} on known")
    # (.., n, ..) -> (.., n, 1, ..) -> (.., n, r, ..) -> (.., n * r, ..)
    up = ctx.helper(n, "unsqueeze", "Unsqueeze", [n.inputs[0], ctx.const(n, "axes", [axis + 1])])
    mult = [1] * (len(xs) + 1)
    mult[axis + 1] = r
    expanded = ctx.helper(n, "tile", "Tile", [up, ctx.const(n, "reps", mult)])
    target = [0] * axis + [size * r] + [int(d) for d in xs[axis + 1:]]
    ctx.emit("Reshape", [expanded, ctx.const(n, "target", target)], n.name)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@exporter("pad")
def _pad(ctx: ExportContext, n: Node) -> None:
    nd = len(n.shape)
    pad = [int(p) for p in n.attr["pad"]]
    begins, ends = [0] * nd, [0] * nd
    for k in range(len(pad) // 2):  # PyTorch order: (left, right) of the last axis first
        begins[nd - 1 - k], ends[nd - 1 - k] = pad[2 * k], pad[2 * k + 1]
    mode = _PAD_MODES[n.attr.get("mode", "constant")]
    if mode == "wrap" and ctx.opset < 19:
        raise ExportError(f"{n.describe()}: circular padding needs opset 19 or later, not {ctx.opset}")
    ins = [n.inputs[0], ctx.const(n, "pads", begins + ends)]
    if mode == "constant":
        ins.append(ctx.const(n, "value", n.attr.get("value", 0.0), ctx.dtype(n.inputs[0])))
    ctx.emit("Pad", ins, n.name, mode=mode)


# -- more activations -----------------------------------------------------------------------
@exporter("relu6")
def _relu6(ctx: ExportContext, n: Node) -> None:
    dt = ctx.dtype(n.inputs[0])
    ctx.emit("Clip", [n.inputs[0], ctx.const(n, "min", 0.0, dt), ctx.const(n, "max", 6.0, dt)], n.name)


@exporter("hardsigmoid")
def _hardsigmoid(ctx: ExportContext, n: Node) -> None:
    # min(max(x / 6 + 1/2, 0), 1), in the input's precision (HardSigmoid's alpha is a float32 attribute)
    x, dt = n.inputs[0], ctx.dtype(n.inputs[0])
    y = ctx.helper(n, "affine", "Add", [ctx.helper(n, "scaled", "Mul", [x, ctx.const(n, "sixth", 1.0 / 6.0, dt)]),
                                        ctx.const(n, "half", 0.5, dt)])
    ctx.emit("Clip", [y, ctx.const(n, "zero", 0.0, dt), ctx.const(n, "one", 1.0, dt)], n.name)


@exporter("hardswish")
def _hardswish(ctx: ExportContext, n: Node) -> None:
    ctx.emit("HardSwish", n.inputs, n.name)


@exporter("selu")
def _selu(ctx: ExportContext, n: Node) -> None:
    from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE

    ctx.emit("Selu", n.inputs, n.name, alpha=SELU_ALPHA, gamma=SELU_SCALE)


@exporter("celu")
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


@exporter("mish")
def _mish(ctx: ExportContext, n: Node) -> None:
    if ctx.opset < 18:
        t = ctx.helper(n, "tanh", "Tanh", [ctx.helper(n, "softplus", "Softplus", n.inputs)])
        ctx.emit("Mul", [n.inputs[0], t], n.name)
        return
    ctx.emit("Mish", n.inputs, n.name)


@exporter("softsign")
def _softsign(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Softsign", n.inputs, n.name)


@exporter("logsigmoid")
def _logsigmoid(ctx: ExportContext, n: Node) -> None:
    # log(sigmoid(x)) = -softplus(-x)
    sp = ctx.helper(n, "softplus", "Softplus", [ctx.helper(n, "neg", "Neg", n.inputs)])
    ctx.emit("Neg", [sp], n.name)


# -- multi-output, convolutions, class losses -------------------------------------------------
@exporter("split")
def _split(ctx: ExportContext, n: Node) -> None:
    sizes = ctx.const(n, "sizes", list(n.attr["sizes"]))
    ctx.emit("Split", [n.inputs[0], sizes], n.name, outputs=list(n.refs), axis=int(n.attr["axis"]))


@exporter("conv1d")
def _conv1d(ctx: ExportContext, n: Node) -> None:
    a = n.attr
    left, right = a.get("padding", (0, 0))
    ctx.emit("Conv", n.inputs, n.name, kernel_shape=list(a["kernel"]), strides=list(a.get("stride", (1,))),
             pads=[left, right], dilations=list(a.get("dilation", (1,))), group=int(a.get("groups", 1)))


@exporter("conv_transpose2d")
def _conv_transpose2d(ctx: ExportContext, n: Node) -> None:
    attrs = _window(n)
    attrs["dilations"] = list(n.attr.get("dilation", (1, 1)))
    ctx.emit("ConvTranspose", n.inputs, n.name, group=int(n.attr.get("groups", 1)),
             output_padding=list(n.attr.get("output_padding", (0, 0))), **attrs)


@exporter("class_nll")
def _class_nll(ctx: ExportContext, n: Node) -> None:
    ignore = n.attr.get("ignore_index")
    extra = {} if ignore is None else {"ignore_index": int(ignore)}
    ctx.emit("NegativeLogLikelihoodLoss", n.inputs, n.name, reduction="none", **extra)


@exporter("class_weight")
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


@exporter("attention")
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


TRAINING_ONLY = TRAINING_ONLY | {"attention_grad", "allreduce_start", "allreduce_wait", "bucket_slice"}
# The math, indexing and reduction ops (and dtype-promoting versions of the arithmetic above).
from graphdl.onnx.math_exporters import MATH_EXPORTERS, MATH_TRAINING_ONLY  # noqa: E402

EXPORTERS.update(MATH_EXPORTERS)
TRAINING_ONLY = TRAINING_ONLY | MATH_TRAINING_ONLY


@exporter("scan")
def _scan(ctx: ExportContext, n: Node) -> None:
    """ONNX Scan: the body becomes its sub-graph (node names prefixed by the scan's), captures are read
    from the outer scope through Identity nodes, and ``reverse`` scans inputs and stacks outputs backwards
    (so ys stay aligned with xs, as in graphdl)."""
    a = n.attr
    nc, nx = a["carries"], a["xs"]
    if nx == 0:
        raise ExportError(f"{n.describe()}: a scan without xs (length={a['length']}) has no ONNX Scan form; "
                          "pass the steps as xs")
    body = export_body(ctx, n, a["body"], EXPORTERS)
    ny = len(a["body"].outputs) - nc
    ctx.emit("Scan", n.inputs[:nc + nx], n.name, outputs=list(n.refs), body=body, num_scan_inputs=nx,
             scan_input_directions=[int(a["reverse"])] * nx, scan_output_directions=[int(a["reverse"])] * ny)
