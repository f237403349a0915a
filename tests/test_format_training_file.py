"""Committed training files (format v1 from graphdl at commit 5c3e3c8, format v2 from today's) keep loading:
Adam state, schedule and BatchNorm running statistics are restored, and training resumes exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphdl as gd

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("version", [1, 2])
def test_training_file_restores_its_state_and_resumes_one_step(version) -> None:
    model = gd.load(os.path.join(DATA, f"train_v{version}.gdl"))
    expected = dict(np.load(os.path.join(DATA, f"train_v{version}_expected.npz")))
    assert model.training and model.objective == "loss"
    saved = {k[len("saved/"):]: v for k, v in expected.items() if k.startswith("saved/")}
    assert set(model.values) == set(saved)
    for name, value in saved.items():
        assert np.array_equal(model.values[name], value), name  # bit for bit, nothing re-initialised
    state = model.state()
    assert int(state["optimizer.t"]) == 3
    assert {"bn.running_mean", "bn.running_var"} <= set(state)
    assert not np.allclose(state["bn.running_mean"], 0) and not np.allclose(state["bn.running_var"], 1)
    moments = [k for k in state if k.startswith("fc1.W/")]
    assert len(moments) == 2 and all(np.abs(state[k]).sum() > 0 for k in moments)  # Adam's m and v
    lr = next(n for n in model.ir.nodes if n.op == "learning_rate").attr
    assert lr["schedule"] == "cosine" and lr["total_steps"] == 10 and lr["warmup_steps"] == 1

    (loss,) = model.run({"x": expected["x"], "y": expected["y"]})
    # Same kernels; the last bit may differ between BLAS builds on other machines.
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-6)
    for name, value in model.parameters().items():
        np.testing.assert_allclose(value, expected[f"after/{name}"], rtol=1e-5, atol=1e-7, err_msg=name)
    assert int(model.state()["optimizer.t"]) == 4
