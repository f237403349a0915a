"""Activation functions beyond relu/sigmoid/tanh: leaky_relu, elu, gelu (erf and tanh), silu, softplus,
relu6, hardsigmoid, hardswish, selu, celu, mish, softsign and logsigmoid.

Gradient rules use differentiable ops (where, exp, erf, sigmoid), so second order works.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from graphdl.attrs import Float, Str
from graphdl.errors import GraphError
from graphdl.ops.api import _apply
from graphdl.ops.common import same_shape
from graphdl.ops.elementwise import _erf_kernel, _sigmoid_kernel, where
from graphdl.registry import GradContext, OpDef, fail, register

if TYPE_CHECKING:
    from graphdl.tensor import Tensor


def _leaky_relu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    slope = attrs.get("negative_slope", 0.01)
    tmp = np.empty(out_shape, dtype=dtype)
    mask = np.empty(out_shape, dtype=bool)

    def leaky_relu(x: np.ndarray, out: np.ndarray) -> None:
        np.greater(x, 0, out=mask)
        np.multiply(x, slope, out=tmp)
        np.copyto(tmp, x, where=mask)
        np.copyto(out, tmp)

    return leaky_relu


register(OpDef(
    "leaky_relu", same_shape, _leaky_relu_kernel, arity=1, inplace=(0,), label_attrs=("negative_slope",),
    grad=lambda c: [c.gout * where(c, c.apply("greater", c.inputs[0], 0.0), 1.0,
                                   float(c.attrs.get("negative_slope", 0.01)))],
    doc="x where x > 0, else negative_slope * x.", attr_schema={"negative_slope": Float(0.01)},
))


def _elu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    alpha = attrs.get("alpha", 1.0)
    tmp = np.empty(out_shape, dtype=dtype)
    mask = np.empty(out_shape, dtype=bool)

    def elu(x: np.ndarray, out: np.ndarray) -> None:
        np.greater(x, 0, out=mask)
        np.minimum(x, 0, out=tmp)
        np.expm1(tmp, out=tmp)
        np.multiply(tmp, alpha, out=tmp)
        np.copyto(tmp, x, where=mask)
        np.copyto(out, tmp)

    return elu


def _elu_grad(c: GradContext) -> list:
    x, alpha = c.inputs[0], float(c.attrs.get("alpha", 1.0))
    neg = c.apply("exp", c.apply("minimum", x, 0.0)) * alpha
    return [c.gout * where(c, c.apply("greater", x, 0.0), 1.0, neg)]


register(OpDef("elu", same_shape, _elu_kernel, arity=1, inplace=(0,), grad=_elu_grad, label_attrs=("alpha",),
               doc="x where x > 0, else alpha * (exp(x) - 1).", attr_schema={"alpha": Float(1.0)}))

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _gelu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    tanh_form = attrs.get("approximate", "none") == "tanh"
    erf = _erf_kernel(attrs, in_shapes, out_shape, dtype)
    tmp = np.empty(out_shape, dtype=dtype)

    def gelu(x: np.ndarray, out: np.ndarray) -> None:
        if tanh_form:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            np.multiply(x, x, out=tmp)
            np.multiply(tmp, _GELU_C, out=tmp)
            np.add(tmp, 1.0, out=tmp)
            np.multiply(tmp, x, out=tmp)
            np.multiply(tmp, _SQRT_2_OVER_PI, out=tmp)
            np.tanh(tmp, out=tmp)
        else:  # 0.5 x (1 + erf(x / sqrt(2)))
            np.multiply(x, 1.0 / math.sqrt(2.0), out=tmp)
            erf(tmp, tmp)
        np.add(tmp, 1.0, out=tmp)
        np.multiply(tmp, x, out=out)
        out *= 0.5

    return gelu


def _gelu_grad(c: GradContext) -> list:
    x = c.inputs[0]
    if c.attrs.get("approximate", "none") == "tanh":
        t = c.apply("tanh", (x + x * x * x * _GELU_C) * _SQRT_2_OVER_PI)
        du = (x * x * (3.0 * _GELU_C) + 1.0) * _SQRT_2_OVER_PI
        d = (t + 1.0) * 0.5 + x * 0.5 * (1.0 - t * t) * du
    else:
        cdf = (c.apply("erf", x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5
        d = cdf + x * c.apply("exp", x * x * -0.5) * (1.0 / math.sqrt(2.0 * math.pi))
    return [c.gout * d]


def _gelu_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    if attrs.get("approximate", "none") not in ("none", "tanh"):
        fail(f"approximate must be 'none' or 'tanh', got {attrs.get('approximate')!r}")
    return shapes[0]


register(OpDef("gelu", _gelu_shape, _gelu_kernel, arity=1, inplace=(0,), grad=_gelu_grad,
               label_attrs=("approximate",), doc="x * Phi(x) (erf form) or its tanh approximation.",
               attr_schema={"approximate": Str("none", "tanh", default="none")}))


def _silu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    sigmoid = _sigmoid_kernel(attrs, in_shapes, out_shape, dtype)
    tmp = np.empty(out_shape, dtype=dtype)

    def silu(x: np.ndarray, out: np.ndarray) -> None:
        sigmoid(x, tmp)
        np.multiply(tmp, x, out=out)

    return silu


def _silu_grad(c: GradContext) -> list:
    x = c.inputs[0]
    s = c.apply("sigmoid", x)
    return [c.gout * (s * (x * (1.0 - s) + 1.0))]


register(OpDef("silu", same_shape, _silu_kernel, arity=1, inplace=(0,), grad=_silu_grad,
               doc="x * sigmoid(x).", attr_schema={}))


def _softplus_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    beta, threshold = attrs.get("beta", 1.0), attrs.get("threshold", 20.0)
    tmp = np.empty(out_shape, dtype=dtype)
    mask = np.empty(out_shape, dtype=bool)

    def softplus(x: np.ndarray, out: np.ndarray) -> None:
        # log(1 + exp(beta x)) / beta, linear above the threshold (as PyTorch).
        np.multiply(x, beta, out=tmp)
        np.greater(tmp, threshold, out=mask)
        np.logaddexp(0.0, tmp, out=tmp)
        np.multiply(tmp, 1.0 / beta, out=tmp)
        np.copyto(tmp, x, where=mask)
        np.copyto(out, tmp)

    return softplus


def _softplus_grad(c: GradContext) -> list:
    x, beta, threshold = c.inputs[0], float(c.attrs.get("beta", 1.0)), float(c.attrs.get("threshold", 20.0))
    bx = x * beta
    return [c.gout * where(c, c.apply("greater", bx, threshold), 1.0, c.apply("sigmoid", bx))]


register(OpDef("softplus", same_shape, _softplus_kernel, arity=1, inplace=(0,), grad=_softplus_grad,
               label_attrs=("beta",), doc="log(1 + exp(beta x)) / beta; x where beta x > threshold.",
               attr_schema={"beta": Float(1.0), "threshold": Float(20.0)}))


# -- PyTorch's remaining activations. Gradients at the kinks follow PyTorch's backward kernels. ------------
def _alias_safe(fn: Callable[..., None]) -> Callable[..., Callable[..., None]]:
    """A kernel factory for ``fn(x, tmp, out)`` that computes into a scratch buffer (out may alias x)."""

    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        tmp = np.empty(out_shape, dtype=dtype)
        res = np.empty(out_shape, dtype=dtype)

        def kernel(x: np.ndarray, out: np.ndarray) -> None:
            fn(attrs, x, tmp, res)
            np.copyto(out, res)

        return kernel

    return factory


def _between(c: GradContext, x: Tensor, lo: float, hi: float, inside: Tensor | float,
             outside: Tensor | float = 0.0) -> Tensor:
    """``inside`` where lo < x < hi (strictly), else ``outside``."""
    return where(c, c.apply("greater", x, lo), where(c, c.apply("less", x, hi), inside, outside), outside)


def _relu6(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    np.clip(x, 0.0, 6.0, out=res)


def _hardsigmoid(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    np.multiply(x, 1.0 / 6.0, out=res)
    np.add(res, 0.5, out=res)
    np.clip(res, 0.0, 1.0, out=res)


def _hardswish(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    np.add(x, 3.0, out=tmp)
    np.clip(tmp, 0.0, 6.0, out=tmp)
    np.multiply(tmp, x, out=res)
    np.multiply(res, 1.0 / 6.0, out=res)


def _hardswish_grad(c: GradContext) -> list:
    # PyTorch: 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3, 1 from 3 on
    x = c.inputs[0]
    mid = where(c, c.apply("less", x, 3.0), x * (1.0 / 3.0) + 0.5, 1.0)
    return [c.gout * where(c, c.apply("less_equal", x, -3.0), 0.0, mid)]


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _elu_like(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray, alpha: float, scale: float,
              input_scale: float) -> None:
    np.minimum(x, 0.0, out=tmp)
    np.multiply(tmp, input_scale, out=tmp)
    np.expm1(tmp, out=tmp)
    np.multiply(tmp, alpha * scale, out=tmp)
    np.maximum(x, 0.0, out=res)
    np.multiply(res, scale, out=res)
    np.add(res, tmp, out=res)


def _selu(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    _elu_like(attrs, x, tmp, res, SELU_ALPHA, SELU_SCALE, 1.0)


def _celu(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    alpha = float(attrs.get("alpha", 1.0))
    _elu_like(attrs, x, tmp, res, alpha, 1.0, 1.0 / alpha)


def _selu_grad(c: GradContext) -> list:
    # x <= 0 takes the exponential branch, as PyTorch's elu_backward
    x = c.inputs[0]
    neg = c.apply("exp", c.apply("minimum", x, 0.0)) * (SELU_ALPHA * SELU_SCALE)
    return [c.gout * where(c, c.apply("greater", x, 0.0), SELU_SCALE, neg)]


def _celu_grad(c: GradContext) -> list:
    x, alpha = c.inputs[0], float(c.attrs.get("alpha", 1.0))
    neg = c.apply("exp", c.apply("minimum", x, 0.0) * (1.0 / alpha))
    return [c.gout * where(c, c.apply("greater", x, 0.0), 1.0, neg)]


def _mish(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    np.logaddexp(0.0, x, out=tmp)  # softplus
    np.tanh(tmp, out=tmp)
    np.multiply(x, tmp, out=res)


def _mish_grad(c: GradContext) -> list:
    x = c.inputs[0]
    t = c.apply("tanh", c.apply("softplus", x))
    return [c.gout * (t + x * c.apply("sigmoid", x) * (1.0 - t * t))]


def _softsign(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    np.abs(x, out=tmp)
    np.add(tmp, 1.0, out=tmp)
    np.divide(x, tmp, out=res)


def _softsign_grad(c: GradContext) -> list:
    d = c.apply("abs", c.inputs[0]) + 1.0
    return [c.gout / (d * d)]


def _logsigmoid(attrs: dict, x: np.ndarray, tmp: np.ndarray, res: np.ndarray) -> None:
    # min(x, 0) - log1p(exp(-|x|)): no overflow at any magnitude
    np.abs(x, out=tmp)
    np.negative(tmp, out=tmp)
    np.exp(tmp, out=tmp)
    np.log1p(tmp, out=tmp)
    np.minimum(x, 0.0, out=res)
    np.subtract(res, tmp, out=res)


_MORE = [
    ("relu6", _relu6, lambda c: [_between(c, c.inputs[0], 0.0, 6.0, c.gout)], (),
     "min(max(x, 0), 6); the gradient is 0 at both kinks (PyTorch)."),
    ("hardsigmoid", _hardsigmoid, lambda c: [_between(c, c.inputs[0], -3.0, 3.0, c.gout * (1.0 / 6.0))], (),
     "min(max(x / 6 + 1/2, 0), 1)."),
    ("hardswish", _hardswish, _hardswish_grad, (), "x * min(max(x + 3, 0), 6) / 6."),
    ("selu", _selu, _selu_grad, (), "scale * (x if x > 0 else alpha * (exp(x) - 1)) with the SELU constants."),
    ("celu", _celu, _celu_grad, ("alpha",), "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."),
    ("mish", _mish, _mish_grad, (), "x * tanh(softplus(x))."),
    ("softsign", _softsign, _softsign_grad, (), "x / (1 + |x|)."),
    ("logsigmoid", _logsigmoid, lambda c: [c.gout * c.apply("sigmoid", -c.inputs[0])], (),
     "log(sigmoid(x)), computed without overflow."),
]

for _name, _fn, _grad, _labels, _doc in _MORE:
    register(OpDef(_name, same_shape, _alias_safe(_fn), arity=1, inplace=(0,), grad=_grad, label_attrs=_labels,
                   doc=_doc, attr_schema={k: Float(1.0) for k in _labels}))


def _unary(op: str, x: Tensor, **attrs: Any) -> Tensor:
    return _apply(op, x, **attrs)


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6)."""
    return _unary("relu6", x)


def hardsigmoid(x: Tensor) -> Tensor:
    """min(max(x / 6 + 1/2, 0), 1)."""
    return _unary("hardsigmoid", x)


def hardswish(x: Tensor) -> Tensor:
    """x * hardsigmoid(x)."""
    return _unary("hardswish", x)


def selu(x: Tensor) -> Tensor:
    """Scaled ELU with the self-normalising constants."""
    return _unary("selu", x)


def celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.number) or alpha == 0:
        raise GraphError(f"celu: alpha must be a number other than 0, got {alpha!r:.40}")
    return _unary("celu", x, alpha=float(alpha))


def mish(x: Tensor) -> Tensor:
    """x * tanh(softplus(x))."""
    return _unary("mish", x)


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return _unary("softsign", x)


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) without overflow."""
    return _unary("logsigmoid", x)
