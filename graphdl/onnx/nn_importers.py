"""ONNX importers of the layer ops: linear algebra (Gemm, MatMul, Einsum), convolution, pooling,
normalisation, dropout and the class losses (graphdl/ops/nn.py, conv.py, pool.py, losses.py);
graphdl/onnx/importers.py merges ``NN_IMPORTERS`` into its table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.graph import Graph, Tensor
from graphdl.ir import NodeKind
from graphdl.onnx.import_context import ImportContext, Importer, clean_name
from graphdl.onnx.tables import registrar

NN_IMPORTERS: dict[str, Importer] = {}
_importer = registrar(NN_IMPORTERS)


# -- linear algebra -------------------------------------------------------------------------
@_importer("Gemm")
def _gemm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = bool(a.get("transA", 0)), bool(a.get("transB", 0))
    w = ctx.array(node.input[1])
    c = ctx.array(node.input[2]) if ctx.has(2) else None
    fresh_w = node.input[1] not in ctx.values and ctx.readers[node.input[1]] == 1
    if (w is not None and w.ndim == 2 and fresh_w and not ta and alpha == 1.0 and beta == 1.0
            and (not ctx.has(2) or (c is not None and c.size == w.shape[0 if tb else 1] and c.ndim <= 2))):
        # A Linear layer: W stored as (in, out), transposed once here if the file has (out, in)
        ins = [ctx.input(0), ctx.input(1, NodeKind.PARAM, np.ascontiguousarray(w.T) if tb else w)]
        if ctx.has(2):
            ins.append(ctx.input(2, NodeKind.PARAM, c.reshape(-1)))
        return [ctx.apply("linear", ins)]
    if not ctx.has(2) and alpha == 1.0:
        return [ctx.apply("matmul", [ctx.input(0), ctx.input(1)], {"transpose_a": ta, "transpose_b": tb})]
    y = ctx.part("matmul", [ctx.input(0), ctx.input(1)], {"transpose_a": ta, "transpose_b": tb})
    if alpha != 1.0:
        y = ctx.part("mul", [y, alpha], suffix="alpha") if ctx.has(2) else ctx.apply("mul", [y, alpha])
    if not ctx.has(2):
        return [y]
    cc = ctx.input(2)
    if beta != 1.0:
        cc = ctx.part("mul", [cc, beta], suffix="beta")
    return [ctx.apply("add", [y, cc])]


@_importer("MatMul")
def _matmul(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    w = ctx.array(node.input[1])
    if w is not None and w.ndim == 2 and len(x.shape) >= 2:
        return [ctx.apply("linear", [x, ctx.input(1, NodeKind.PARAM)])]
    y = ctx.input(1)
    if len(x.shape) < 2 or len(y.shape) < 2:
        raise ctx.refuse(f"MatMul of {len(x.shape)}-d and {len(y.shape)}-d operands; graphdl's matmul needs 2-d or "
                         "more (reshape vectors to matrices)")
    return [ctx.apply("matmul", [x, y])]


@_importer("Einsum")
def _einsum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops import contract

    ins = [ctx.input(i) for i in range(len(node.input))]
    try:
        eq = contract.normalize(a["equation"], [len(t.shape) for t in ins])
    except ValueError as e:
        raise ctx.refuse(f"equation {a['equation']!r}: {e}") from None
    return [ctx.apply("einsum", ins, {"equation": eq})]


# -- convolution, pooling, normalisation --------------------------------------------------
def _pads(ctx: ImportContext, a: dict[str, Any], x: Tensor, kernel: list[int], strides: list[int],
          dilations: list[int]) -> tuple[int, int, int, int]:
    """graphdl's (top, bottom, left, right) from ONNX pads (top, left, bottom, right) or auto_pad."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        p = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        return p[0], p[2], p[1], p[3]
    if auto not in ("SAME_UPPER", "SAME_LOWER") or None in x.shape[2:]:
        raise ctx.refuse(f"auto_pad={auto} needs known image sizes")
    out = []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return out[0][0], out[0][1], out[1][0], out[1][1]


def _window(ctx: ImportContext, a: dict[str, Any], x: Tensor, kernel: list[int]) -> dict[str, Any]:
    if len(x.shape) != 4 or len(kernel) != 2:
        raise ctx.refuse(f"graphdl imports 2-d convolution and pooling only (input {x.shape}, kernel {kernel})")
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    attrs = {"kernel": tuple(kernel), "stride": tuple(strides), "dilation": tuple(dilations),
             "padding": _pads(ctx, a, x, kernel, strides, dilations)}
    if a.get("ceil_mode", 0):
        # PyTorch's rounding, which onnxruntime's kernels follow too: a last window that would start in the
        # bottom/right padding is dropped (ONNX's shape-inference formula keeps it; the runtimes do not)
        attrs["ceil_mode"] = True
    return attrs


@_importer("Conv")
def _conv(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, w = ctx.input(0), ctx.input(1, NodeKind.PARAM)
    if len(x.shape) == 3:  # 1-d: graphdl's conv1d
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ctx.refuse("auto_pad SAME for a 1-d convolution is not supported")
        left, right = list(a.get("pads", [0, 0])) if a.get("auto_pad", "NOTSET") == "NOTSET" else [0, 0]
        attrs = {"kernel": (int(w.shape[2]),), "stride": tuple(a.get("strides", [1])), "padding": (left, right),
                 "dilation": tuple(a.get("dilations", [1])), "groups": int(a.get("group", 1))}
        ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
        return [ctx.apply("conv1d", ins, attrs)]
    attrs = _window(ctx, a, x, list(a.get("kernel_shape", w.shape[2:])))
    attrs["groups"] = int(a.get("group", 1))
    ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    return [ctx.apply("conv2d", ins, attrs)]


@_importer("MaxPool", "AveragePool")
def _pool(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    attrs = _window(ctx, a, x, list(a["kernel_shape"]))
    if node.op_type == "MaxPool":
        if a.get("storage_order", 0):
            raise ctx.refuse("storage_order=1 is not supported")
        return [ctx.apply("max_pool2d", [x], attrs)]
    if not a.get("count_include_pad", 0) and any(attrs["padding"]):
        attrs["count_include_pad"] = False  # the mean of the real inputs only, as ONNX's default
    if attrs["dilation"] != (1, 1):
        raise ctx.refuse("dilated AveragePool is not supported")
    del attrs["dilation"]
    return [ctx.apply("avg_pool2d", [x], attrs)]


@_importer("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    op = "mean" if node.op_type == "GlobalAveragePool" else "max"
    return [ctx.apply(op, [x], {"axis": tuple(range(2, len(x.shape))), "keepdims": True})]


@_importer("BatchNormalization")
def _batch_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("training_mode", 0):
        raise ctx.refuse("training_mode=1 (export the model in inference mode; graphdl switches modes itself)")
    ins = [ctx.input(0), ctx.input(1, NodeKind.PARAM), ctx.input(2, NodeKind.PARAM), ctx.input(3, NodeKind.STATE),
           ctx.input(4, NodeKind.STATE)]
    # ONNX's momentum weighs the running value; graphdl's (PyTorch's) weighs the batch statistic
    attrs = {"eps": float(a.get("epsilon", 1e-5)), "momentum": 1.0 - float(a.get("momentum", 0.9))}
    return [ctx.apply("batch_norm", ins, attrs)]


@_importer("LayerNormalization")
def _layer_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", -1)) % len(x.shape)
    ins = [x, ctx.input(1, NodeKind.PARAM)] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    if len(ins) == 2:  # graphdl's layer_norm takes both or neither: a zero shift changes no value
        ins.append(ctx.graph.stored(ctx.graph.fresh(f"{clean_name(node.name)}.bias"),
                                    np.zeros(ins[1].shape, dtype=x.dtype), NodeKind.CONSTANT))
    return [ctx.apply("layer_norm", ins, {"ndim": len(x.shape) - axis, "eps": float(a.get("epsilon", 1e-5))})]


@_importer("InstanceNormalization")
def _instance_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # each channel of each sample normalised over the rest: group_norm with one channel per group
    x = ctx.input(0)
    if len(x.shape) < 3 or x.shape[1] is None:
        raise ctx.refuse(f"the input must be (N, C, ...) with known channels, got {x.shape}")
    ins = [x, ctx.input(1, NodeKind.PARAM), ctx.input(2, NodeKind.PARAM)]
    return [ctx.apply("group_norm", ins, {"groups": int(x.shape[1]), "eps": float(a.get("epsilon", 1e-5))})]


#: ONNX Resize attributes -> graphdl's resize2d (mode, align_corners): the combinations PyTorch's rules are.
_RESIZE = {("nearest", "asymmetric", "floor"): ("nearest", False),
           ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", False),
           ("linear", "half_pixel", None): ("bilinear", False),
           ("linear", "pytorch_half_pixel", None): ("bilinear", False),
           ("linear", "align_corners", None): ("bilinear", True)}


@_importer("Resize")
def _resize(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    if len(x.shape) != 4 or None in x.shape[2:]:
        raise ctx.refuse(f"graphdl resizes (N, C, H, W) input with known H and W, got {x.shape}")
    mode, coords = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    key = (mode, coords, a.get("nearest_mode", "round_prefer_floor") if mode == "nearest" else None)
    if key not in _RESIZE:
        raise ctx.refuse(f"mode {mode!r} with coordinate_transformation_mode {coords!r}"
                         + (f" and nearest_mode {key[2]!r}" if key[2] else "") + " is not one graphdl computes "
                         "(PyTorch's nearest, nearest-exact, bilinear)")
    for attr, default in (("antialias", 0), ("exclude_outside", 0), ("keep_aspect_ratio_policy", "stretch")):
        if a.get(attr, default) != default:
            raise ctx.refuse(f"{attr}={a[attr]!r} is not supported")
    axes = [int(v) % 4 for v in a.get("axes", [0, 1, 2, 3])]
    scales = ctx.const(2) if ctx.has(2) else None
    sizes = ctx.sizes(3) if ctx.has(3) else None
    if (scales is None or not scales.size) == (sizes is None):
        raise ctx.refuse("exactly one of scales and sizes must be given")
    per_axis = dict(zip(axes, [float(v) for v in scales.reshape(-1)] if sizes is None else sizes))
    if any(per_axis.get(k, 1) not in (1, 1.0, None, x.shape[k]) for k in (0, 1)):
        raise ctx.refuse(f"resizing the batch or channel axis ({per_axis}) is not supported")
    out_mode, corners = _RESIZE[key]
    attrs: dict[str, Any] = {"mode": out_mode, "align_corners": corners}
    if sizes is None:  # the scales set the coordinate mapping, as PyTorch's scale_factor
        sh, sw = per_axis.get(2, 1.0), per_axis.get(3, 1.0)
        attrs.update(size=(math.floor(x.shape[2] * sh), math.floor(x.shape[3] * sw)), scale_h=sh, scale_w=sw)
    else:
        attrs["size"] = (int(per_axis.get(2, x.shape[2])), int(per_axis.get(3, x.shape[3])))
    if coords == "pytorch_half_pixel" and 1 in attrs["size"]:
        raise ctx.refuse("pytorch_half_pixel with an output size of 1 maps the pixel to 0, not to the centre as "
                         "graphdl (and PyTorch's bilinear) do")
    return [ctx.apply("resize2d", [x], attrs)]


@_importer("GroupNormalization")
def _group_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # opset 21's (scale and bias per channel; onnx's checker refuses the deprecated per-group version 18)
    x, groups = ctx.input(0), int(a["num_groups"])
    if len(x.shape) < 3 or x.shape[1] is None or x.shape[1] % groups:
        raise ctx.refuse(f"the input must be (N, C, ...) with known channels divisible by {groups}, got {x.shape}")
    if int(a.get("stash_type", 1)) != 1 and ctx.graph.dtype != "float64":
        raise ctx.refuse(f"stash_type={a['stash_type']} (statistics in another precision) is not supported")
    scale, bias = ctx.input(1, NodeKind.PARAM), ctx.input(2, NodeKind.PARAM)
    attrs = {"groups": groups, "eps": float(a.get("epsilon", 1e-5))}
    return [ctx.apply("group_norm", [x, scale, bias], attrs)]


@_importer("Dropout")
def _dropout(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    mode = ctx.const(2, False)
    if bool(mode):
        raise ctx.refuse("training_mode=true is not supported (graphdl chooses the mode when compiling)")
    p = float(ctx.const(1, a.get("ratio", 0.5)))
    g: Graph = ctx.graph
    counter = g.stored(g.fresh(f"{clean_name(node.name or node.output[0])}.counter"), np.zeros(1, np.int64),
                       NodeKind.STATE)
    return [ctx.apply("dropout", [ctx.input(0), counter], {"p": p, "seed": int(g.rng.integers(2**31))})]


@_importer("ConvTranspose")
def _conv_transpose(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, w = ctx.input(0), ctx.input(1, NodeKind.PARAM)
    if "output_shape" in a or a.get("auto_pad", "NOTSET") != "NOTSET":
        raise ctx.refuse("output_shape and auto_pad are not supported; give pads and output_padding")
    attrs = _window(ctx, a, x, list(a.get("kernel_shape", w.shape[2:])))
    attrs["groups"] = int(a.get("group", 1))
    attrs["output_padding"] = tuple(a.get("output_padding", (0, 0)))
    ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    return [ctx.apply("conv_transpose2d", ins, attrs)]


# -- class losses ---------------------------------------------------------------------------
@_importer("SoftmaxCrossEntropyLoss")
def _sce(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("reduction", "mean") != "mean" or ctx.has(2) or "ignore_index" in a:
        raise ctx.refuse("only reduction='mean' without weights or ignore_index is supported")
    return [ctx.apply("softmax_cross_entropy", [ctx.input(0), ctx.input(1)], kind=NodeKind.LOSS)]


@_importer("NegativeLogLikelihoodLoss")
def _nll(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("reduction", "mean") != "none":
        raise ctx.refuse("only reduction='none' is imported (reduce the per-sample values with ReduceMean/Sum)")
    ins = [ctx.input(0), ctx.input(1)] + ([ctx.input(2, NodeKind.CONSTANT)] if ctx.has(2) else [])
    attrs = {} if "ignore_index" not in a else {"ignore_index": int(a["ignore_index"])}
    return [ctx.apply("class_nll", ins, attrs)]
