"""Loss layers and regularisation terms: each ends in a node of kind ``loss``, named after the loss.

``reduction`` follows PyTorch: ``"mean"`` (default) and ``"sum"`` give a scalar, ``"none"`` one value
per sample (or per element for the regression losses). The class losses also take PyTorch's ``weight``,
``ignore_index`` and K-dimensional inputs; BCE with logits takes ``weight`` and ``pos_weight``. A training
plan minimises the one objective it was compiled with, so add a regularisation term to that objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.builder import Builder, Tensor
from graphdl.errors import GraphError, real_number
from graphdl.ir import NodeKind

REDUCTIONS = ("mean", "sum", "none")
#: The last node of a per-element loss: (op, inputs, attrs).
Final = tuple[str, list[Any], dict[str, Any]]


class Loss:
    """Base of all losses: ``loss(prediction, target)`` adds the loss's nodes; the last one is the loss."""

    op: str = ""

    def __init__(self, reduction: str = "mean", name: str | None = None) -> None:
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
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
        if real_number(delta, "Huber: delta", GraphError) <= 0:
            raise GraphError(f"Huber: delta must be > 0, got {delta}")
        self.delta = float(delta)

    def per_element(self, g: Builder, p: Tensor, t: Tensor) -> Final:
        _same_shape(self, p, t)
        d = p - t
        a = g.apply("abs", [d])
        return "where", [g.apply("less", [a, self.delta]), d * d * 0.5, (a - 0.5 * self.delta) * self.delta], {}


def _int_labels(t: Tensor) -> bool:
    return np.issubdtype(np.dtype(t.dtype), np.integer)


def _as_constant(g: Builder, value: Any, what: str, owner: str) -> Tensor | None:
    """A weight given as a graph node, or an array stored as a constant of the graph's dtype."""
    if value is None or isinstance(value, Tensor):
        return value
    arr = np.asarray(value, dtype=g.dtype)
    if not hasattr(g, "stored"):
        raise GraphError(f"{owner}: pass {what} as a graph node (gd.constant) here")
    return g.stored(g.fresh(f"{owner.lower()}.{what}"), arr, NodeKind.CONSTANT)


def _classes_last(g: Builder, x: Tensor, what: str, owner: str) -> Tensor:
    """(N, C, d1, ..., dk) -> (N * d1 * ... * dk, C): the K-dimensional case as one batch of samples."""
    if len(x.shape) < 2:
        raise GraphError(f"{owner}: {what} '{x.name}' must be (batch, classes, ...), got {x.shape}")
    if len(x.shape) == 2:
        return x
    nd = len(x.shape)
    moved = g.apply("transpose", [x], {"axes": (0, *range(2, nd), 1)})
    return g.apply("reshape", [moved], {"shape": (-1, x.shape[1])})


class _ClassLoss(Loss):
    """Shared by the class losses: class weights, ignore_index, K-dimensional inputs, PyTorch's reductions
    (a weighted mean divides by the summed weights of the targets that are not ignored)."""

    def __init__(self, reduction: str = "mean", name: str | None = None, weight: Any = None,
                 ignore_index: int | None = None) -> None:
        super().__init__(reduction, name)
        self.weight, self.ignore_index = weight, ignore_index

    def plain(self) -> bool:
        return self.weight is None and self.ignore_index is None

    def class_loss(self, prediction: Tensor, target: Tensor, log_probs: bool, eps: float = 0.0) -> Tensor:
        g, owner = prediction.graph, type(self).__name__
        name = self.name or g.fresh(self.op)
        g.reserved.add(name)
        try:
            x = _classes_last(g, prediction, "the prediction", owner)
            lp = x if log_probs else g.apply("log_softmax", [x], {"axis": 1})
            weight = _as_constant(g, self.weight, "weight", owner)
            k = prediction.shape[1]
            if weight is not None and tuple(weight.shape) != (k,):
                raise GraphError(f"{owner}: weight '{weight.name}' {weight.shape} must have one value per class ({k},)")
            wts = [weight] if weight is not None else []
            if _int_labels(target):
                want = (prediction.shape[0], *prediction.shape[2:])
                if len(target.shape) != len(want) or any(
                        a is not None and b is not None and a != b for a, b in zip(target.shape, want)):
                    raise GraphError(f"{owner}: labels '{target.name}' {target.shape} must have the prediction's "
                                     f"shape without the class axis, {want}")
                labels = g.apply("reshape", [target], {"shape": (-1,)}) if len(target.shape) > 1 else target
                ig = {"ignore_index": self.ignore_index}
                per = g.apply("class_nll", [lp, labels, *wts], ig)
                if eps:
                    smooth = -((lp * weight) if weight is not None else lp).sum(axis=1)
                    if self.ignore_index is not None:
                        smooth = smooth * g.apply("class_weight", [lp, labels], ig)
                    per = per * (1.0 - eps) + smooth * (eps / k)
                denominator = g.apply("class_weight", [lp, labels, *wts], ig) if not self.plain() else None
                shape = target.shape
            else:
                if self.ignore_index is not None:
                    raise GraphError(f"{owner}: ignore_index applies to integer labels, not class probabilities")
                if tuple(target.shape) != tuple(prediction.shape):
                    raise GraphError(f"{owner}: probabilities '{target.name}' {target.shape} must have the "
                                     f"prediction's shape {prediction.shape}")
                probs = _classes_last(g, target, "the target", owner)
                if eps:
                    probs = probs * (1.0 - eps) + eps / k
                per = -((probs * lp * weight) if weight is not None else probs * lp).sum(axis=1)
                denominator, shape = None, (prediction.shape[0], *prediction.shape[2:])
        finally:
            g.reserved.discard(name)
        if self.reduction == "none":
            target_shape = tuple(-1 if d is None else d for d in shape)
            return g.apply("reshape", [per], {"shape": target_shape}, name=name, kind=NodeKind.LOSS)
        if self.reduction == "sum" or denominator is not None:
            total = g.apply("sum", [per], {"axis": None, "keepdims": False})
            if self.reduction == "sum":
                return g.apply("mul", [total, 1.0], name=name, kind=NodeKind.LOSS)
            count = g.apply("sum", [denominator], {"axis": None, "keepdims": False})
            return g.apply("div", [total, count], name=name, kind=NodeKind.LOSS)
        return g.apply("mean", [per], {"axis": None, "keepdims": False}, name=name, kind=NodeKind.LOSS)


class SoftmaxCrossEntropy(_ClassLoss):
    """Cross-entropy of softmax(logits) against integer labels or class probabilities, as PyTorch's
    ``cross_entropy``: logits (N, C) or (N, C, d1, ..., dk) with labels (N,) / (N, d1, ..., dk) or
    probabilities of the logits' shape; ``weight`` (C,) per class, ``ignore_index`` (labels equal to it
    count for nothing; default None: no label is ignored, and any label outside [0, C) is an error),
    ``label_smoothing`` in [0, 1]."""

    op = "softmax_cross_entropy"

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, name: str | None = None,
                 weight: Any = None, ignore_index: int | None = None) -> None:
        super().__init__(reduction, name, weight, ignore_index)
        if not 0.0 <= real_number(label_smoothing, "SoftmaxCrossEntropy: label_smoothing", GraphError) <= 1.0:
            raise GraphError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        if not isinstance(prediction, Tensor):
            raise GraphError(f"SoftmaxCrossEntropy takes a graph node as prediction, got {type(prediction).__name__}")
        labels = len(target.shape) == 1 and len(prediction.shape) == 2
        # one fused node (whose dtype rule also explains float labels given by mistake)
        if labels and (not _int_labels(target) or (self.reduction == "mean" and self.label_smoothing == 0
                                                   and self.plain())):
            g = prediction.graph
            return g.apply(self.op, [prediction, target], {}, name=self.name or g.fresh(self.op), kind=NodeKind.LOSS)
        return self.class_loss(prediction, target, log_probs=False, eps=self.label_smoothing)


class NLL(_ClassLoss):
    """-log_probs[i, label_i] (times weight[label_i]) for (N, C) or (N, C, d1, ..., dk) log-probabilities and
    integer labels, as PyTorch's ``nll_loss`` (``weight``, ``ignore_index`` as in SoftmaxCrossEntropy)."""

    op = "nll"

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        if not _int_labels(target):
            raise GraphError(f"NLL: labels '{target.name}' must be integers, got {target.dtype}")
        return self.class_loss(prediction, target, log_probs=True)


class BinaryCrossEntropyWithLogits(Loss):
    """-w (p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), as PyTorch's ``binary_cross_entropy_with_logits``:
    ``weight`` broadcasts against the elements, ``pos_weight`` (p) against the last axis (one per class).
    Computed as (1 - t) x + (1 + (p - 1) t) (softplus(-|x|) + max(-x, 0)), without overflow."""

    op = "bce_with_logits"

    def __init__(self, reduction: str = "mean", name: str | None = None, weight: Any = None,
                 pos_weight: Any = None) -> None:
        super().__init__(reduction, name)
        self.weight, self.pos_weight = weight, pos_weight

    def per_element(self, g: Builder, x: Tensor, t: Tensor) -> Final:
        _same_shape(self, x, t)
        tail = g.apply("softplus", [-g.apply("abs", [x])])
        weight = _as_constant(g, self.weight, "weight", "BCE")
        pos_weight = _as_constant(g, self.pos_weight, "pos_weight", "BCE")
        if pos_weight is None:
            per = [g.apply("relu", [x]) - x * t, tail]
        else:
            log_weight = (pos_weight - 1.0) * t + 1.0
            per = [x - x * t, log_weight * (tail + g.apply("relu", [-x]))]
        if weight is None:
            return "add", per, {}
        return "mul", [g.apply("add", per), weight], {}


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
