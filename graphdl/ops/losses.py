"""Loss ops: softmax cross-entropy with integer labels and mean squared error (both batch means)."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.ops.common import check_index_range, label_hint
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


class _RowSoftmax:
    """Preallocated buffers for row-wise softmax pieces of an (n, k) array, without any temporaries.

    Row reductions and row broadcasts go through ``np.dot`` with ones (BLAS, no buffers); a broadcast
    ufunc such as ``x - m[:, None]`` would allocate an iterator buffer on every call.
    """

    def __init__(self, n: int, k: int, dtype: np.dtype) -> None:
        self.n, self.k = n, k
        self.full = np.empty((n, k), dtype=dtype)
        self.col = np.empty((n, 1), dtype=dtype)
        self.row = self.col.reshape(-1)
        self.ones_k = np.ones(k, dtype=dtype)
        self.ones_row = np.ones((1, k), dtype=dtype)
        self.ones_n = np.ones(n, dtype=dtype)
        self.flat_rows = np.arange(n) * k
        self.hint = label_hint(k)
        self.arg = np.empty(n, dtype=np.int64)
        self.idx = np.empty(n, dtype=np.int64)

    def label_index(self, labels: np.ndarray) -> np.ndarray:
        """Flat indices of the labelled entries; raises InputValueError if a label is outside [0, k)."""
        check_index_range(labels, self.k, 1, "label", self.hint)
        return np.add(self.flat_rows, labels, out=self.idx)

    def exp_shifted(self, x: np.ndarray, out: np.ndarray) -> None:
        """out = exp(x - rowmax(x)); self.row = sum of each row of out."""
        np.argmax(x, axis=1, out=self.arg)
        np.add(self.arg, self.flat_rows, out=self.arg)
        np.take(x.reshape(-1), self.arg, out=self.row, mode="clip")
        np.dot(self.col, self.ones_row, out=self.full)
        np.subtract(x, self.full, out=out)
        np.exp(out, out=out)
        np.dot(out, self.ones_k, out=self.row)


def _sce_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = in_shapes[0]
    rs = _RowSoftmax(n, k, dtype)
    shifted = np.empty((n, k), dtype=dtype)
    picked = np.empty(n, dtype=dtype)

    def softmax_cross_entropy(x: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
        idx = rs.label_index(labels)
        np.take(x.reshape(-1), idx, out=picked, mode="clip")
        rs.exp_shifted(x, shifted)  # rs.row = sum exp(x_i - m_i)
        np.log(rs.row, out=rs.row)
        np.add(rs.row, rs.full[:, 0], out=rs.row)  # + m_i: the log-sum-exp of each row
        # loss = mean_i (logsumexp(x_i) - x_{i,y_i})
        out[...] = (np.dot(rs.row, rs.ones_n) - np.dot(picked, rs.ones_n)) / n

    return softmax_cross_entropy


def _sce_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = out_shape
    rs = _RowSoftmax(n, k, dtype)
    scale = np.empty((), dtype=dtype)
    picked = np.empty(n, dtype=dtype)

    def softmax_cross_entropy_grad(x: np.ndarray, labels: np.ndarray, g: np.ndarray,
                                   out: np.ndarray) -> None:
        idx = rs.label_index(labels)
        rs.exp_shifted(x, out)
        np.multiply(g, 1.0 / n, out=scale)
        np.divide(scale, rs.row, out=rs.row)  # g / (n * rowsum)
        np.dot(rs.col, rs.ones_row, out=rs.full)
        np.multiply(out, rs.full, out=out)  # softmax * g / n
        flat = out.reshape(-1)
        np.take(flat, idx, out=picked, mode="clip")
        np.subtract(picked, scale, out=picked)
        np.put(flat, idx, picked, mode="clip")

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
