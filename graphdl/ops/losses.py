"""Loss ops: softmax cross-entropy with integer labels and mean squared error (both batch means)."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.registry import GradContext, OpDef, RuleError, fail, register


def _sce_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    logits, labels = shapes[0], shapes[1]
    if len(logits) != 2:
        fail(f"logits must be (batch, classes), got {logits}", "flatten the logits to 2-d first")
    if len(labels) != 1:
        fail(f"labels must be (batch,) integer class ids, got {labels}")
    if None not in (logits[0], labels[0]) and logits[0] != labels[0]:
        fail(f"logits have batch {logits[0]} but labels {labels[0]}")
    return ()


def _sce_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    if not np.issubdtype(np.dtype(dtypes[1]), np.integer):
        raise RuleError(f"labels must be integer class ids, got {dtypes[1]}",
                        "declare the label placeholder with dtype='int64'", kind="dtype")
    if not np.issubdtype(np.dtype(dtypes[0]), np.floating):
        raise RuleError(f"logits must be floating point, got {dtypes[0]}", kind="dtype")
    return dtypes[0]


def _sce_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = in_shapes[0]
    shifted = np.empty((n, k), dtype=dtype)
    mx = np.empty((n, 1), dtype=dtype)
    lse = np.empty((n, 1), dtype=dtype)
    flat_rows = np.arange(n) * k
    idx = np.empty(n, dtype=np.int64)
    picked = np.empty(n, dtype=dtype)

    def softmax_cross_entropy(x: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
        np.max(x, axis=1, keepdims=True, out=mx)
        np.subtract(x, mx, out=shifted)
        np.add(flat_rows, labels, out=idx)
        np.take(shifted.reshape(-1), idx, out=picked)
        np.exp(shifted, out=shifted)
        np.sum(shifted, axis=1, keepdims=True, out=lse)
        np.log(lse, out=lse)
        # loss_i = log(sum exp(x_i - m_i)) - (x_{i,y_i} - m_i)
        out[...] = (lse.sum() - picked.sum()) / n

    return softmax_cross_entropy


def _sce_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = out_shape
    red = np.empty((n, 1), dtype=dtype)
    flat_rows = np.arange(n) * k
    idx = np.empty(n, dtype=np.int64)
    scale = np.empty((), dtype=dtype)

    def softmax_cross_entropy_grad(x: np.ndarray, labels: np.ndarray, g: np.ndarray,
                                   out: np.ndarray) -> None:
        np.max(x, axis=1, keepdims=True, out=red)
        np.subtract(x, red, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=1, keepdims=True, out=red)
        np.divide(out, red, out=out)
        np.multiply(g, 1.0 / n, out=scale)
        out *= scale
        np.add(flat_rows, labels, out=idx)
        flat = out.reshape(-1)
        flat[idx] -= scale

    return softmax_cross_entropy_grad


def _sce_grad(c: GradContext) -> list:
    logits, labels = c.inputs
    return [c.apply("softmax_cross_entropy_grad", logits, labels, c.gout), None]


register(OpDef("softmax_cross_entropy", _sce_shape, _sce_kernel, grad=_sce_grad, dtype=_sce_dtype,
               arity=2, nondiff=(1,), doc="Mean over the batch of -log softmax(logits)[label]."))
register(OpDef(
    "softmax_cross_entropy_grad", lambda s, a: s[0], _sce_grad_kernel, arity=3, nondiff=(1,),
    dtype=lambda d, a: d[0], doc="(softmax(logits) - onehot(labels)) * g / batch.",
))


def _mse_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    p, t = shapes
    if len(p) != len(t) or any(a is not None and b is not None and a != b for a, b in zip(p, t, strict=True)):
        fail(f"prediction {p} and target {t} must have the same shape",
             "reshape the target to the prediction's shape (e.g. (batch, 1))")
    return ()


def _mse_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    diff = np.empty(in_shapes[0], dtype=dtype)
    flat = diff.reshape(-1)

    def mse(p: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
        np.subtract(p, t, out=diff)
        out[...] = np.dot(flat, flat) / max(flat.size, 1)

    return mse


def _mse_grad(c: GradContext) -> list:
    p, t = c.inputs
    dp = (p - t) * c.apply("broadcast_like", c.gout * 2.0, p, axis=None, keepdims=False, mean=True)
    return [dp, -dp]


register(OpDef("mse", _mse_shape, _mse_kernel, grad=_mse_grad, arity=2,
               doc="Mean over all elements of (prediction - target)^2."))
