"""Elementwise math with NumPy/PyTorch names: trigonometry, rounding, logs, integer division, predicates,
logical ops and dtype conversion.

Gradients follow PyTorch's at the edges of each function's domain (``asin`` at ±1 is inf, ``rsqrt``
at 0 is -inf, rounding functions have gradient 0). Predicates, comparisons and logical ops give
bool values and pass no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl.attrs import DTYPES, Bool, Float, Str
from graphdl.dtypes import boolean, floating, logical, promote_numeric
from graphdl.ops.common import broadcast_rule, same_shape, ufunc_kernel
from graphdl.ops.elementwise import where
from graphdl.registry import GradContext, OpDef, RuleError, register


def _g(c: GradContext, name: str, x: Any) -> Any:
    return c.apply(name, x)


Grad = Callable[[GradContext], Any]

# name -> (ufunc, d/dx as a graph expression of (c, x, out, g) or None for zero, docstring)
_UNARY_FLOAT: dict[str, tuple[np.ufunc | None, Callable[..., Any] | None, str]] = {
    "sin": (np.sin, lambda c, x, y, g: g * _g(c, "cos", x), "Sine."),
    "cos": (np.cos, lambda c, x, y, g: -(g * _g(c, "sin", x)), "Cosine."),
    "tan": (np.tan, lambda c, x, y, g: g * (1.0 + y * y), "Tangent."),
    "asin": (np.arcsin, lambda c, x, y, g: g * _g(c, "rsqrt", 1.0 - x * x), "Inverse sine (gradient inf at ±1)."),
    "acos": (np.arccos, lambda c, x, y, g: -(g * _g(c, "rsqrt", 1.0 - x * x)),
             "Inverse cosine (gradient -inf at ±1)."),
    "atan": (np.arctan, lambda c, x, y, g: g / (1.0 + x * x), "Inverse tangent."),
    "sinh": (np.sinh, lambda c, x, y, g: g * _g(c, "cosh", x), "Hyperbolic sine."),
    "cosh": (np.cosh, lambda c, x, y, g: g * _g(c, "sinh", x), "Hyperbolic cosine."),
    "asinh": (np.arcsinh, lambda c, x, y, g: g * _g(c, "rsqrt", x * x + 1.0), "Inverse hyperbolic sine."),
    "acosh": (np.arccosh, lambda c, x, y, g: g * _g(c, "rsqrt", x * x - 1.0),
              "Inverse hyperbolic cosine (gradient inf at 1)."),
    "atanh": (np.arctanh, lambda c, x, y, g: g / (1.0 - x * x), "Inverse hyperbolic tangent (gradient inf at ±1)."),
    "log2": (np.log2, lambda c, x, y, g: g / (x * math.log(2.0)), "Base-2 logarithm."),
    "log10": (np.log10, lambda c, x, y, g: g / (x * math.log(10.0)), "Base-10 logarithm."),
    "log1p": (np.log1p, lambda c, x, y, g: g / (x + 1.0), "log(1 + x), accurate near 0."),
    "expm1": (np.expm1, lambda c, x, y, g: g * (y + 1.0), "exp(x) - 1, accurate near 0."),
    "reciprocal": (np.reciprocal, lambda c, x, y, g: -(g * y * y), "1 / x (gradient -inf at 0)."),
    "rsqrt": (None, lambda c, x, y, g: g * y * y * y * -0.5, "1 / sqrt(x) (gradient -inf at 0)."),
}


def _rsqrt_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def rsqrt(x: np.ndarray, out: np.ndarray) -> None:
        with np.errstate(divide="ignore"):
            np.sqrt(x, out=out)
            np.reciprocal(out, out=out)

    return rsqrt


def _unary_grad(fn: Callable[..., Any]) -> Grad:
    return lambda c: [fn(c, c.inputs[0], c.out, c.gout)]


for _name, (_ufunc, _d, _doc) in _UNARY_FLOAT.items():
    register(OpDef(_name, same_shape, _rsqrt_kernel if _ufunc is None else ufunc_kernel(_ufunc), arity=1,
                   inplace=(0,), dtype=floating, grad=_unary_grad(_d), doc=_doc, attr_schema={}))

# Rounding: integer and bool inputs pass through; the gradient is zero, as in PyTorch.
for _name, _ufunc, _doc in (("floor", np.floor, "Largest integer <= x."), ("ceil", np.ceil, "Smallest integer >= x."),
                            ("round", np.rint, "Nearest integer, halves to even (as torch.round)."),
                            ("trunc", np.trunc, "x rounded toward zero.")):
    register(OpDef(_name, same_shape, ufunc_kernel(_ufunc), arity=1, inplace=(0,), dtype=promote_numeric,
                   grad=lambda c: [None], doc=_doc + " Its gradient is 0.", attr_schema={}))

register(OpDef("square", same_shape, ufunc_kernel(np.square), arity=1, inplace=(0,), dtype=promote_numeric,
               grad=lambda c: [c.gout * c.inputs[0] * 2.0], doc="x * x.", attr_schema={}))


def _copysign_grad(c: GradContext) -> list:
    # PyTorch: d/da = out / a, taken as 0 where a == 0; no gradient for the sign source b.
    a = c.inputs[0]
    zero = c.apply("equal", a, 0.0)
    ratio = where(c, zero, 0.0, c.out / where(c, zero, 1.0, a))  # no 0/0 computed where it is masked
    return [c.gout * ratio, None]


register(OpDef("copysign", broadcast_rule, ufunc_kernel(np.copysign), arity=2, inplace=(0, 1), dtype=floating,
               grad=_copysign_grad, doc="|a| with the sign of b (gradient 0 at a == 0, none for b).", attr_schema={}))


# -- integer division and remainder (PyTorch semantics: floor division, remainder takes the divisor's sign)
def _floor_div_grad(c: GradContext) -> list:
    return [None, None]


register(OpDef("floor_divide", broadcast_rule, ufunc_kernel(np.floor_divide), arity=2, dtype=promote_numeric,
               grad=_floor_div_grad, doc="floor(a / b) (the // operator); its gradient is 0.", attr_schema={}))


def _trunc_divide_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    integer = np.dtype(dtype).kind in "iu"

    def trunc_divide(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        if integer:  # C-style: the quotient rounded toward zero, exactly
            q = np.floor_divide(a, b)
            q += ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0))).astype(q.dtype)
            np.copyto(out, q)
        else:
            np.divide(a, b, out=out)
            np.trunc(out, out=out)

    return trunc_divide


register(OpDef("trunc_divide", broadcast_rule, _trunc_divide_kernel, arity=2, dtype=promote_numeric,
               grad=_floor_div_grad, doc="trunc(a / b): division rounded toward zero; its gradient is 0.",
               attr_schema={}))


def _mod_grad(rounding: str) -> Grad:
    # a - b * q(a / b): d/da = 1, d/db = -q(a / b), q the rounding of the quotient
    def grad(c: GradContext) -> list:
        a, b = c.inputs
        return [c.gout, -(c.gout * c.apply(rounding, a / b))]

    return grad


register(OpDef("remainder", broadcast_rule, ufunc_kernel(np.remainder), arity=2, dtype=promote_numeric,
               grad=_mod_grad("floor"), doc="a - b * floor(a / b) (the % operator): the sign of the divisor b.",
               attr_schema={}))
register(OpDef("fmod", broadcast_rule, ufunc_kernel(np.fmod), arity=2, dtype=promote_numeric,
               grad=_mod_grad("trunc"), doc="a - b * trunc(a / b) (C fmod): the sign of the dividend a.",
               attr_schema={}))


# -- predicates and logical ops: bool results, no gradient -------------------------------------------
for _name, _ufunc, _doc in (("isnan", np.isnan, "True where x is NaN."),
                            ("isfinite", np.isfinite, "True where x is neither inf nor NaN."),
                            ("isinf", np.isinf, "True where x is +inf or -inf.")):
    register(OpDef(_name, same_shape, ufunc_kernel(_ufunc), arity=1, dtype=boolean, doc=_doc, attr_schema={}))

register(OpDef("not_equal", broadcast_rule, ufunc_kernel(np.not_equal), arity=2, dtype=boolean,
               doc="Boolean a != b with broadcasting.", attr_schema={}))


def _isclose_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    rtol, atol, equal_nan = attrs.get("rtol", 1e-5), attrs.get("atol", 1e-8), attrs.get("equal_nan", False)

    def isclose(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))

    return isclose


register(OpDef("isclose", broadcast_rule, _isclose_kernel, arity=2, dtype=boolean,
               label_attrs=("rtol", "atol"), doc="|a - b| <= atol + rtol * |b|, elementwise (torch.isclose).",
               attr_schema={"rtol": Float(1e-5), "atol": Float(1e-8), "equal_nan": Bool(False)}))

for _name, _ufunc in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                      ("logical_xor", np.logical_xor)):
    register(OpDef(_name, broadcast_rule, ufunc_kernel(_ufunc), arity=2, dtype=boolean,
                   doc=f"Boolean {_name[8:]} of the truth values of a and b.", attr_schema={}))
register(OpDef("logical_not", same_shape, ufunc_kernel(np.logical_not), arity=1, dtype=boolean,
               doc="Boolean not of the truth value of x.", attr_schema={}))

for _name, _ufunc in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                      ("bitwise_xor", np.bitwise_xor)):
    register(OpDef(_name, broadcast_rule, ufunc_kernel(_ufunc), arity=2, dtype=logical,
                   doc=f"{_name[8:]} of bool or integer values, bit by bit (the &, |, ^ operators).", attr_schema={}))
register(OpDef("bitwise_not", same_shape, ufunc_kernel(np.invert), arity=1, dtype=logical,
               doc="Bitwise not of bool or integer values (the ~ operator).", attr_schema={}))


# -- dtype conversion -------------------------------------------------------------------------------
def _astype_dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    try:
        target = np.dtype(attrs["dtype"])
    except TypeError:
        raise RuleError(f"unknown dtype {attrs['dtype']!r}", "use e.g. 'float32', 'int64' or 'bool'",
                        kind="dtype") from None
    if target.kind not in "biuf":
        raise RuleError(f"cannot convert to {target}", "use a bool, integer or float dtype", kind="dtype")
    return str(target)


def _astype_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def astype(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x, casting="unsafe")

    return astype


def _astype_grad(c: GradContext) -> list:
    source = c.inputs[0].dtype
    return [c.apply("astype", c.gout, dtype=source) if np.dtype(source).kind == "f" else None]


register(OpDef("astype", same_shape, _astype_kernel, arity=1, dtype=_astype_dtype, grad=_astype_grad,
               label_attrs=("dtype",), doc="x converted to `dtype` (float to int truncates toward zero).",
               attr_schema={"dtype": Str(*DTYPES)}))

