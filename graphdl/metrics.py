"""Metrics computed streaming over batches: ``reset()``, ``update(output, target)`` per batch, ``result()``.

Each metric checks that it applies to the output's shape and the targets' values and raises
``MetricError`` otherwise, never returning a meaningless number (argmax accuracy of a one-logit
model, top-5 accuracy of 3 classes, R² of class logits). Outputs are one row per sample:

- multi-class: ``(n, k)`` logits or probabilities with ``k >= 2``; targets are ``(n,)`` integer labels
  in ``[0, k)`` or ``(n, k)`` one-hot rows;
- binary: ``(n,)`` or ``(n, 1)`` — one logit (``from_logits=True``: threshold 0) or one probability
  (threshold 0.5) per sample; targets are 0/1;
- regression (MSE, MAE, R²): the output and target shapes are equal (``(n,)`` and ``(n, 1)`` match).

``get("f1")`` or ``get(F1(average="micro"))`` picks a metric by name or object. The base class and the
checks of outputs and targets are in ``graphdl.metric_base``.
"""

from __future__ import annotations

import numpy as np

from graphdl.errors import choice, flag, whole_number
from graphdl.metric_base import (
    Metric,
    MetricError,
    _binary_labels,
    _class_labels,
    _classification,
    _is_binary_output,
    _rows,
    flat_rows,
)


class _Thresholding(Metric):
    """Turns scores into predicted classes: argmax for (n, k), a threshold for one score per sample."""

    def __init__(self, from_logits: bool = True, threshold: float | None = None) -> None:
        self.from_logits = flag(from_logits, f"{type(self).__name__}: from_logits", MetricError)
        self.threshold = (0.0 if from_logits else 0.5) if threshold is None else threshold
        super().__init__()

    def _predict(self, output: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(predicted classes, true classes, number of classes)."""
        output, target = _rows(output, target, self.name)
        _classification(output, self.name)
        if _is_binary_output(output):
            return (output.reshape(-1) > self.threshold).astype(np.int64), _binary_labels(target, self.name), 2
        return np.argmax(output, axis=1), _class_labels(output, target, self.name), output.shape[1]


class Accuracy(_Thresholding):
    """Fraction of samples classified right: argmax over ``(n, k)`` scores; for one score per sample, above
    the threshold (0 for logits, 0.5 for probabilities with ``from_logits=False``) means class 1."""

    name = "accuracy"

    def reset(self) -> None:
        self.correct, self.seen = 0, 0

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        pred, true, _ = self._predict(output, target)
        self.correct += int(np.sum(pred == true))
        self.seen += len(true)

    def result(self) -> float:
        if not self.seen:
            raise self._empty()
        return self.correct / self.seen


class TopKAccuracy(Metric):
    """Fraction of samples whose label is among the ``k`` highest of ``(n, classes)`` scores (k < classes)."""

    def __init__(self, k: int = 5) -> None:
        k = whole_number(k, "top-k accuracy: k", 1, MetricError)
        self.k = k
        self.name = f"top{k}_accuracy"
        super().__init__()

    def reset(self) -> None:
        self.correct, self.seen = 0, 0

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        output, target = _rows(output, target, self.name)
        _classification(output, self.name)
        if _is_binary_output(output) or output.ndim != 2:
            raise MetricError(f"{self.name} needs (n, classes) scores, got {output.shape}: with one score per "
                              "sample use 'accuracy'")
        if self.k >= output.shape[1]:
            raise MetricError(f"{self.name}: k={self.k} but the output has only {output.shape[1]} classes, so "
                              f"every sample would count as right; use k < {output.shape[1]}")
        labels = _class_labels(output, target, self.name)
        # A label counts if fewer than k classes score strictly higher (ties resolved in its favour, as sklearn).
        score = output[np.arange(len(labels)), labels]
        higher = np.sum(output > score[:, None], axis=1)
        self.correct += int(np.sum(higher < self.k))
        self.seen += len(labels)

    def result(self) -> float:
        if not self.seen:
            raise self._empty()
        return self.correct / self.seen


class _Confusion(_Thresholding):
    """Precision, recall and F1 from a streaming confusion matrix.

    ``average``: "binary" (class ``pos_label`` only; the default for one score per sample), "macro" (the
    default for ``(n, k)`` outputs), "micro" or "weighted" — scikit-learn's meanings, with 0 where a
    denominator is 0 (``zero_division=0``).
    """

    def __init__(self, average: str | None = None, pos_label: int = 1, from_logits: bool = True,
                 threshold: float | None = None) -> None:
        if average is not None:
            average = choice(average, f"{type(self).__name__}: average", ("binary", "macro", "micro", "weighted"),
                             MetricError)
        self.average, self.pos_label = average, pos_label
        super().__init__(from_logits, threshold)

    def reset(self) -> None:
        self.matrix: np.ndarray | None = None  # [true, predicted] counts
        self.binary = False  # one score per sample

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        pred, true, k = self._predict(output, target)
        self.binary = _is_binary_output(np.asarray(output))
        if self.matrix is None:
            self.matrix = np.zeros((k, k), dtype=np.int64)
        elif self.matrix.shape[0] != k:
            raise MetricError(f"{self.name}: this batch has {k} classes, earlier ones had {self.matrix.shape[0]}")
        np.add.at(self.matrix, (true, pred), 1)

    def _per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.matrix is None:
            raise self._empty()
        tp = np.diag(self.matrix).astype(np.float64)
        return tp, self.matrix.sum(axis=0) - tp, self.matrix.sum(axis=1) - tp  # tp, fp, fn

    @staticmethod
    def _score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def result(self) -> float:
        tp, fp, fn = self._per_class()
        k = len(tp)
        average = self.average or ("binary" if self.binary else "macro")
        if average == "binary":
            if not self.binary:
                raise MetricError(f"{self.name}: average='binary' needs one score per sample; this output has {k} "
                                  "classes: choose average='macro', 'micro' or 'weighted'")
            p = self.pos_label
            return float(self._score(tp[p:p + 1], fp[p:p + 1], fn[p:p + 1])[0])
        if average == "micro":
            return float(self._score(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))[0])
        scores = self._score(tp, fp, fn)
        support = tp + fn
        if average == "weighted":
            return float(np.sum(scores * support) / support.sum()) if support.sum() else 0.0
        return float(np.mean(scores))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class Precision(_Confusion):
    """tp / (tp + fp)."""

    name = "precision"

    @staticmethod
    def _score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        return _ratio(tp, tp + fp)


class Recall(_Confusion):
    """tp / (tp + fn)."""

    name = "recall"

    @staticmethod
    def _score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        return _ratio(tp, tp + fn)


class F1(_Confusion):
    """2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall."""

    name = "f1"

    @staticmethod
    def _score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        return _ratio(2 * tp, 2 * tp + fp + fn)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.concatenate([[True], xs[1:] != xs[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.append(first, len(xs)))
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = first[group] + (counts[group] + 1) / 2.0
    return ranks


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class ROCAUC(Metric):
    """Area under the ROC curve. One score per sample: binary AUC. ``(n, k)`` scores: one-vs-rest, macro
    averaged, over softmax probabilities (``from_logits=True``) or the given probabilities. Keeps every
    score of the epoch (AUC is a ranking statistic and cannot be summed batch by batch)."""

    name = "roc_auc"

    def __init__(self, from_logits: bool = True) -> None:
        self.from_logits = from_logits
        super().__init__()

    def reset(self) -> None:
        self.scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        output, target = _rows(output, target, self.name)
        _classification(output, self.name)
        if _is_binary_output(output):
            self.scores.append(output.reshape(-1).astype(np.float64))
            self.labels.append(_binary_labels(target, self.name))
            return
        labels = _class_labels(output, target, self.name)
        scores = output.astype(np.float64)
        if self.from_logits:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        if self.scores and self.scores[0].ndim != 2:
            raise MetricError(f"{self.name}: output changed from one score per sample to {output.shape}")
        self.scores.append(scores)
        self.labels.append(labels)

    def result(self) -> float:
        if not self.scores:
            raise self._empty()
        scores, labels = np.concatenate(self.scores), np.concatenate(self.labels)
        if scores.ndim == 1:
            if len(np.unique(labels)) < 2:
                raise MetricError(f"{self.name} is undefined when only one class is present in the targets")
            return _auc(scores, labels == 1)
        k = scores.shape[1]
        missing = sorted(set(range(k)) - set(np.unique(labels).tolist()))
        if missing:
            raise MetricError(f"{self.name}: classes {missing} never occur in the targets, so their one-vs-rest "
                              "AUC is undefined; evaluate on more data")
        return float(np.mean([_auc(scores[:, c], labels == c) for c in range(k)]))


class _Regression(Metric):
    def _pair(self, output: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        output, target = _rows(output, target, self.name)
        o, t = flat_rows(output), flat_rows(target)
        if o.shape != t.shape or output.ndim > 2:
            hint = (" (these look like class scores and labels: use 'accuracy')"
                    if output.ndim == 2 and target.ndim == 1 and output.shape[1] > 1 else "")
            raise MetricError(f"{self.name} needs output and target of one shape, got output {output.shape} and "
                              f"target {target.shape}{hint}")
        return o.astype(np.float64), t.astype(np.float64)


class MeanSquaredError(_Regression):
    """Mean of (output - target)² over every element (scikit-learn's uniform average over columns)."""

    name = "mse"

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        o, t = self._pair(output, target)
        self.total += float(np.sum(self._error(o - t)))
        self.count += o.size

    @staticmethod
    def _error(d: np.ndarray) -> np.ndarray:
        return d * d

    def result(self) -> float:
        if not self.count:
            raise self._empty()
        return self.total / self.count


class MeanAbsoluteError(MeanSquaredError):
    """Mean of |output - target| over every element."""

    name = "mae"

    @staticmethod
    def _error(d: np.ndarray) -> np.ndarray:
        return np.abs(d)


class R2(_Regression):
    """Coefficient of determination 1 - SS_res / SS_tot per column, averaged over columns (scikit-learn's
    ``r2_score``: a constant column scores 1 if predicted exactly, else 0). Sums are streamed in float64."""

    name = "r2"

    def reset(self) -> None:
        self.n = 0
        self.sums: np.ndarray | None = None  # rows: sum t, sum t², sum (o - t)²

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        o, t = self._pair(output, target)
        batch = np.stack([t.sum(axis=0), (t * t).sum(axis=0), ((o - t) ** 2).sum(axis=0)])
        if self.sums is not None and self.sums.shape != batch.shape:
            raise MetricError(f"{self.name}: output width changed from {self.sums.shape[1]} to {batch.shape[1]}")
        self.sums = batch if self.sums is None else self.sums + batch
        self.n += len(o)

    def result(self) -> float:
        if self.sums is None or self.n < 2:
            raise MetricError(f"{self.name} needs at least 2 samples, saw {self.n}")
        s, s2, res = self.sums
        tot = np.maximum(s2 - s * s / self.n, 0.0)
        scores = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0), np.where(res == 0, 1.0, 0.0))
        return float(np.mean(scores))


#: Names accepted by ``get`` (and by ``fit``/``evaluate``'s ``metrics=``).
NAMES = {
    "accuracy": Accuracy, "acc": Accuracy,
    "precision": Precision, "recall": Recall, "f1": F1,
    "roc_auc": ROCAUC, "auc": ROCAUC,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "r2": R2,
}


def get(metric: str | Metric) -> Metric:
    """A fresh metric from a name ("accuracy", "top5_accuracy", "f1", "roc_auc", "mse", "mae", "r2", ...), or
    the given Metric object itself (reset)."""
    if isinstance(metric, Metric):
        metric.reset()
        return metric
    if isinstance(metric, str):
        key = metric.lower()
        if key in NAMES:
            return NAMES[key]()
        if key.startswith("top") and key.endswith("_accuracy") and key[3:-9].isdigit():
            return TopKAccuracy(int(key[3:-9]))
    raise MetricError(f"unknown metric {metric!r}; use a gd.metrics.Metric or one of "
                      f"{sorted(NAMES)} or 'top<k>_accuracy'")
