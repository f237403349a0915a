"""Training and inference plans: Dropout and BatchNorm behave by mode, and their state is saved and resumed."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS
from graphdl import optim


def _dropout_graph(seed: int = 0, p: float = 0.3):
    with gd.Graph("drop", dtype="float64", seed=seed) as g:
        x = gd.placeholder("x", (None, 50))
        y = L.Dropout(p, name="drop")(x)
        (dx,) = gd.grad(gd.ops.sum(y), [x])
    return g, x, y, dx


def test_dropout_is_identity_in_inference_plans() -> None:
    _, x, y, dx = _dropout_graph()
    xv = np.random.default_rng(0).standard_normal((40, 50))
    out, grad = gd.compile([y, dx]).run({x: xv})
    np.testing.assert_array_equal(out, xv)
    np.testing.assert_array_equal(grad, np.ones_like(xv))


def test_dropout_training_zeroes_p_and_scales_the_rest_with_one_mask_for_value_and_gradient() -> None:
    _, x, y, dx = _dropout_graph(p=0.3)
    xv = np.random.default_rng(0).standard_normal((200, 50)) + 5.0  # never exactly 0
    exe = gd.compile([y, dx], training=True)
    out, grad = exe.run({x: xv})
    kept = out != 0
    assert abs(1 - kept.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / kept.size)
    np.testing.assert_allclose(out[kept], xv[kept] / 0.7, rtol=1e-15)
    np.testing.assert_array_equal(grad, kept / 0.7)  # the gradient reuses the forward mask
    assert exe.state()["drop.counter"][0] == 1
    out2, _ = exe.run({x: xv})
    assert not np.array_equal(out2 != 0, kept)  # the counter moved on: a new mask
    assert exe.state()["drop.counter"][0] == 2


def test_dropout_is_reproducible_from_the_seed() -> None:
    xv = np.ones((10, 50))
    runs = []
    for _ in range(2):
        _, x, y, _ = _dropout_graph(seed=4)
        exe = gd.compile([y], training=True)
        runs.append([exe.run({x: xv})[0] for _ in range(3)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_inference_plan_uses_running_statistics_and_training_plan_updates_them() -> None:
    with gd.Graph("bn", dtype="float64") as g:
        x = gd.placeholder("x", (None, 3))
        y = L.BatchNorm1D(3, name="bn")(x)
    xv = np.random.default_rng(1).standard_normal((16, 3)) * 3 + 2
    infer = gd.compile([y])
    np.testing.assert_allclose(infer.run({x: xv})[0], xv / np.sqrt(1 + 1e-5), rtol=1e-12)
    assert not infer.training
    train = gd.compile([y], training=True)
    (out,) = train.run({x: xv})
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(g.state()["bn.running_mean"], 0.1 * xv.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g.state()["bn.running_var"], 0.9 + 0.1 * xv.var(0, ddof=1), rtol=1e-12)
    assert set(g.state()) == {"bn.running_mean", "bn.running_var"}
    assert {"bn.gamma", "bn.beta"} <= set(g.parameters())


def _cnn(seed: int = 0):
    with gd.Graph("cnn", dtype="float64", seed=seed):
        x = gd.placeholder("x", (None, 1, 6, 6))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = L.ReLU()(L.BatchNorm2D(4, name="bn")(L.Conv2D(1, 4, 3, padding=1, name="conv")(x)))
        h = L.Flatten()(L.Dropout(0.5, name="drop")(L.MaxPool2D(2)(h)))
        logits = L.Linear(36, 3, name="fc")(h)
        loss = LS.SoftmaxCrossEntropy()(logits, y)
    return x, y, logits, loss


OPTIMIZERS = [
    optim.AdamW(lr=0.01, schedule=optim.CosineLR(8, warmup_steps=2), clip_norm=1.0),
    optim.SGD(lr=0.1, momentum=0.9, nesterov=True, schedule=optim.StepLR(2, 0.5)),
    optim.RMSProp(lr=0.01, momentum=0.5, centered=True),
    optim.AdaGrad(lr=0.1, lr_decay=0.01),
]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_reloaded_training_model_resumes_exactly(tmp_path, opt) -> None:
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((5, 1, 6, 6)), rng.integers(0, 3, 5)) for _ in range(6)]

    x, y, _, loss = _cnn()
    straight = gd.compile([loss], optimizer=opt)
    expected = [float(straight.run({x: a, y: b})[0]) for a, b in batches]

    x, y, _, loss = _cnn()
    first = gd.compile([loss], optimizer=opt)
    got = [float(first.run({x: a, y: b})[0]) for a, b in batches[:3]]
    first.save(tmp_path / "train.gdl")
    resumed = gd.load(tmp_path / "train.gdl")
    assert resumed.training
    got += [float(resumed.run({"x": a, "y": b})[0]) for a, b in batches[3:]]

    assert got == expected
    for k, v in straight.values.items():
        np.testing.assert_array_equal(resumed.values[k], v, err_msg=k)
    assert {"bn.running_mean", "bn.running_var", "drop.counter", "optimizer.t"} <= set(resumed.state())
    assert resumed.state()["optimizer.t"] == 6 and resumed.state()["drop.counter"][0] == 6


def test_inference_model_reloads_running_statistics(tmp_path) -> None:
    x, y, logits, loss = _cnn()
    train = gd.compile([loss], optimizer=optim.Adam(lr=0.01))
    rng = np.random.default_rng(3)
    for _ in range(3):
        train.run({x: rng.standard_normal((5, 1, 6, 6)), y: rng.integers(0, 3, 5)})
    predict = gd.compile([logits])
    xv = rng.standard_normal((4, 1, 6, 6))
    before = predict.run({x: xv})[0]
    predict.save(tmp_path / "m.gdl")
    loaded = gd.load(tmp_path / "m.gdl")
    assert not loaded.training
    np.testing.assert_array_equal(loaded.run({"x": xv})[0], before)
    np.testing.assert_array_equal(loaded.state()["bn.running_var"], predict.state()["bn.running_var"])
    assert not np.allclose(predict.state()["bn.running_var"], 1.0)  # training moved them


@pytest.mark.parametrize("layer, shape", [(lambda: L.BatchNorm1D(3, name="bn"), (1, 3)),
                                          (lambda: L.BatchNorm2D(3, name="bn"), (1, 3, 1, 1))])
def test_batchnorm_refuses_to_train_on_one_value_per_channel(layer, shape) -> None:
    """Batch statistics of one value: the output would be beta and the running variance would learn 0.
    Refused (as PyTorch does) before the step changes anything; inference and bigger batches still run."""
    with gd.Graph("bn1", dtype="float64", seed=0):
        x = gd.placeholder("x", (None, *shape[1:]))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layer()(x)
        loss = LS.SoftmaxCrossEntropy()(L.Flatten()(h), y)
    train = gd.compile([loss, h], optimizer=optim.SGD(0.1))
    before = {k: v.copy() for k, v in train.state().items()} | {k: v.copy() for k, v in train.parameters().items()}
    rng = np.random.default_rng(0)
    with pytest.raises(gd.ShapeError, match=r"node 'bn'.*more than one value per channel.*drop_last=True"):
        train.run({x: rng.standard_normal(shape), y: np.array([1])})
    after = train.state() | train.parameters()
    assert all(np.array_equal(after[k], v) for k, v in before.items())
    two = (2, *shape[1:])
    out = train.run({x: rng.standard_normal(two), y: np.array([1, 0])})[1]
    assert np.isfinite(out).all()
    assert train.inference([h.name]).run({x: rng.standard_normal(shape)})[0].shape == shape
