"""Activation functions beyond relu/sigmoid/tanh: leaky_relu, elu, gelu (erf and tanh), silu, softplus.

Gradient rules use differentiable ops (where, exp, erf, sigmoid), so second order works.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ops.common import same_shape
from graphdl.ops.elementwise import _erf_kernel, _sigmoid_kernel, where
from graphdl.registry import Float, GradContext, OpDef, Str, fail, register


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
