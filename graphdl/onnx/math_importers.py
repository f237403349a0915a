"""ONNX importers of the elementwise ops, activations, reductions and other math ops (graphdl/ops/math.py,
activations.py, reduce.py); graphdl/onnx/importers.py merges ``MATH_IMPORTERS`` into its table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.graph import Tensor
from graphdl.onnx.import_context import ImportContext, Importer
from graphdl.onnx.load import _DTYPES
from graphdl.onnx.tables import registrar

MATH_IMPORTERS: dict[str, Importer] = {}
_importer = registrar(MATH_IMPORTERS)


# -- elementwise ----------------------------------------------------------------------------
_SAME = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg",
         "Sqrt": "sqrt", "Abs": "abs", "Sign": "sign", "Erf": "erf", "Add": "add", "Sub": "sub", "Mul": "mul",
         "Pow": "pow", "Greater": "greater", "GreaterOrEqual": "greater_equal", "Less": "less",
         "LessOrEqual": "less_equal", "Equal": "equal", "Where": "where"}


def _same(op: str) -> Importer:
    def build(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
        return [ctx.apply(op, [ctx.input(i) for i in range(len(node.input))])]

    return build


for _onnx_op, _op in _SAME.items():
    MATH_IMPORTERS[_onnx_op] = _same(_op)


@_importer("Div")  # integers divide as in ONNX
def _div(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, y = ctx.input(0), ctx.input(1)
    integer = all(np.dtype(t.dtype).kind in "iu" for t in (x, y))
    return [ctx.apply("trunc_divide" if integer else "div", [x, y])]  # ONNX's integer Div truncates


@_importer("Max", "Min")
def _extremum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    ins = [ctx.input(i) for i in range(len(node.input))]
    op = "maximum" if node.op_type == "Max" else "minimum"
    if len(ins) == 1:
        return [ins[0]]
    out = ins[0]
    for k, t in enumerate(ins[1:], start=2):
        out = ctx.apply(op, [out, t]) if k == len(ins) else ctx.part(op, [out, t])
    return [out]


@_importer("LeakyRelu")
def _leaky_relu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("leaky_relu", [ctx.input(0)], {"negative_slope": float(a.get("alpha", 0.01))})]


@_importer("Elu")
def _elu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("elu", [ctx.input(0)], {"alpha": float(a.get("alpha", 1.0))})]


@_importer("Gelu")
def _gelu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("gelu", [ctx.input(0)], {"approximate": a.get("approximate", "none")})]


@_importer("Softplus")
def _softplus(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)  # ONNX's Softplus has no threshold: never switch to the identity
    return [ctx.apply("softplus", [x], {"beta": 1.0, "threshold": float(np.finfo(x.dtype).max)})]


@_importer("Softmax", "LogSoftmax")
def _softmax(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    op = "softmax" if node.op_type == "Softmax" else "log_softmax"
    return [ctx.apply(op, [ctx.input(0)], {"axis": int(a.get("axis", -1))})]


@_importer("Clip")
def _clip(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    lo, hi = ctx.const(1), ctx.const(2)
    bounds = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    if lo is None and hi is None:
        return [ctx.input(0)]
    return [ctx.apply("clip", [ctx.input(0)], bounds)]


# -- more activations ----------------------------------------------------------------------
for _onnx_op, _op in {"HardSwish": "hardswish", "Mish": "mish", "Softsign": "softsign"}.items():
    MATH_IMPORTERS[_onnx_op] = _same(_op)


@_importer("HardSigmoid")
def _hardsigmoid(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1.0 / 6.0) < 1e-7 and beta == 0.5:  # PyTorch's hardsigmoid
        return [ctx.apply("hardsigmoid", [ctx.input(0)])]
    y = ctx.part("add", [ctx.part("mul", [ctx.input(0), alpha]), beta])
    return [ctx.apply("clip", [y], {"min": 0.0, "max": 1.0})]


@_importer("Selu")
def _selu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE

    alpha, gamma = float(a.get("alpha", 1.67326319217681884765625)), float(a.get("gamma", 1.05070102214813232421875))
    if abs(alpha - SELU_ALPHA) > 1e-6 or abs(gamma - SELU_SCALE) > 1e-6:
        raise ctx.refuse(f"Selu with alpha {alpha} and gamma {gamma} (graphdl has the standard constants only)")
    return [ctx.apply("selu", [ctx.input(0)])]


@_importer("Celu")
def _celu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("celu", [ctx.input(0)], {"alpha": float(a.get("alpha", 1.0))})]


# -- reductions ----------------------------------------------------------------------------
#: ONNX reductions and the graphdl ops they become (same axes/keepdims/noop_with_empty_axes rules).
REDUCTIONS = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
              "ReduceProd": "prod", "ReduceLogSumExp": "logsumexp"}


@_importer(*REDUCTIONS)
def _reduce(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    op = REDUCTIONS[node.op_type]
    axes = ctx.const(1) if ctx.has(1) else a.get("axes")
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None and a.get("noop_with_empty_axes", 0):
        return [ctx.input(0)]
    attrs = {"axis": None if axes is None else tuple(int(i) for i in axes), "keepdims": bool(a.get("keepdims", 1))}
    return [ctx.apply(op, [ctx.input(0)], attrs)]


# -- math ops -------------------------------------------------------------------------------
for _onnx_op, _op in {"Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan",
                      "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
                      "Floor": "floor", "Ceil": "ceil", "Round": "round", "Reciprocal": "reciprocal",
                      "IsNaN": "isnan", "Not": "logical_not", "And": "logical_and", "Or": "logical_or",
                      "Xor": "logical_xor"}.items():
    MATH_IMPORTERS[_onnx_op] = _same(_op)


@_importer("IsInf")
def _isinf(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if not (a.get("detect_negative", 1) and a.get("detect_positive", 1)):
        raise ctx.refuse("IsInf detecting one sign only is not supported")
    return [ctx.apply("isinf", [ctx.input(0)])]


@_importer("Cast")
def _cast(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if node.input[0] in ctx.shape_values:  # sizes stay sizes
        ctx.shape_values[node.output[0]] = list(ctx.shape_values[node.input[0]])
        return [None]
    dtype = _DTYPES.get(int(a["to"]))
    if dtype is None:
        raise ctx.refuse(f"Cast to ONNX type {a['to']} (graphdl has float32/64, int32/64, bool)")
    x = ctx.input(0)
    if np.dtype(x.dtype) == np.dtype(dtype):
        return [x]
    return [ctx.apply("astype", [x], {"dtype": np.dtype(dtype).name})]


@_importer("ArgMax", "ArgMin")
def _arg(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("select_last_index", 0):
        raise ctx.refuse("select_last_index=1 is not supported (graphdl picks the first extremum)")
    op = "argmax" if node.op_type == "ArgMax" else "argmin"
    return [ctx.apply(op, [ctx.input(0)], {"axis": int(a.get("axis", 0)), "keepdims": bool(a.get("keepdims", 1))})]


@_importer("CumSum")
def _cumsum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("exclusive", 0):
        raise ctx.refuse("exclusive=1 is not supported")
    axis = int(np.asarray(ctx.const(1)).reshape(-1)[0])
    return [ctx.apply("cumsum", [ctx.input(0)], {"axis": axis, "reverse": bool(a.get("reverse", 0))})]


@_importer("Mod")
def _mod(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # fmod=1: C's fmod (sign of the dividend); fmod=0: Python's % (sign of the divisor)
    return [ctx.apply("fmod" if a.get("fmod", 0) else "remainder", [ctx.input(0), ctx.input(1)])]
