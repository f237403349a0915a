"""From a training checkpoint to predictions without the building script; state loads by name."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.ir import NodeKind


def _bn_model(seed: int = 0):
    with gd.Graph("bn", seed=seed) as g:
        x = gd.placeholder("x", (None, 6))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.ReLU()(layers.BatchNorm1D(16, name="bn")(layers.Linear(6, 16, name="fc1")(x)))
        h = layers.Dropout(0.3, name="drop")(h)
        logits = layers.Linear(16, 3, name="fc2")(h)
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return g, x, y, logits, loss


def _train(tmp_path):
    g, x, y, logits, loss = _bn_model()
    train = gd.compile([loss, logits], optimizer=optim.Adam(lr=0.05))
    rng = np.random.default_rng(1)
    for _ in range(20):
        xb = rng.standard_normal((32, 6)).astype("float32") * 3 + 2
        train.run({x: xb, y: (xb[:, 0] > 2).astype("int64") + (xb[:, 1] > 2)})
    path = tmp_path / "ckpt.gdl"
    train.save(path)
    return g, x, logits, train, path


def test_checkpoint_to_inference_uses_running_statistics(tmp_path) -> None:
    g, x, logits, train, path = _train(tmp_path)
    xt = np.random.default_rng(2).standard_normal((10, 6)).astype("float32") * 3 + 2
    expected = gd.compile([logits]).run({x: xt})[0]  # the script's own inference plan
    ckpt = gd.load(path)
    predict = ckpt.inference()  # default: every output but the objective
    assert predict.outputs == (logits.name,) and not predict.training
    assert not any(n.kind in (NodeKind.GRADIENT, NodeKind.UPDATE) for n in predict.ir.nodes)
    assert all(dict(n.attrs).get("training") is False for n in predict.ir.nodes if n.op in ("batch_norm", "dropout"))
    np.testing.assert_allclose(predict.run({"x": xt})[0], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ckpt.state()["bn.running_mean"], 0.0)  # training moved them
    # feeds of the training plan (labels) are accepted and ignored; the plan shares the checkpoint's arrays
    predict.run({"x": xt, "y": np.zeros(10, dtype="int64")})
    assert predict.values["fc1.W"] is ckpt.values["fc1.W"]


def test_inference_rejects_unknown_outputs(tmp_path) -> None:
    _, _, _, _, path = _train(tmp_path)
    with pytest.raises(gd.FeedError, match="no forward node"):
        gd.load(path).inference(["nope"])


def test_load_state_accepts_what_state_returns(tmp_path) -> None:
    g, x, logits, train, path = _train(tmp_path)
    g2, x2, _, logits2, _ = _bn_model(seed=5)
    fresh = gd.compile([logits2])
    fresh.load_parameters(train.parameters())
    skipped = fresh.load_state(train.state())
    assert "optimizer.t" in skipped and "bn.running_mean" not in skipped
    xt = np.random.default_rng(3).standard_normal((4, 6)).astype("float32")
    np.testing.assert_allclose(fresh.run({x2: xt})[0], gd.compile([logits]).run({x: xt})[0], rtol=1e-6)
    assert set(train.state(optimizer=False)) == {"bn.running_mean", "bn.running_var", "drop.counter"}
    with pytest.raises(gd.FeedError, match=r"no value for its state \['bn.running_mean'"):
        fresh.load_state({"bn.running_var": train.state()["bn.running_var"]})
    assert g2.load_state(train.state(), strict=False)  # the graph too
