"""The functional API of the elementwise math functions (NumPy/PyTorch names): exponentials and logarithms,
trigonometric and hyperbolic functions, powers, reciprocals and roots, abs, sign, clip, rounding, copysign,
and the NaN, infinity and closeness tests.

Float-only functions (``exp``, ``sin``, ``sqrt`` ...) convert integer and bool inputs to the graph's float
dtype first, as PyTorch does; the others (``square``, rounding, the tests) pass their inputs on unconverted.
"""

from __future__ import annotations

from graphdl.ops.api import _apply, _float_apply
from graphdl.tensor import Tensor


def exp(a: Tensor) -> Tensor:
    """e ** a."""
    return _float_apply("exp", a)


def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    return _float_apply("log", a)


def sqrt(a: Tensor) -> Tensor:
    """Square root."""
    return _float_apply("sqrt", a)


def sigmoid(a: Tensor) -> Tensor:
    """1 / (1 + exp(-a))."""
    return _float_apply("sigmoid", a)


def tanh(a: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _float_apply("tanh", a)


def sin(a: Tensor) -> Tensor:
    """Sine."""
    return _float_apply("sin", a)


def cos(a: Tensor) -> Tensor:
    """Cosine."""
    return _float_apply("cos", a)


def tan(a: Tensor) -> Tensor:
    """Tangent."""
    return _float_apply("tan", a)


def asin(a: Tensor) -> Tensor:
    """Inverse sine (numpy.arcsin)."""
    return _float_apply("asin", a)


def acos(a: Tensor) -> Tensor:
    """Inverse cosine (numpy.arccos)."""
    return _float_apply("acos", a)


def atan(a: Tensor) -> Tensor:
    """Inverse tangent (numpy.arctan)."""
    return _float_apply("atan", a)


def sinh(a: Tensor) -> Tensor:
    """Hyperbolic sine."""
    return _float_apply("sinh", a)


def cosh(a: Tensor) -> Tensor:
    """Hyperbolic cosine."""
    return _float_apply("cosh", a)


def asinh(a: Tensor) -> Tensor:
    """Inverse hyperbolic sine."""
    return _float_apply("asinh", a)


def acosh(a: Tensor) -> Tensor:
    """Inverse hyperbolic cosine."""
    return _float_apply("acosh", a)


def atanh(a: Tensor) -> Tensor:
    """Inverse hyperbolic tangent."""
    return _float_apply("atanh", a)


def log2(a: Tensor) -> Tensor:
    """Base-2 logarithm."""
    return _float_apply("log2", a)


def log10(a: Tensor) -> Tensor:
    """Base-10 logarithm."""
    return _float_apply("log10", a)


def log1p(a: Tensor) -> Tensor:
    """log(1 + a), accurate for small a."""
    return _float_apply("log1p", a)


def expm1(a: Tensor) -> Tensor:
    """exp(a) - 1, accurate for small a."""
    return _float_apply("expm1", a)


def reciprocal(a: Tensor) -> Tensor:
    """1 / a."""
    return _float_apply("reciprocal", a)


def rsqrt(a: Tensor) -> Tensor:
    """1 / sqrt(a)."""
    return _float_apply("rsqrt", a)


def square(a: Tensor) -> Tensor:
    """a * a (integers stay integers)."""
    return _apply("square", a)


def floor(a: Tensor) -> Tensor:
    """Largest integer <= a (gradient 0)."""
    return _apply("floor", a)


def ceil(a: Tensor) -> Tensor:
    """Smallest integer >= a (gradient 0)."""
    return _apply("ceil", a)


def round(a: Tensor) -> Tensor:
    """Nearest integer, halves to even, as torch.round (gradient 0)."""
    return _apply("round", a)


def trunc(a: Tensor) -> Tensor:
    """a rounded toward zero (gradient 0)."""
    return _apply("trunc", a)


def pow(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a ** b, elementwise (broadcast)."""
    return _apply("pow", a, b)


def abs(a: Tensor) -> Tensor:
    """|a| (gradient sign(a))."""
    return _apply("abs", a)


def sign(a: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of a (gradient 0)."""
    return _apply("sign", a)


def clip(a: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """a limited to [min, max] (either bound may be None)."""
    return _apply("clip", a, min=min, max=max)


def copysign(a: Tensor | float, b: Tensor | float) -> Tensor:
    """|a| with the sign of b."""
    return _float_apply("copysign", a, b)


def isnan(a: Tensor) -> Tensor:
    """Boolean: a is NaN."""
    return _apply("isnan", a)


def isfinite(a: Tensor) -> Tensor:
    """Boolean: a is neither infinite nor NaN."""
    return _apply("isfinite", a)


def isinf(a: Tensor) -> Tensor:
    """Boolean: a is +inf or -inf."""
    return _apply("isinf", a)


def isclose(a: Tensor | float, b: Tensor | float, rtol: float = 1e-5, atol: float = 1e-8,
            equal_nan: bool = False) -> Tensor:
    """Boolean |a - b| <= atol + rtol * |b| (torch.isclose)."""
    return _apply("isclose", a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


__all__ = ["abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "ceil", "clip", "copysign", "cos", "cosh", "exp",
           "expm1", "floor", "isclose", "isfinite", "isinf", "isnan", "log", "log1p", "log2", "log10", "pow",
           "reciprocal", "round", "rsqrt", "sigmoid", "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh", "trunc"]
