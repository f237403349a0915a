"""ONNX exporters of the math, indexing and reduction ops (graphdl/ops/math.py, indexing.py, reduce.py,
stats.py); ``graphdl.onnx.exporters`` merges ``MATH_EXPORTERS`` and ``MATH_TRAINING_ONLY`` into its table.

Where ONNX has no operator (trunc, copysign, Python-style remainder, cumprod, var) the exporter
spells the op out from ONNX primitives with graphdl's semantics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.export import ExportContext, Exporter, ExportError, same
from graphdl.onnx.tables import registrar
from graphdl.ops.common import norm_axes
from graphdl.ops.indexing import INT, NEW, SLICE, index_entries

MATH_EXPORTERS: dict[str, Exporter] = {}

#: Gradient helpers of these ops: they never appear in an inference plan.
MATH_TRAINING_ONLY = frozenset({"index_grad", "prod_grad", "cumprod_grad"})

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


_exporter = registrar(MATH_EXPORTERS)
_same = same


for _op, _onnx in {"sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan",
                   "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
                   "floor": "Floor", "ceil": "Ceil", "round": "Round", "reciprocal": "Reciprocal", "isnan": "IsNaN",
                   "isinf": "IsInf"}.items():
    MATH_EXPORTERS[_op] = _same(_onnx)


def _cast(ctx: ExportContext, n: Node, part: str, x: str, dtype: Any) -> str:
    """x as dtype (a Cast unless x is a graph value of that dtype already)."""
    if x in ctx.nodes and ctx.dtype(x) == np.dtype(dtype):
        return x
    return ctx.helper(n, part, "Cast", [x], to=ctx.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _rounded(ctx: ExportContext, n: Node, x: str, dt: np.dtype, part: str = "trunc") -> str:
    """x (of dtype dt) rounded toward zero (ONNX has no Trunc): ceil below zero, floor above."""
    if dt.kind != "f":
        return x
    neg = ctx.helper(n, f"{part}_negative", "Less", [x, ctx.const(n, "zero", 0, dt)])
    return ctx.helper(n, part, "Where", [neg, ctx.helper(n, f"{part}_ceil", "Ceil", [x]),
                                         ctx.helper(n, f"{part}_floor", "Floor", [x])])


@_exporter("add", "sub", "mul", "div", "maximum", "minimum", "where", "greater", "greater_equal", "less",
           "less_equal", "equal", "pow")
def _promoted(ctx: ExportContext, n: Node) -> None:
    # ONNX wants one type for the operands; graphdl promotes mixed ones (graphdl.dtypes): cast first
    from graphdl.dtypes import result_dtype

    op_type = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max", "minimum": "Min",
               "where": "Where", "greater": "Greater", "greater_equal": "GreaterOrEqual", "less": "Less",
               "less_equal": "LessOrEqual", "equal": "Equal", "pow": "Pow"}[n.op]
    values = n.inputs[1:] if n.op == "where" else n.inputs
    common = result_dtype(*(str(ctx.dtype(v)) for v in values))
    ins = [_cast(ctx, n, f"in{k}", v, common) for k, v in enumerate(values)]
    ctx.emit(op_type, [n.inputs[0], *ins] if n.op == "where" else ins, n.name)


@_exporter("trunc")
def _trunc(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Identity", [_rounded(ctx, n, n.inputs[0], ctx.dtype(n.inputs[0]))], n.name)


@_exporter("log2", "log10", "log1p", "expm1", "square", "rsqrt")
def _unary_composite(ctx: ExportContext, n: Node) -> None:
    x, dt = n.inputs[0], ctx.dtype(n.inputs[0])
    if n.op in ("log2", "log10"):
        base = ctx.const(n, "ln_base", math.log(2 if n.op == "log2" else 10), dt)
        ctx.emit("Div", [ctx.helper(n, "ln", "Log", [x]), base], n.name)
    elif n.op == "log1p":
        ctx.emit("Log", [ctx.helper(n, "one_plus", "Add", [x, ctx.const(n, "one", 1, dt)])], n.name)
    elif n.op == "expm1":
        ctx.emit("Sub", [ctx.helper(n, "exp", "Exp", [x]), ctx.const(n, "one", 1, dt)], n.name)
    elif n.op == "square":
        ctx.emit("Mul", [x, x], n.name)
    else:
        ctx.emit("Reciprocal", [ctx.helper(n, "sqrt", "Sqrt", [x])], n.name)


@_exporter("copysign")
def _copysign(ctx: ExportContext, n: Node) -> None:
    a, b = n.inputs
    dt = np.dtype(n.dtype)
    a, b = _cast(ctx, n, "a", a, dt), _cast(ctx, n, "b", b, dt)
    # the sign bit of b, -0.0 included: 1 / b is negative exactly when it is set
    negative = ctx.helper(n, "sign_bit", "Less", [ctx.helper(n, "inverse", "Reciprocal", [b]),
                                                  ctx.const(n, "zero", 0, dt)])
    mag = ctx.helper(n, "abs", "Abs", [a])
    ctx.emit("Where", [negative, ctx.helper(n, "negated", "Neg", [mag]), mag], n.name)


def _operands(ctx: ExportContext, n: Node) -> tuple[str, str, np.dtype]:
    dt = np.dtype(n.dtype)
    return _cast(ctx, n, "a", n.inputs[0], dt), _cast(ctx, n, "b", n.inputs[1], dt), dt


@_exporter("floor_divide", "trunc_divide")
def _int_divide(ctx: ExportContext, n: Node) -> None:
    a, b, dt = _operands(ctx, n)
    if dt.kind == "f":
        q = ctx.helper(n, "quotient", "Div", [a, b])
        ctx.emit("Floor", [q], n.name) if n.op == "floor_divide" else ctx.emit(
            "Identity", [_rounded(ctx, n, q, dt)], n.name)
        return
    q = ctx.helper(n, "quotient", "Div", [a, b])  # integer Div truncates toward zero
    if n.op == "trunc_divide":
        ctx.emit("Identity", [q], n.name)
        return
    zero = ctx.const(n, "zero", 0, dt)
    inexact = ctx.helper(n, "inexact", "Not", [ctx.helper(n, "exact", "Equal", [
        ctx.helper(n, "remainder", "Mod", [a, b], fmod=1), zero])])
    signs_differ = ctx.helper(n, "signs_differ", "Xor", [ctx.helper(n, "a_negative", "Less", [a, zero]),
                                                         ctx.helper(n, "b_negative", "Less", [b, zero])])
    down = ctx.helper(n, "round_down", "And", [inexact, signs_differ])
    ctx.emit("Sub", [q, _cast(ctx, n, "step", down, dt)], n.name)


@_exporter("remainder", "fmod")
def _remainder(ctx: ExportContext, n: Node) -> None:
    a, b, dt = _operands(ctx, n)
    if dt.kind != "f":  # ONNX Mod on integers: fmod=0 is Python's remainder, fmod=1 C's
        ctx.emit("Mod", [a, b], n.name, fmod=int(n.op == "fmod"))
        return
    r = ctx.helper(n, "fmod", "Mod", [a, b], fmod=1)  # floats: only fmod=1 exists
    if n.op == "fmod":
        ctx.emit("Identity", [r], n.name)
        return
    zero = ctx.const(n, "zero", 0, dt)
    nonzero = ctx.helper(n, "nonzero", "Not", [ctx.helper(n, "is_zero", "Equal", [r, zero])])
    differ = ctx.helper(n, "signs_differ", "Xor", [ctx.helper(n, "r_negative", "Less", [r, zero]),
                                                   ctx.helper(n, "b_negative", "Less", [b, zero])])
    fix = ctx.helper(n, "fix", "And", [nonzero, differ])
    ctx.emit("Where", [fix, ctx.helper(n, "shifted", "Add", [r, b]), r], n.name)


@_exporter("isfinite")
def _isfinite(ctx: ExportContext, n: Node) -> None:
    x = n.inputs[0]
    bad = ctx.helper(n, "bad", "Or", [ctx.helper(n, "nan", "IsNaN", [x]), ctx.helper(n, "inf", "IsInf", [x])])
    ctx.emit("Not", [bad], n.name)


@_exporter("isclose")
def _isclose(ctx: ExportContext, n: Node) -> None:
    a, b = n.inputs
    dt = np.result_type(ctx.dtype(a), ctx.dtype(b), np.float32)
    a, b = _cast(ctx, n, "a", a, dt), _cast(ctx, n, "b", b, dt)
    relative = ctx.helper(n, "relative", "Mul", [ctx.const(n, "rtol", n.attr.get("rtol", 1e-5), dt),
                                                 ctx.helper(n, "abs_b", "Abs", [b])])
    tol = ctx.helper(n, "tolerance", "Add", [ctx.const(n, "atol", n.attr.get("atol", 1e-8), dt), relative])
    near = ctx.helper(n, "near", "LessOrEqual", [ctx.helper(n, "distance", "Abs", [
        ctx.helper(n, "diff", "Sub", [a, b])]), tol])
    out = ctx.helper(n, "near_or_equal", "Or", [near, ctx.helper(n, "equal", "Equal", [a, b])])
    if n.attr.get("equal_nan"):
        both = ctx.helper(n, "both_nan", "And", [ctx.helper(n, "nan_a", "IsNaN", [a]),
                                                 ctx.helper(n, "nan_b", "IsNaN", [b])])
        out = ctx.helper(n, "or_nan", "Or", [out, both])
    ctx.emit("Identity", [out], n.name)


@_exporter("not_equal")
def _not_equal(ctx: ExportContext, n: Node) -> None:
    ctx.emit("Not", [ctx.helper(n, "equal", "Equal", n.inputs)], n.name)


@_exporter("logical_and", "logical_or", "logical_xor", "logical_not")
def _logical(ctx: ExportContext, n: Node) -> None:
    ins = [_cast(ctx, n, f"truth{k}", x, np.bool_) for k, x in enumerate(n.inputs)]
    ctx.emit({"logical_and": "And", "logical_or": "Or", "logical_xor": "Xor", "logical_not": "Not"}[n.op], ins, n.name)


@_exporter("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not")
def _bitwise(ctx: ExportContext, n: Node) -> None:
    dt = np.dtype(n.dtype)
    ins = [_cast(ctx, n, f"in{k}", x, dt) for k, x in enumerate(n.inputs)]
    name = n.op.split("_")[1]
    if dt == np.bool_:
        ctx.emit(name.capitalize(), ins, n.name)
        return
    if ctx.opset < 18:
        raise ExportError(f"{n.describe()}: ONNX bitwise ops on integers need opset 18 or later, not {ctx.opset}")
    ctx.emit("Bitwise" + name.capitalize(), ins, n.name)


@_exporter("astype")
def _astype(ctx: ExportContext, n: Node) -> None:
    x = n.inputs[0]
    if ctx.dtype(x).kind == "f" and np.dtype(n.dtype).kind in "iu":  # NumPy truncates toward zero; Cast too,
        x = _rounded(ctx, n, x, ctx.dtype(x))  # but spelled out so no runtime rounds to nearest
    ctx.emit("Cast", [x], n.name, to=ctx.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(n.dtype)))


# -- indexing -----------------------------------------------------------------------------------------
@_exporter("slice")
def _slice(ctx: ExportContext, n: Node) -> None:
    entries = index_entries(n.attr)
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis = 0  # input axis
    out_axis = 0  # axis in the result after squeezing (for unsqueeze positions)
    for e in entries:
        if e[0] == NEW:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        if e[0] == SLICE:
            start, stop, step = e[1], e[2], e[3]
            if (start, stop, step) != (None, None, 1):
                starts.append((0 if step > 0 else INT64_MAX) if start is None else start)
                ends.append((INT64_MAX if step > 0 else INT64_MIN) if stop is None else stop)
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        elif e[0] == INT:
            k = e[1]
            starts.append(k)
            ends.append(INT64_MAX if k == -1 else k + 1)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
        axis += 1
    # the last ONNX node takes the graphdl node's name (Slice alone in the common case)
    stages: list[tuple[str, str, list[str]]] = []
    if axes:
        stages.append(("slice", "Slice", [ctx.const(n, "starts", starts), ctx.const(n, "ends", ends),
                                          ctx.const(n, "axes", axes), ctx.const(n, "steps", steps)]))
    if squeeze:
        stages.append(("squeeze", "Squeeze", [ctx.const(n, "squeeze_axes", squeeze)]))
    if unsqueeze:
        stages.append(("unsqueeze", "Unsqueeze", [ctx.const(n, "unsqueeze_axes", unsqueeze)]))
    if not stages:
        stages.append(("identity", "Identity", []))
    x = n.inputs[0]
    for k, (part, op_type, extra) in enumerate(stages):
        if k == len(stages) - 1:
            ctx.emit(op_type, [x, *extra], n.name)
        else:
            x = ctx.helper(n, part, op_type, [x, *extra])


@_exporter("flatten")
def _flatten(ctx: ExportContext, n: Node) -> None:
    start = n.attr["start_dim"]  # Reshape's 0 copies the input's size: the leading dimensions stay
    ctx.emit("Reshape", [n.inputs[0], ctx.const(n, "shape", [0] * start + [int(n.shape[-1])])], n.name)


@_exporter("index")
def _index(ctx: ExportContext, n: Node) -> None:
    x, idx = n.inputs
    axis, span = n.attr.get("axis", 0), n.attr.get("span", 1)
    if span > 1:
        shape = ctx.nodes[x].shape
        tail = shape[axis + span:]
        if None in tail:
            raise ExportError(f"{n.describe()}: a boolean mask over {span} axes needs the later dimensions known")
        merged = [0] * axis + [math.prod(shape[axis:axis + span])] + list(tail)  # 0: copy the input's size
        x = ctx.helper(n, "merged", "Reshape", [x, ctx.const(n, "merged_shape", merged)])
    ctx.emit("Gather", [x, idx], n.name, axis=axis)


# -- reductions and scans --------------------------------------------------------------------------------
def _axes(n: Node, ndim: int) -> list[int]:
    return list(norm_axes(n.attr.get("axis"), ndim))


def _reduce_op(ctx: ExportContext, n: Node, op_type: str, x: str, part: str | None = None,
               keep: bool | None = None) -> str:
    keepdims = int(bool(n.attr.get("keepdims", False)) if keep is None else keep)
    axes = _axes(n, len(ctx.nodes[n.inputs[0]].shape))
    if n.attr.get("axis") is None:  # all axes: no axes input, so an importer reads back axis=None
        ins, attrs = [x], {}
    elif op_type == "ReduceSum" or ctx.opset >= 18:
        ins, attrs = [x, ctx.const(n, f"{part or 'reduce'}_axes", axes)], {}
    else:
        ins, attrs = [x], {"axes": axes}
    if part is None:
        return ctx.emit(op_type, ins, n.name, keepdims=keepdims, **attrs)
    return ctx.helper(n, part, op_type, ins, keepdims=keepdims, **attrs)


@_exporter("sum")
def _sum(ctx: ExportContext, n: Node) -> None:
    # bool and integer values sum to int64 (ONNX ReduceSum takes no bool): cast first
    _reduce_op(ctx, n, "ReduceSum", _cast(ctx, n, "x", n.inputs[0], n.dtype))


@_exporter("min", "prod", "logsumexp")
def _reduce(ctx: ExportContext, n: Node) -> None:
    _reduce_op(ctx, n, {"min": "ReduceMin", "prod": "ReduceProd", "logsumexp": "ReduceLogSumExp"}[n.op],
               _cast(ctx, n, "x", n.inputs[0], n.dtype))


@_exporter("any", "all")
def _any_all(ctx: ExportContext, n: Node) -> None:
    truth = _cast(ctx, n, "truth", _cast(ctx, n, "bool", n.inputs[0], np.bool_), np.int32)
    r = _reduce_op(ctx, n, "ReduceMax" if n.op == "any" else "ReduceMin", truth, part="reduce")
    ctx.emit("Cast", [r], n.name, to=ctx.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(np.bool_)))


@_exporter("argmax", "argmin")
def _arg(ctx: ExportContext, n: Node) -> None:
    x, axis, keep = n.inputs[0], n.attr.get("axis"), int(bool(n.attr.get("keepdims", False)))
    op_type = "ArgMax" if n.op == "argmax" else "ArgMin"
    if axis is not None:
        ctx.emit(op_type, [x], n.name, axis=int(axis), keepdims=keep)
        return
    flat = ctx.helper(n, "flat", "Reshape", [x, ctx.const(n, "flat_shape", [-1])])
    r = ctx.helper(n, "arg", op_type, [flat], axis=0, keepdims=0)
    ctx.emit("Reshape", [r, ctx.const(n, "shape", [1] * len(n.shape))], n.name)


@_exporter("var", "std")
def _var(ctx: ExportContext, n: Node) -> None:
    x, dt = n.inputs[0], np.dtype(n.dtype)
    shape = ctx.nodes[x].shape
    axes = _axes(n, len(shape))
    mean = _reduce_op(ctx, n, "ReduceMean", x, part="mean", keep=True)
    d = ctx.helper(n, "centered", "Sub", [x, mean])
    total = _reduce_op(ctx, n, "ReduceSum", ctx.helper(n, "square", "Mul", [d, d]), part="sum_squares")
    correction = float(n.attr.get("correction", 1))
    dims = [shape[a] for a in axes]
    if None not in dims:
        count = ctx.const(n, "count", math.prod(dims) - correction, dt)
    else:  # the number of entries is known only at run time
        sizes = ctx.helper(n, "sizes", "Gather", [ctx.helper(n, "shape", "Shape", [x]), ctx.const(n, "axes", axes)])
        n_float = _cast(ctx, n, "n_float", ctx.helper(n, "n", "ReduceProd", [sizes], keepdims=0), dt)
        count = ctx.helper(n, "count", "Sub", [n_float, ctx.const(n, "correction", correction, dt)])
    if n.op == "var":
        ctx.emit("Div", [total, count], n.name)
    else:
        ctx.emit("Sqrt", [ctx.helper(n, "var", "Div", [total, count])], n.name)


@_exporter("cumsum")
def _cumsum(ctx: ExportContext, n: Node) -> None:
    x = _cast(ctx, n, "x", n.inputs[0], n.dtype)
    ctx.emit("CumSum", [x, ctx.const(n, "axis", n.attr["axis"])], n.name,
             reverse=int(bool(n.attr.get("reverse", False))))


@_exporter("cumprod")
def _cumprod(ctx: ExportContext, n: Node) -> None:
    # ONNX has no CumProd: magnitude exp(cumsum(log|x|)), sign from the running count of negatives,
    # and zero from the first zero on.
    x, dt = n.inputs[0], np.dtype(n.dtype)
    if dt.kind != "f":
        raise ExportError(f"{n.describe()}: ONNX has no CumProd; integer cumprod cannot be exported")
    axis = ctx.const(n, "axis", n.attr["axis"])
    zero, one = ctx.const(n, "zero", 0, dt), ctx.const(n, "one", 1, dt)
    is_zero = ctx.helper(n, "is_zero", "Equal", [x, zero])
    safe = ctx.helper(n, "safe", "Where", [is_zero, one, ctx.helper(n, "abs", "Abs", [x])])
    mag = ctx.helper(n, "magnitude", "Exp", [ctx.helper(n, "log_sum", "CumSum", [
        ctx.helper(n, "log", "Log", [safe]), axis])])
    negatives = ctx.helper(n, "negatives", "CumSum", [_cast(ctx, n, "negative", ctx.helper(
        n, "is_negative", "Less", [x, zero]), dt), axis])
    odd = ctx.helper(n, "odd", "Equal", [ctx.helper(n, "parity", "Mod", [negatives, ctx.const(n, "two", 2, dt)],
                                                    fmod=1), one])
    signed = ctx.helper(n, "signed", "Where", [odd, ctx.helper(n, "negated", "Neg", [mag]), mag])
    zeros_seen = ctx.helper(n, "zeros_seen", "CumSum", [_cast(ctx, n, "zero_count", is_zero, dt), axis])
    ctx.emit("Where", [ctx.helper(n, "after_zero", "Greater", [zeros_seen, zero]), zero, signed], n.name)
