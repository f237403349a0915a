"""Elementwise ops with NumPy broadcasting: arithmetic, scalar constants and activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.ops.common import broadcast_rule, same_shape, ufunc_kernel
from graphdl.registry import GradContext, OpDef, register


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
))

# Binary arithmetic. Gradients have the output's shape; autodiff sums them back to each input's shape.
register(OpDef(
    "add", broadcast_rule, ufunc_kernel(np.add), arity=2, inplace=(0, 1),
    grad=lambda c: [c.gout, c.gout],
))
register(OpDef(
    "sub", broadcast_rule, ufunc_kernel(np.subtract), arity=2, inplace=(0, 1),
    grad=lambda c: [c.gout, -c.gout],
))
register(OpDef(
    "mul", broadcast_rule, ufunc_kernel(np.multiply), arity=2, inplace=(0, 1),
    grad=lambda c: [c.gout * c.inputs[1], c.gout * c.inputs[0]],
))
register(OpDef(
    "div", broadcast_rule, ufunc_kernel(np.divide), arity=2, inplace=(0, 1),
    grad=lambda c: [c.gout / c.inputs[1], -(c.gout * c.out) / c.inputs[1]],
))
register(OpDef("neg", same_shape, ufunc_kernel(np.negative), arity=1, inplace=(0,), grad=lambda c: [-c.gout]))
register(OpDef("exp", same_shape, ufunc_kernel(np.exp), arity=1, inplace=(0,), grad=lambda c: [c.gout * c.out]))
register(OpDef("log", same_shape, ufunc_kernel(np.log), arity=1, inplace=(0,), grad=lambda c: [c.gout / c.inputs[0]]))


# ReLU: the gradient is its own op, so that it stays one pass over memory and has a gradient itself.
def _relu_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def relu(x: np.ndarray, out: np.ndarray) -> None:
        np.maximum(x, 0, out=out)

    return relu


def _relu_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    # The bool mask is copied into a float one first: multiplying by a bool array makes NumPy cast
    # through a freshly allocated buffer on every call (and heaviside/sign are several times slower).
    mask = np.empty(out_shape, dtype=bool)
    fmask = np.empty(out_shape, dtype=dtype)

    def relu_grad(g: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.greater(y, 0, out=mask)
        np.copyto(fmask, mask)
        np.multiply(g, fmask, out=out)

    return relu_grad


def _relu_grad(c: GradContext) -> list:
    return [c.apply("relu_grad", c.gout, c.out)]


register(OpDef("relu", same_shape, _relu_kernel, arity=1, inplace=(0,), grad=_relu_grad))
register(OpDef(
    "relu_grad", broadcast_rule, _relu_grad_kernel, arity=2, inplace=(0,), nondiff=(1,),
    grad=lambda c: [c.apply("relu_grad", c.gout, c.inputs[1]), None],
    doc="gout where the ReLU output is positive, else 0.",
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
    "sigmoid", same_shape, _sigmoid_kernel, arity=1, inplace=(0,),
    grad=lambda c: [c.gout * (c.out * (1.0 - c.out))],
))
register(OpDef(
    "tanh", same_shape, ufunc_kernel(np.tanh), arity=1, inplace=(0,),
    grad=lambda c: [c.gout * (1.0 - c.out * c.out)],
))
