"""What every metric shares: the ``Metric`` base class (``reset``, ``update``, ``result``), ``MetricError``,
and the checks that an output's shape and a target's values fit a metric (one row per sample; multi-class
scores with integer labels or one-hot rows, one binary score with 0/1 targets), as ``graphdl.metrics``
describes them.
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.errors import GraphDLError


class MetricError(GraphDLError):
    """A metric that cannot apply to an output's shape or a target's values."""


def _rows(output: np.ndarray, target: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    output, target = np.asarray(output), np.asarray(target)
    if output.ndim == 0 or target.ndim == 0:
        raise MetricError(f"{name} needs one row per sample; got output {output.shape} and target {target.shape} "
                          "(a scalar output is a monitor: it is averaged, not scored)")
    if len(output) != len(target):
        raise MetricError(f"{name}: output has {len(output)} rows but target has {len(target)}")
    return output, target


def _is_binary_output(output: np.ndarray) -> bool:
    return output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)


def flat_rows(a: np.ndarray) -> np.ndarray:
    """``a`` as (samples, values per sample); also for 0 samples, where reshape cannot infer a -1."""
    return a.reshape(len(a), math.prod(a.shape[1:]))


def _binary_labels(target: np.ndarray, name: str) -> np.ndarray:
    t = flat_rows(target)
    if t.shape[1] != 1:
        raise MetricError(f"{name}: a one-column output needs one 0/1 target per sample, got target {target.shape}")
    t = t[:, 0]
    if not np.all((t == 0) | (t == 1)):
        bad = t[(t != 0) & (t != 1)][:3]
        raise MetricError(f"{name}: binary targets must be 0 or 1, found {bad.tolist()}; for class labels use a "
                          "(n, classes) output, for real-valued targets use 'mse', 'mae' or 'r2'")
    return t.astype(np.int64)


def _class_labels(output: np.ndarray, target: np.ndarray, name: str) -> np.ndarray:
    """Integer labels in [0, k) for a (n, k) output, from (n,) labels or (n, k) one-hot targets."""
    k = output.shape[1]
    if target.ndim == 2 and target.shape[1] == k and k > 1:
        if not (np.all((target == 0) | (target == 1)) and np.all(target.sum(axis=1) == 1)):
            raise MetricError(f"{name}: a ({len(target)}, {k}) target must be one-hot rows (one 1, the rest 0); for "
                              "real-valued targets use 'mse', 'mae' or 'r2'")
        target = np.argmax(target, axis=1)
    elif target.ndim != 1 and not (target.ndim == 2 and target.shape[1] == 1):
        raise MetricError(f"{name}: output {output.shape} needs (n,) class labels or (n, {k}) one-hot targets, "
                          f"got target {target.shape}")
    target = target.reshape(-1)
    if not np.all(np.mod(target, 1) == 0) or (target.size and (target.min() < 0 or target.max() >= k)):
        raise MetricError(f"{name}: class labels must be integers in [0, {k}) for output {output.shape}; "
                          f"found values from {target.min()} to {target.max()}")
    return target.astype(np.int64)


def _classification(output: np.ndarray, name: str) -> None:
    if output.ndim != 2 and output.ndim != 1:
        raise MetricError(f"{name} needs (n,), (n, 1) or (n, classes) outputs, got {output.shape}; reshape or "
                          "flatten the output first")
    if not np.issubdtype(output.dtype, np.floating):
        raise MetricError(f"{name} needs scores (logits or probabilities), got {output.dtype} output {output.shape}")


class Metric:
    """Base of the streaming metrics: ``name``, ``reset``, ``update``, ``result``."""

    name = "metric"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:  # pragma: no cover - every metric defines it
        raise NotImplementedError

    def update(self, output: np.ndarray, target: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def result(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def _empty(self) -> MetricError:
        return MetricError(f"{self.name}: no samples seen; call update() with at least one batch")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
