"""Neural-network ops that stay one node each: Linear, softmax, log_softmax and dropout."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Bool, Float, Int
from graphdl.ops.gemm import make_gemm
from graphdl.registry import Effects, GradContext, OpDef, fail, register


def _linear_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, w = shapes[0], shapes[1]
    if len(w) != 2:
        fail(f"weight must be 2-d (in, out), got {w}")
    if len(x) < 1:
        fail("input must have at least 1 dimension")
    if x[-1] is not None and x[-1] != w[0]:
        fail(f"input has {x[-1]} features but the weight expects {w[0]} (W is {w})",
             f"make the previous layer output {w[0]} features, or build this Linear with "
             f"in_features={x[-1]}")
    if len(shapes) == 3 and shapes[2] != (w[1],):
        fail(f"bias has shape {shapes[2]}, expected ({w[1]},)")
    return (*x[:-1], w[1])


def _linear_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    # One GEMM on 2-d views; the bias is copied into out first and the product accumulated onto it
    # (NumPy's broadcast `out += b` would allocate an iterator buffer every step).
    rows, k, n = math.prod(in_shapes[0][:-1]), in_shapes[1][0], in_shapes[1][1]
    gemm = make_gemm(dtype, (rows, n), beta=1.0 if len(in_shapes) == 3 else 0.0)

    flat = len(in_shapes[0]) != 2

    def linear(x: np.ndarray, w: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        if len(rest) == 2:
            np.copyto(out, rest[0])
        if flat:
            x, out = x.reshape(rows, k), out.reshape(rows, n)
        gemm(x, w, out)

    return linear


def _linear_grad(c: GradContext) -> list:
    x, w = c.inputs[0], c.inputs[1]
    g = c.gout
    dx = c.apply("matmul", g, w, transpose_b=True) if len(x.shape) == 2 else c.apply(
        "reshape_like", c.apply("matmul", c.apply("reshape", g, shape=(-1, w.shape[1])), w, transpose_b=True), x)
    if len(x.shape) == 2:
        dw = c.apply("matmul", x, g, transpose_a=True)
    else:
        x2 = c.apply("reshape", x, shape=(-1, w.shape[0]))
        dw = c.apply("matmul", x2, c.apply("reshape", g, shape=(-1, w.shape[1])), transpose_a=True)
    grads = [dx, dw]
    if len(c.inputs) == 3:
        grads.append(c.apply("sum", g, axis=tuple(range(len(x.shape) - 1))))
    return grads


register(OpDef("linear", _linear_shape, _linear_kernel, grad=_linear_grad,
               doc="y = x @ W + b with W of shape (in, out).", attr_schema={}))


def _softmax_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    axis = attrs.get("axis", -1)
    if not -len(shapes[0]) <= axis < len(shapes[0]):
        fail(f"axis {axis} is out of range for a {len(shapes[0])}-d input")
    return shapes[0]


def _softmax_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = attrs.get("axis", -1) % len(out_shape)
    red = np.empty(tuple(1 if i == axis else d for i, d in enumerate(out_shape)), dtype=dtype)

    def softmax(x: np.ndarray, out: np.ndarray) -> None:
        np.max(x, axis=axis, keepdims=True, out=red)
        np.subtract(x, red, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=axis, keepdims=True, out=red)
        np.divide(out, red, out=out)

    return softmax


register(OpDef(
    "softmax", _softmax_shape, _softmax_kernel, arity=1, inplace=(0,), label_attrs=("axis",),
    grad=lambda c: [c.out * (c.gout - (c.gout * c.out).sum(axis=c.attrs.get("axis", -1), keepdims=True))],
    attr_schema={"axis": Int(-1)}, doc="exp(x) / sum(exp(x)) along axis, the maximum subtracted first.",
))


def _log_softmax_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = attrs.get("axis", -1) % len(out_shape)
    red = np.empty(tuple(1 if i == axis else d for i, d in enumerate(out_shape)), dtype=dtype)
    tmp = np.empty(out_shape, dtype=dtype)

    def log_softmax(x: np.ndarray, out: np.ndarray) -> None:
        # x - max - log(sum(exp(x - max))): no overflow at any magnitude
        np.max(x, axis=axis, keepdims=True, out=red)
        np.subtract(x, red, out=out)
        np.exp(out, out=tmp)
        np.sum(tmp, axis=axis, keepdims=True, out=red)
        np.log(red, out=red)
        np.subtract(out, red, out=out)

    return log_softmax


register(OpDef(
    "log_softmax", _softmax_shape, _log_softmax_kernel, arity=1, inplace=(0,), label_attrs=("axis",),
    grad=lambda c: [c.gout - c.apply("exp", c.out) * c.gout.sum(axis=c.attrs.get("axis", -1), keepdims=True)],
    doc="log(softmax(x)) along axis, computed stably.", attr_schema={"axis": Int(-1)},
))


# -- Dropout ---------------------------------------------------------------------------------
def _dropout_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    if not 0.0 <= attrs.get("p", 0.5) <= 1.0:
        fail(f"dropout probability p must be in [0, 1], got {attrs.get('p')}")
    if shapes[1] not in ((), (1,)):
        fail(f"the dropout counter must be a scalar or (1,), got {shapes[1]}")
    return shapes[0], shapes[0]


def _dropout_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    p, seed = attrs.get("p", 0.5), attrs.get("seed", 0)
    active = attrs.get("training", False) and p > 0
    keep = np.empty(out_shapes[0], dtype=bool) if active else None
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    dtype = dtypes[0]

    def dropout(x: np.ndarray, counter: np.ndarray, out: np.ndarray, mask: np.ndarray) -> None:
        if not active:
            np.copyto(out, x)
            mask.fill(1.0)
            return
        # The mask depends only on (seed, counter), so a reloaded model continues the same sequence; it
        # is output 1 (0 or 1/(1-p)), which the gradient multiplies by instead of drawing it again.
        np.random.default_rng([seed, int(counter.reshape(-1)[0])]).random(out=mask, dtype=dtype)
        np.greater_equal(mask, p, out=keep)
        np.multiply(keep, scale, out=mask)
        np.multiply(x, mask, out=out)

    return dropout


register(OpDef(
    "dropout", _dropout_shape, _dropout_kernel, arity=2, inplace=(0,), nondiff=(1,), label_attrs=("p", "training"),
    grad=lambda c: [c.gout * c.outs[1] if c.gout is not None else None, None],  # the mask is no function of x
    dtype=lambda d, a: (d[0], d[0]), modal=True, multi_output=True, effects=Effects(random=True, advances=(1,)),
    doc="Training: zero each entry with probability p and scale the rest by 1/(1-p); inference: identity. "
        "Outputs: y and the mask it multiplied by (0 or 1/(1-p); ones in inference), which the gradient reuses. "
        "The mask is drawn from (seed, counter); a training plan increments the counter after each step.",
        attr_schema={"p": Float(0.5, low=0.0, high=1.0), "seed": Int(0), "training": Bool(False)},
))
