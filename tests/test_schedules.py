"""Learning-rate schedules and clipping are nodes of the training plan, driven by the saved step counter."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphdl as gd
from graphdl import optim
from graphdl.ops.updates import schedule_value


def test_schedule_formulas() -> None:
    step = {"lr": 1.0, **optim.StepLR(step_size=3, gamma=0.5).attrs()}
    assert [schedule_value(step, t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    exp = {"lr": 2.0, **optim.ExponentialLR(gamma=0.9).attrs()}
    assert schedule_value(exp, 3) == pytest.approx(2.0 * 0.9**3)
    cos = {"lr": 1.0, **optim.CosineLR(total_steps=12, warmup_steps=4, eta_min=0.1).attrs()}
    values = [schedule_value(cos, t) for t in range(16)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up
    assert values[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert values[12:] == [pytest.approx(0.1)] * 4  # flat at eta_min after total_steps


def test_learning_rate_and_clip_nodes_are_in_the_plan() -> None:
    with gd.Graph("s", dtype="float64"):
        x = gd.placeholder("x", (None, 3))
        loss = gd.ops.mean(gd.layers.Linear(3, 1, name="fc")(x) * 100.0)
    opt = optim.SGD(lr=0.1, schedule=optim.StepLR(1, 0.5), clip_norm=1.0)
    train = gd.compile([loss], optimizer=opt)
    ops = {n.op for n in train.ir.nodes}
    assert {"learning_rate", "sqrt", "minimum", "increment"} <= ops
    w0 = train.parameters()["fc.W"].copy()
    xv = np.ones((4, 3))
    train.run({x: xv})
    # gradient of mean(100 * (x @ W + b)) is 100 for W rows and b; clipped to global norm 1
    g = np.full(4, 100.0)
    step = 0.1 * g / (np.linalg.norm(g) + 1e-6)
    np.testing.assert_allclose(w0[:, 0] - train.parameters()["fc.W"][:, 0], step[:3], rtol=1e-12)
    assert int(train.state()["optimizer.t"]) == 1


def test_optimizer_arguments_are_checked() -> None:
    with pytest.raises(gd.GraphDLError, match="nesterov"):
        optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(gd.GraphDLError, match="clip_norm"):
        optim.Adam(clip_norm=-1.0)
    with pytest.raises(gd.GraphDLError, match="lr > 0"):
        optim.RMSProp(lr=0.0)
    # a hyperparameter of the wrong kind is named before any check compares it
    for make, message in ((lambda: optim.SGD(lr=None), r"SGD: lr must be a number, got None"),
                          (lambda: optim.SGD(lr="0.1"), r"lr must be a number, got '0.1'"),
                          (lambda: optim.SGD(lr=float("nan")), r"lr must be a number, got nan"),
                          (lambda: optim.SGD(0.1, momentum="a"), r"momentum must be a number"),
                          (lambda: optim.SGD(0.1, nesterov=1), r"nesterov must be True or False"),
                          (lambda: optim.Adam(betas=(0.9,)), r"betas must be a tuple of 2 numbers"),
                          (lambda: optim.Adam(clip_norm="1"), r"clip_norm must be a number")):
        with pytest.raises(gd.GraphDLError, match=message):
            make()
    assert optim.Adam(betas=[0.8, 0.9]).betas == (0.8, 0.9)
    assert float(optim.SGD(np.float32(0.5)).base_lr) == 0.5
