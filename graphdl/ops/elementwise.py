"""Elementwise ops with NumPy broadcasting: arithmetic, comparisons, where, powers and activations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from graphdl.attrs import DTYPES, Float, Str
from graphdl.dtypes import boolean, floating, promote, promote_no_bool, promote_numeric
from graphdl.ops.common import broadcast_rule, same_shape, ufunc_kernel
from graphdl.registry import GradContext, OpDef, RuleError, fail, register, scratch

if TYPE_CHECKING:
    from graphdl.tensor import Tensor


def _scalar_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return ()


def _scalar_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    value = attrs["value"]

    def fill(out: np.ndarray) -> None:
        out[...] = value

    return fill


register(OpDef(
    "scalar", _scalar_shape, _scalar_kernel, grad=lambda c: [], dtype=lambda d, a: a["dtype"], arity=0,
    doc="A 0-d constant held in the node's attributes.", label_attrs=("value",),
    attr_schema={"value": Float(), "dtype": Str(*DTYPES)},
))

# Binary arithmetic. Gradients have the output's shape; autodiff sums them back to each input's shape.
register(OpDef(
    "add", broadcast_rule, ufunc_kernel(np.add), arity=2, inplace=(0, 1), dtype=promote,
    grad=lambda c: [c.gout, c.gout], doc="a + b with broadcasting and type promotion.", attr_schema={},
))
register(OpDef(
    "sub", broadcast_rule, ufunc_kernel(np.subtract), arity=2, inplace=(0, 1), dtype=promote_no_bool,
    grad=lambda c: [c.gout, -c.gout], doc="a - b with broadcasting and type promotion.", attr_schema={},
))
register(OpDef(
    "mul", broadcast_rule, ufunc_kernel(np.multiply), arity=2, inplace=(0, 1), dtype=promote,
    grad=lambda c: [c.gout * c.inputs[1], c.gout * c.inputs[0]], doc="a * b with broadcasting and type promotion.",
    attr_schema={},
))
register(OpDef(
    "div", broadcast_rule, ufunc_kernel(np.divide), arity=2, inplace=(0, 1), dtype=floating,
    grad=lambda c: [c.gout / c.inputs[1], -(c.gout * c.out) / c.inputs[1]],
    doc="True division a / b (the `/` operator and gd.ops.div convert integer operands to float first).",
    attr_schema={},
))
register(OpDef("neg", same_shape, ufunc_kernel(np.negative), arity=1, inplace=(0,), grad=lambda c: [-c.gout],
               dtype=promote_no_bool, doc="-x.", attr_schema={}))
register(OpDef("exp", same_shape, ufunc_kernel(np.exp), arity=1, inplace=(0,), grad=lambda c: [c.gout * c.out],
               dtype=floating, doc="e ** x.", attr_schema={}))
register(OpDef("log", same_shape, ufunc_kernel(np.log), arity=1, inplace=(0,), grad=lambda c: [c.gout / c.inputs[0]],
               dtype=floating, doc="Natural logarithm.", attr_schema={}))


# ReLU: the gradient is its own op, so that it stays one pass over memory and has a gradient itself.
def _row_length(shape: tuple) -> int | None:
    """A row length dividing the element count, for comparing against a row of constants: NumPy's SIMD
    loops take two contiguous arrays, while a scalar operand runs a loop about twice as slow (0.59 vs
    0.26 ms for max(x, 0) on 1.6M float32). Rows of at least 8192 values (NumPy's buffer size) keep
    the ufunc unbuffered; a shorter broadcast row makes it allocate a 32 KB buffer on every call. None
    when the size has no such divisor among the powers of two up to 65536 (small arrays)."""
    row = math.gcd(math.prod(shape), 1 << 16)
    return row if row >= 8192 else None


def _rows_of(row: int | None) -> Callable[..., tuple[np.ndarray, ...] | None]:
    """``rows(*arrays)``: the arrays viewed as (-1, row), or None when a row length or contiguity is
    missing. Bound arrays never move, so the views are made once per set of arrays and then reused
    (a step allocates nothing; tests/test_codegen.py)."""
    cache: list = [(), None]

    def rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...] | None:
        if len(arrays) != len(cache[0]) or any(a is not b for a, b in zip(arrays, cache[0])):
            ok = row is not None and all(a.flags.c_contiguous for a in arrays)
            cache[:] = [arrays, tuple(a.reshape(-1, row) for a in arrays) if ok else None]
        return cache[1]

    return rows


def _relu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    row = _row_length(out_shape) if tuple(in_shapes[0]) == tuple(out_shape) else None
    zeros, rows = np.zeros(row or 1, dtype), _rows_of(row)

    def relu(x: np.ndarray, out: np.ndarray) -> None:
        xo = rows(x, out)
        if xo is None:
            np.maximum(x, 0, out=out)
        else:
            np.maximum(xo[0], zeros, out=xo[1])

    return relu


def _relu_grad_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    return [(tuple(out_shape), np.bool_), (tuple(out_shape), dtype)]


def _relu_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                      workspace: list[np.ndarray] | None = None):
    # g * (y > 0), as PyTorch's threshold_backward (a NaN y gives 0): the comparison into a bool mask,
    # a casting copy to a float mask, then a same-type product. Multiplying by the bools directly
    # casts through a freshly allocated buffer; ceil/clamp passes were twice as slow (MLP, 256 x 1024:
    # 143 vs 73 us). The masks are planned workspace, because ``out`` may be g's own buffer.
    mask, fmask = scratch(workspace, _relu_grad_workspace(attrs, in_shapes, out_shape, dtype))

    def relu_grad(g: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.greater(y, 0, out=mask)
        np.copyto(fmask, mask)
        np.multiply(g, fmask, out=out)

    return relu_grad


def _relu_grad(c: GradContext) -> list:
    return [c.apply("relu_grad", c.gout, c.out)]


register(OpDef("relu", same_shape, _relu_kernel, arity=1, inplace=(0,), grad=_relu_grad, doc="max(x, 0).",
               attr_schema={}))
register(OpDef(
    "relu_grad", broadcast_rule, _relu_grad_kernel, arity=2, inplace=(0,), nondiff=(1,), workspace=_relu_grad_workspace,
    grad=lambda c: [c.apply("relu_grad", c.gout, c.inputs[1]), None],
    doc="gout where the ReLU output is positive, else 0 (also where it is NaN).", attr_schema={},
))


def _sigmoid_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def sigmoid(x: np.ndarray, out: np.ndarray) -> None:
        # 0.5 * (1 + tanh(x / 2)): no overflow for large |x|, and alias-safe.
        np.multiply(x, 0.5, out=out)
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5

    return sigmoid


register(OpDef(
    "sigmoid", same_shape, _sigmoid_kernel, arity=1, inplace=(0,), dtype=floating, doc="1 / (1 + exp(-x)).",
    grad=lambda c: [c.gout * (c.out * (1.0 - c.out))], attr_schema={},
))
register(OpDef(
    "tanh", same_shape, ufunc_kernel(np.tanh), arity=1, inplace=(0,), dtype=floating, doc="Hyperbolic tangent.",
    grad=lambda c: [c.gout * (1.0 - c.out * c.out)], attr_schema={},
))


# -- comparisons and selection ---------------------------------------------------------------
for _name, _ufunc in (("greater", np.greater), ("greater_equal", np.greater_equal), ("less", np.less),
                      ("less_equal", np.less_equal), ("equal", np.equal)):
    register(OpDef(_name, broadcast_rule, ufunc_kernel(_ufunc), dtype=boolean, arity=2,
                   doc=f"Boolean {_name} with broadcasting; no gradient flows through a comparison.", attr_schema={}))


def _where_dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    if dtypes[0] != "bool":
        raise RuleError(f"the condition must be boolean, got {dtypes[0]}",
                        "build it with a comparison such as gd.ops.greater(x, 0)", kind="dtype")
    return promote(dtypes[1:], attrs)


def _where_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def where(cond: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, b)
        np.copyto(out, a, where=cond)

    return where


def where(c: GradContext, cond: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """``where(cond, a, b)`` inside a gradient rule."""
    return c.apply("where", cond, a, b)


register(OpDef(
    "where", broadcast_rule, _where_kernel, dtype=_where_dtype, arity=3, nondiff=(0,),
    grad=lambda c: [None, where(c, c.inputs[0], c.gout, 0.0), where(c, c.inputs[0], 0.0, c.gout)],
    doc="a where cond is true, else b (broadcasting all three).", attr_schema={},
))


# -- powers, roots, absolute values ----------------------------------------------------------
register(OpDef("sqrt", same_shape, ufunc_kernel(np.sqrt), arity=1, inplace=(0,), dtype=floating,
               grad=lambda c: [c.gout * 0.5 / c.out], doc="Square root; its gradient at 0 is inf, as in PyTorch.",
               attr_schema={}))


def _pow_grad(c: GradContext) -> list:
    # PyTorch's pow_backward: d/da is 0 where b == 0 (even at a == 0, where b * a**(b-1) is 0 * inf);
    # d/db is 0 where a == 0 and b >= 0 (the limit of a**b * log(a)), else a**b * log(a).
    a, b, g = c.inputs[0], c.inputs[1], c.gout
    bnode = b.node
    if bnode.op == "scalar":  # a constant exponent (x ** 2): no mask needed unless it is 0
        value = bnode.attr["value"]
        da = None if value == 0 else g * value * c.apply("pow", a, value - 1.0)
        return [da, None]
    # The masked-out entries are computed from safe stand-ins (a**0, log(1)), so no inf or nan is made
    # only to be dropped: a per-node numerics check sees finite values.
    b_zero = c.apply("equal", b, 0.0)
    da = where(c, b_zero, 0.0, g * b * c.apply("pow", a, where(c, b_zero, 1.0, b) - 1.0))
    at_zero = c.apply("logical_and", c.apply("equal", a, 0.0), c.apply("greater_equal", b, 0.0))
    db = where(c, at_zero, 0.0, g * c.out * c.apply("log", where(c, at_zero, 1.0, a)))
    return [da, db]


register(OpDef(
    "pow", broadcast_rule, ufunc_kernel(np.power), arity=2, inplace=(0, 1), dtype=promote_numeric, grad=_pow_grad,
    doc="a ** b with broadcasting; gradients follow PyTorch at a == 0 (0 or inf, never nan where the limit exists).",
    attr_schema={},
))
register(OpDef("sign", same_shape, ufunc_kernel(np.sign), arity=1, inplace=(0,), grad=lambda c: [None],
               dtype=promote_numeric, doc="-1, 0 or 1; its derivative is zero wherever it exists.", attr_schema={}))
register(OpDef("abs", same_shape, ufunc_kernel(np.abs), arity=1, inplace=(0,), dtype=promote_numeric,
               grad=lambda c: [c.gout * c.apply("sign", c.inputs[0])],
               doc="|x|; the gradient at 0 is 0, as in PyTorch.", attr_schema={}))


def _clip_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    lo, hi = attrs.get("min"), attrs.get("max")

    def clip(x: np.ndarray, out: np.ndarray) -> None:
        np.clip(x, lo, hi, out=out)

    return clip


def _clip_grad(c: GradContext) -> list:
    # PyTorch's clamp: the gradient passes where min <= x <= max (bounds included).
    x, g, lo, hi = c.inputs[0], c.gout, c.attrs.get("min"), c.attrs.get("max")
    if lo is not None:
        g = where(c, c.apply("greater_equal", x, float(lo)), g, 0.0)
    if hi is not None:
        g = where(c, c.apply("less_equal", x, float(hi)), g, 0.0)
    return [g]


def _clip_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    lo, hi = attrs.get("min"), attrs.get("max")
    if lo is None and hi is None:
        fail("clip needs at least one of min and max")
    if lo is not None and hi is not None and lo > hi:
        fail(f"clip bounds are reversed: min {lo} > max {hi}")
    return shapes[0]


register(OpDef("clip", _clip_shape, _clip_kernel, arity=1, inplace=(0,), grad=_clip_grad, dtype=promote,
               label_attrs=("min", "max"), doc="x limited to [min, max] (either bound may be None).",
               attr_schema={"min": Float(None, nullable=True), "max": Float(None, nullable=True)}))


def _extremum_grad(first_wins: str) -> Callable[[GradContext], list]:
    # PyTorch's maximum/minimum: the winner takes the gradient, ties split it in half.
    def grad(c: GradContext) -> list:
        a, b = c.inputs
        eq = c.apply("equal", a, b)
        share_a = where(c, c.apply(first_wins, a, b), 1.0, where(c, eq, 0.5, 0.0))
        share_b = where(c, c.apply(first_wins, b, a), 1.0, where(c, eq, 0.5, 0.0))
        return [c.gout * share_a, c.gout * share_b]

    return grad


def _out_kw(ufunc: np.ufunc):
    # np.maximum/np.minimum deprecate a positional out argument
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        return lambda a, b, out: ufunc(a, b, out=out)

    return factory


register(OpDef("maximum", broadcast_rule, _out_kw(np.maximum), arity=2, inplace=(0, 1), dtype=promote,
               grad=_extremum_grad("greater"), doc="Elementwise larger of a and b; ties share the gradient.",
               attr_schema={}))
register(OpDef("minimum", broadcast_rule, _out_kw(np.minimum), arity=2, inplace=(0, 1), dtype=promote,
               grad=_extremum_grad("less"), doc="Elementwise smaller of a and b; ties share the gradient.",
               attr_schema={}))


def _erf_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    return erf_function()


def erf_function() -> Callable[[np.ndarray, np.ndarray], object]:
    """``erf(x, out)``: SciPy's when installed, else graphdl's vectorised NumPy one (graphdl.ops.special,
    within a few ulp of SciPy's; about 2.5x SciPy's time, where math.erf per element was ~6-40x)."""
    try:
        from scipy.special import erf as fast_erf
    except ImportError:
        from graphdl.ops.special import erf as numpy_erf

        return numpy_erf
    return lambda x, out: fast_erf(x, out=out)


register(OpDef("erf", same_shape, _erf_kernel, arity=1, inplace=(0,), dtype=floating,
               grad=lambda c: [c.gout * (2.0 / math.sqrt(math.pi)) * c.apply("exp", -(c.inputs[0] * c.inputs[0]))],
               doc="The error function.", attr_schema={}))
