"""check_numerics names the first node (in plan order) producing NaN or inf, before any update applies."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd


def _log_model(**compile_args):
    """A training plan whose forward takes the log of a feed (NaN where it is negative)."""
    with gd.Graph("logs", dtype="float64", seed=0):
        x = gd.placeholder("x", (None, 4))
        s = gd.placeholder("s", (None, 3))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Linear(4, 3, name="fc")(x) * gd.ops.log(s)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(h, y)
    return gd.compile([loss], gd.optim.Adam(1e-2), **compile_args), x, s, y


def _snapshot(ex: gd.Executable) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in ex.values.items()}


def _assert_same(a: dict, b: dict) -> None:
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_compile_check_numerics_names_the_first_bad_node_and_changes_nothing() -> None:
    ex, x, s, y = _log_model(check_numerics=True)
    xb, sb, yb = np.ones((5, 4)), np.full((5, 3), 2.0), np.array([0, 1, 2, 0, 1])
    ex.run({x: xb, s: sb, y: yb})
    before = _snapshot(ex)
    sb[2, 1] = -1.0
    sb[3, 0] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"), \
            pytest.raises(gd.NonFiniteError, match=r"'log' \(log, defined at .*\) produced non-finite values "
                                                   r"\(1 NaN and 1 inf of 15\) in its \(5, 3\) float64 output"):
        ex.run({x: xb, s: sb, y: yb})
    _assert_same(_snapshot(ex), before)


def test_run_check_numerics_finds_a_non_finite_gradient_before_any_update() -> None:
    # loss = mean(sqrt(h*h)) is finite, but its gradient at h = 0 is 0 * inf = NaN
    with gd.Graph("sqrt", dtype="float64", seed=0):
        x = gd.placeholder("x", (None, 4))
        h = gd.layers.Linear(4, 3, bias=False, name="fc")(x)
        loss = gd.ops.mean(gd.ops.sqrt(h * h))
    ex = gd.compile([loss], gd.optim.SGD(0.1))
    xb = np.ones((2, 4))
    xb[1] = 0.0
    before = _snapshot(ex)
    with np.errstate(divide="ignore", invalid="ignore"):
        with pytest.raises(gd.NonFiniteError, match=r"produced non-finite values.*first such node in plan order.*"
                                                    r"before any parameter or state changed"):
            ex.run({x: xb}, check_numerics=True)
        _assert_same(_snapshot(ex), before)
        # without the check the objective is finite, so the step applies (and poisons the weights)
        ex.run({x: xb})
    assert not np.isfinite(ex.values["fc.W"]).all()


def test_check_numerics_names_a_non_finite_feed() -> None:
    ex, x, s, y = _log_model()
    xb = np.full((3, 4), 3.0)
    xb[1, 2] = np.inf
    with pytest.raises(gd.NonFiniteError, match=r"feed 'x' holds non-finite values \(0 NaN and 1 inf of 12\)"):
        ex.run({x: xb, s: np.ones((3, 3)), y: np.array([0, 1, 2])}, check_numerics=True)
    assert int(ex.values["optimizer.t"]) == 0


def test_checked_steps_train_exactly_like_unchecked_ones() -> None:
    results = []
    for checked in (False, True):
        ex, x, s, y = _log_model(check_numerics=checked)
        rng = np.random.default_rng(0)
        for _ in range(4):
            ex.run({x: rng.standard_normal((6, 4)), s: rng.uniform(1, 3, (6, 3)), y: rng.integers(0, 3, 6)})
        results.append(_snapshot(ex))
    _assert_same(results[0], results[1])
