"""gd.metrics: streaming results over uneven batches equal scikit-learn's functions on the whole data."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.metrics import MetricError

sk = pytest.importorskip("sklearn.metrics")


def _stream(metric: gd.metrics.Metric, output: np.ndarray, target: np.ndarray, sizes=(7, 1, 30, 13)) -> float:
    metric.reset()
    lo = 0
    while lo < len(output):
        for s in sizes:
            metric.update(output[lo:lo + s], target[lo:lo + s])
            lo += s
            if lo >= len(output):
                break
    return metric.result()


@pytest.fixture
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 203)
    logits = rng.standard_normal((203, 5)).astype("float32")
    logits[np.arange(203), y] += rng.uniform(0, 2, 203).astype("float32")  # better than chance, not perfect
    return logits, y


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 157)
    logit = (rng.standard_normal(157) + 1.2 * (y - 0.5)).astype("float32")
    logit[:10] = 0.25  # ties for AUC
    return logit, y


def test_multiclass_metrics_match_sklearn(multiclass) -> None:
    logits, y = multiclass
    pred = logits.argmax(1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert _stream(gd.metrics.get("accuracy"), logits, y) == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    # one-hot targets give the same answer as labels
    assert _stream(gd.metrics.Accuracy(), logits, np.eye(5)[y]) == pytest.approx(sk.accuracy_score(y, pred))
    for k in (2, 3):
        got = _stream(gd.metrics.get(f"top{k}_accuracy"), logits, y)
        assert got == pytest.approx(sk.top_k_accuracy_score(y, logits, k=k, labels=range(5)), abs=1e-12)
    for avg in ("macro", "micro", "weighted"):
        for metric, fn in ((gd.metrics.Precision, sk.precision_score), (gd.metrics.Recall, sk.recall_score),
                           (gd.metrics.F1, sk.f1_score)):
            want = fn(y, pred, average=avg, zero_division=0)
            assert _stream(metric(average=avg), logits, y) == pytest.approx(want, abs=1e-12), (metric, avg)
    assert _stream(gd.metrics.get("f1"), logits, y) == pytest.approx(sk.f1_score(y, pred, average="macro"))
    auc = sk.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert _stream(gd.metrics.get("roc_auc"), logits, y) == pytest.approx(auc, abs=1e-9)
    assert _stream(gd.metrics.ROCAUC(from_logits=False), probs, y) == pytest.approx(auc, abs=1e-9)


@pytest.mark.parametrize("column", [False, True])
def test_binary_metrics_use_a_threshold_not_argmax(binary, column) -> None:
    logit, y = binary
    out = logit[:, None] if column else logit
    pred = (logit > 0).astype(int)
    acc = _stream(gd.metrics.get("accuracy"), out, y)
    assert acc == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert acc > 0.6  # argmax over one column would give the fraction of zeros instead
    assert acc != pytest.approx(np.mean(y == 0))
    prob = 1 / (1 + np.exp(-logit))
    assert _stream(gd.metrics.Accuracy(from_logits=False), prob, y) == pytest.approx(acc)
    for metric, fn in ((gd.metrics.Precision(), sk.precision_score), (gd.metrics.Recall(), sk.recall_score),
                       (gd.metrics.F1(), sk.f1_score)):
        assert _stream(metric, out, y) == pytest.approx(fn(y, pred), abs=1e-12)
    assert _stream(gd.metrics.Precision(pos_label=0), out, y) == pytest.approx(sk.precision_score(y, pred, pos_label=0))
    assert _stream(gd.metrics.get("auc"), out, y) == pytest.approx(sk.roc_auc_score(y, logit), abs=1e-12)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    for shape in ((120,), (120, 1), (120, 3)):
        t = rng.standard_normal(shape) * 3 + 1
        o = (t + rng.standard_normal(shape)).astype("float32")
        t2, o2 = t.reshape(120, -1), o.reshape(120, -1)
        assert _stream(gd.metrics.get("mse"), o, t) == pytest.approx(sk.mean_squared_error(t2, o2), rel=1e-9)
        assert _stream(gd.metrics.get("mae"), o, t) == pytest.approx(sk.mean_absolute_error(t2, o2), rel=1e-9)
        assert _stream(gd.metrics.get("r2"), o, t) == pytest.approx(sk.r2_score(t2, o2), rel=1e-9)
    # (n, 1) output against (n,) targets: one column, not a broadcast (n, n) comparison
    t = rng.standard_normal(50)
    o = t[:, None] + 0.1
    assert _stream(gd.metrics.get("mse"), o, t) == pytest.approx(0.01)
    const = np.full(20, 2.0)
    assert _stream(gd.metrics.get("r2"), const, const) == sk.r2_score(const, const) == 1.0


@pytest.mark.parametrize("name", ["accuracy", "precision", "f1", "auc", "mse", "mae", "r2"])
def test_an_empty_batch_changes_nothing(name) -> None:
    """Updates with no samples (a caller's empty last chunk) are no-ops, for every output kind."""
    rng = np.random.default_rng(0)
    o, t = rng.standard_normal(30), rng.integers(0, 2, 30)
    for shape in ((30,), (30, 1)):
        whole, parts = gd.metrics.get(name), gd.metrics.get(name)
        whole.update(o.reshape(shape), t.reshape(shape) if name in ("mse", "mae", "r2") else t)
        for chunk in (slice(0, 0), slice(0, 30), slice(30, 30)):
            parts.update(o.reshape(shape)[chunk], (t.reshape(shape) if name in ("mse", "mae", "r2") else t)[chunk])
        assert parts.result() == whole.result()


@pytest.mark.parametrize(("name", "output", "target", "pattern"), [
    ("r2", np.zeros((8, 10), "float32"), np.arange(8) % 10, "class scores and labels"),
    ("mse", np.zeros((8, 10), "float32"), np.arange(8) % 10, "one shape"),
    ("accuracy", np.zeros(8, "float32"), np.linspace(0, 3, 8), "binary targets must be 0 or 1"),
    ("accuracy", np.zeros((8, 3), "float32"), np.arange(8), r"integers in \[0, 3\)"),
    ("accuracy", np.zeros((8, 3, 2), "float32"), np.arange(8) % 3, "needs"),
    ("accuracy", np.zeros((8, 3), "float32"), np.full((8, 3), 0.3), "one-hot"),
    ("accuracy", np.zeros((), "float32"), np.zeros(()), "scalar output is a monitor"),
    ("top5_accuracy", np.zeros((8, 3), "float32"), np.arange(8) % 3, "only 3 classes"),
    ("top2_accuracy", np.zeros(8, "float32"), np.arange(8) % 2, "use 'accuracy'"),
    ("accuracy", np.zeros((8, 3), "int64"), np.arange(8) % 3, "scores"),
])
def test_a_metric_that_cannot_apply_raises(name, output, target, pattern) -> None:
    with pytest.raises(MetricError, match=pattern):
        gd.metrics.get(name).update(output, target)


def test_errors_for_undefined_results_and_unknown_names() -> None:
    with pytest.raises(MetricError, match="no samples"):
        gd.metrics.Accuracy().result()
    auc = gd.metrics.ROCAUC()
    auc.update(np.zeros(4, "float32"), np.ones(4))
    with pytest.raises(MetricError, match="only one class"):
        auc.result()
    f1 = gd.metrics.F1(average="binary")
    f1.update(np.zeros((4, 3), "float32"), np.arange(4) % 3)
    with pytest.raises(MetricError, match="average='macro'"):
        f1.result()
    with pytest.raises(MetricError, match="unknown metric 'acuracy'"):
        gd.metrics.get("acuracy")
    assert isinstance(gd.metrics.MetricError("x"), gd.GraphDLError)


def test_get_returns_a_reset_object() -> None:
    m = gd.metrics.Accuracy()
    m.update(np.array([[1.0, 0.0]]), np.array([1]))
    assert gd.metrics.get(m) is m and m.seen == 0
