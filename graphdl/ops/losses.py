"""Loss ops: softmax cross-entropy with integer labels and mean squared error (both batch means)."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.attrs import Int
from graphdl.ops.common import agree, check_index_range, label_hint
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
               arity=2, nondiff=(1,), doc="Mean over the batch of -log softmax(logits)[label].", attr_schema={}))
register(OpDef(
    "softmax_cross_entropy_grad", lambda s, a: s[0], _sce_grad_kernel, arity=3, nondiff=(1,),
    dtype=lambda d, a: d[0], doc="(softmax(logits) - onehot(labels)) * g / batch.", attr_schema={},
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
               doc="Mean over all elements of (prediction - target)^2.", attr_schema={}))


# -- class losses with per-class weights and an ignored label (PyTorch's nll_loss / cross_entropy) -----------
def _class_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    lp, labels = shapes[0], shapes[1]
    if len(lp) != 2 or len(labels) != 1:
        fail(f"needs (samples, classes) log-probabilities and (samples,) labels, got {lp} and {labels}",
             "move the class axis last and flatten the rest (the loss layers do this)")
    if None not in (lp[0], labels[0]) and lp[0] != labels[0]:
        fail(f"log-probabilities have {lp[0]} samples but labels {labels[0]}")
    if len(shapes) == 3 and (len(shapes[2]) != 1 or shapes[2][0] != lp[1]):
        fail(f"weight {shapes[2]} must hold one value per class, ({lp[1]},)")
    return (lp[0],)


def _class_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    if not np.issubdtype(np.dtype(dtypes[1]), np.integer):
        raise RuleError(f"labels must be integer class ids, got {dtypes[1]}", "feed int64 labels", kind="dtype")
    if len(dtypes) == 3 and dtypes[2] != dtypes[0]:
        raise RuleError(f"weight is {dtypes[2]} but the values {dtypes[0]}", "give the weight the graph's dtype",
                        kind="dtype")
    return dtypes[0]


class _Labels:
    """Per-sample class index (0 where ignored), weight and validity of a label vector, checked against k."""

    def __init__(self, n: int, k: int, ignore: int | None, dtype: np.dtype) -> None:
        self.k, self.ignore = k, ignore
        self.rows = np.arange(n)
        self.valid = np.empty(n, dtype=bool)
        self.safe = np.empty(n, dtype=np.int64)
        self.w = np.empty(n, dtype=dtype)
        self.hint = label_hint(k) + ("" if ignore is None else f" (or use ignore_index {ignore} for no label)")

    def __call__(self, labels: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
        """Fills safe/valid and returns w: weight[label] (or 1), 0 for ignored samples."""
        if self.ignore is None:
            self.valid.fill(True)
        else:
            np.not_equal(labels, self.ignore, out=self.valid)
        np.multiply(labels, self.valid, out=self.safe)
        check_index_range(self.safe, self.k, 1, "label", self.hint)  # ignored labels are 0 in safe
        if weight is None:
            np.copyto(self.w, self.valid)
        else:
            np.take(weight, self.safe, out=self.w)
            np.multiply(self.w, self.valid, out=self.w)
        return self.w


def _class_nll_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = in_shapes[0]
    lab = _Labels(n, k, attrs.get("ignore_index"), dtype)

    def class_nll(lp: np.ndarray, labels: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        w = lab(labels, rest[0] if len(rest) == 2 else None)
        np.negative(lp[lab.rows, lab.safe], out=out)
        np.multiply(out, w, out=out)

    return class_nll


def _class_nll_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = out_shape
    lab = _Labels(n, k, attrs.get("ignore_index"), dtype)
    col = np.empty(n, dtype=dtype)

    def class_nll_grad(g: np.ndarray, labels: np.ndarray, like: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        w = lab(labels, rest[0] if len(rest) == 2 else None)
        np.multiply(g, w, out=col)
        out.fill(0)
        out[lab.rows, lab.safe] = -col

    return class_nll_grad


def _class_nll_grad(c: GradContext) -> list:
    lp, labels, *weight = c.inputs
    return [c.apply("class_nll_grad", c.gout, labels, lp, *weight, **c.attrs), None, *(None for _ in weight)]


register(OpDef(
    "class_nll", _class_shape, _class_nll_kernel, grad=_class_nll_grad, dtype=_class_dtype, nondiff=(1, 2),
    label_attrs=("ignore_index",),
    doc="-weight[y_i] * log_probs[i, y_i] per sample (weight 1 without a weight input); 0 where y_i is ignore_index.",
    attr_schema={"ignore_index": Int(None, nullable=True)},
))


def _class_nll_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, labels, like, *weight = shapes
    if not agree(_class_shape((like, labels, *weight), attrs), g):
        fail(f"gradient {g} must have one value per sample of {like}")
    return like


register(OpDef(
    "class_nll_grad", _class_nll_grad_shape, _class_nll_grad_kernel, nondiff=(1, 2, 3), shape_only=(2,),
    dtype=lambda d, a: _class_dtype((d[0], d[1], *d[3:]), a), label_attrs=("ignore_index",),
    grad=lambda c: [c.apply("class_nll", c.gout, c.inputs[1], *c.inputs[3:], **c.attrs), None, None,
                    *(None for _ in c.inputs[3:])],
    doc="Gradient of class_nll: zeros of like's shape with -weight[y_i] * g_i at [i, y_i] (0 where ignored).",
    attr_schema={"ignore_index": Int(None, nullable=True)},
))


def _class_weight_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    lab = _Labels(in_shapes[1][0], in_shapes[0][1], attrs.get("ignore_index"), dtype)

    def class_weight(like: np.ndarray, labels: np.ndarray, *rest: np.ndarray) -> None:
        np.copyto(rest[-1], lab(labels, rest[0] if len(rest) == 2 else None))

    return class_weight


register(OpDef(
    "class_weight", _class_shape, _class_weight_kernel, dtype=_class_dtype, nondiff=(0, 1, 2), shape_only=(0,),
    label_attrs=("ignore_index",),
    doc="weight[y_i] per sample (1 without a weight input), 0 where y_i is ignore_index: the denominator of a "
        "weighted mean. `like` (samples, classes) gives the class count.",
    attr_schema={"ignore_index": Int(None, nullable=True)},
))
