"""Loss layers and regularisation terms: each ends in a node of kind ``loss``, named after the loss.

``reduction`` follows PyTorch: ``"mean"`` (default) and ``"sum"`` give a scalar, ``"none"`` one value
per sample (or per element for the regression losses). A training plan minimises the sum of the
loss outputs it was compiled with, so a regularisation term is simply one more output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.builder import Builder, Tensor
from graphdl.errors import GraphError
from graphdl.ir import NodeKind

REDUCTIONS = ("mean", "sum", "none")
#: The last node of a per-element loss: (op, inputs, attrs).
Final = tuple[str, list[Any], dict[str, Any]]


class Loss:
    """Base of all losses: ``loss(prediction, target)`` adds the loss's nodes; the last one is the loss."""

    op: str = ""

    def __init__(self, reduction: str = "mean", name: str | None = None) -> None:
        if reduction not in REDUCTIONS:
            raise GraphError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.name = name

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        if not isinstance(prediction, Tensor):
            raise GraphError(f"{type(self).__name__} takes a graph node as prediction, got {type(prediction).__name__}")
        g = prediction.graph
        name = self.name or g.fresh(self.op or type(self).__name__.lower())
        g.reserved.add(name)
        try:
            op, inputs, attrs = self.per_element(g, prediction, target)
        finally:
            g.reserved.discard(name)
        if self.reduction == "none":
            return g.apply(op, inputs, attrs, name=name, kind=NodeKind.LOSS)
        values = g.apply(op, inputs, attrs)
        return g.apply(self.reduction, [values], {"axis": None, "keepdims": False}, name=name, kind=NodeKind.LOSS)

    def per_element(self, g: Builder, prediction: Tensor, target: Tensor) -> Final:  # pragma: no cover
        raise NotImplementedError


def _same_shape(loss: Loss, p: Tensor, t: Tensor) -> None:
    if len(p.shape) != len(t.shape) or any(
            a is not None and b is not None and a != b for a, b in zip(p.shape, t.shape)):
        raise GraphError(f"{type(loss).__name__}: prediction '{p.name}' {p.shape} and target '{t.name}' {t.shape} "
                         "must have the same shape; reshape the target (e.g. to (batch, 1))")


class MSE(Loss):
    """(prediction - target)^2, reduced."""

    op = "mse"

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        if self.reduction == "mean":  # one fused node
            g = prediction.graph
            return g.apply("mse", [prediction, target], {}, name=self.name or g.fresh("mse"), kind=NodeKind.LOSS)
        return super().__call__(prediction, target)

    def per_element(self, g: Builder, p: Tensor, t: Tensor) -> Final:
        _same_shape(self, p, t)
        d = p - t
        return "mul", [d, d], {}


class L1(Loss):
    """|prediction - target|, reduced."""

    op = "l1"

    def per_element(self, g: Builder, p: Tensor, t: Tensor) -> Final:
        _same_shape(self, p, t)
        return "abs", [p - t], {}


class Huber(Loss):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2), with d = prediction - target."""

    op = "huber"

    def __init__(self, reduction: str = "mean", delta: float = 1.0, name: str | None = None) -> None:
        super().__init__(reduction, name)
        if delta <= 0:
            raise GraphError(f"Huber: delta must be > 0, got {delta}")
        self.delta = float(delta)

    def per_element(self, g: Builder, p: Tensor, t: Tensor) -> Final:
        _same_shape(self, p, t)
        d = p - t
        a = g.apply("abs", [d])
        return "where", [g.apply("less", [a, self.delta]), d * d * 0.5, (a - 0.5 * self.delta) * self.delta], {}


def _int_labels(t: Tensor) -> bool:
    return np.issubdtype(np.dtype(t.dtype), np.integer)


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) (batch, classes) against integer labels (batch,) or class
    probabilities (batch, classes), with optional label smoothing (PyTorch's ``cross_entropy``)."""

    op = "softmax_cross_entropy"

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, name: str | None = None) -> None:
        super().__init__(reduction, name)
        if not 0.0 <= label_smoothing <= 1.0:
            raise GraphError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        labels = len(target.shape) == 1
        # one fused node (whose dtype rule also explains float labels given by mistake)
        if labels and (not _int_labels(target) or (self.reduction == "mean" and self.label_smoothing == 0)):
            g = prediction.graph
            return g.apply(self.op, [prediction, target], {}, name=self.name or g.fresh(self.op), kind=NodeKind.LOSS)
        return super().__call__(prediction, target)

    def per_element(self, g: Builder, logits: Tensor, target: Tensor) -> Final:
        if len(logits.shape) != 2:
            raise GraphError(f"SoftmaxCrossEntropy: logits '{logits.name}' must be (batch, classes), "
                             f"got {logits.shape}")
        eps, k = self.label_smoothing, logits.shape[1]
        lsm = g.apply("log_softmax", [logits], {"axis": 1})
        if _int_labels(target):
            picked = g.apply("pick", [lsm, target])
            if eps == 0:
                return "neg", [picked], {}
            return "sub", [picked * -(1.0 - eps), lsm.mean(axis=1) * eps], {}
        _same_shape(self, logits, target)
        probs = target * (1.0 - eps) + eps / k if eps else target
        return "neg", [(probs * lsm).sum(axis=1)], {}


class NLL(Loss):
    """-log_probs[i, label_i] for (batch, classes) log-probabilities and integer labels."""

    op = "nll"

    def per_element(self, g: Builder, log_probs: Tensor, labels: Tensor) -> Final:
        return "neg", [g.apply("pick", [log_probs, labels])], {}


class BinaryCrossEntropyWithLogits(Loss):
    """-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), computed as max(x, 0) - x t + softplus(-|x|)."""

    op = "bce_with_logits"

    def per_element(self, g: Builder, x: Tensor, t: Tensor) -> Final:
        _same_shape(self, x, t)
        tail = g.apply("softplus", [-g.apply("abs", [x])])
        return "add", [g.apply("relu", [x]) - x * t, tail], {}


def _penalty(kind: str, params: Sequence[Tensor], weight: float, name: str | None) -> Tensor:
    if not params:
        raise GraphError(f"{kind}_penalty needs at least one parameter")
    g = params[0].graph
    terms = [(g.apply("abs", [p]) if kind == "l1" else p * p).sum() for p in params]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return g.apply("mul", [total, float(weight)], name=name or g.fresh(f"{kind}_penalty"), kind=NodeKind.LOSS)


def l1_penalty(params: Sequence[Tensor], weight: float, name: str | None = None) -> Tensor:
    """weight * sum of |p| over the given parameters: a loss output to train with (e.g. layer.params["W"])."""
    return _penalty("l1", params, weight, name)


def l2_penalty(params: Sequence[Tensor], weight: float, name: str | None = None) -> Tensor:
    """weight * sum of p^2 over the given parameters (no factor 1/2)."""
    return _penalty("l2", params, weight, name)
