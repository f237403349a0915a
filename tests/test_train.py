"""The fit loop: values by name, validation loss and metrics, History files, resume numbering, non-finite steps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses


def _separable(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, 64)).astype("float32") * 0.1
    x[np.arange(n), y] += 2.0
    return x, y


def test_fit_reports_objective_monitors_validation_loss_and_metrics_by_name(mlp, tmp_path) -> None:
    x, y = _separable()
    with mlp.g:
        penalty = losses.l2_penalty([mlp.fc1.params["W"]], 1e-3, name="l2")
        total = mlp.loss + penalty
    train = gd.compile([total, mlp.loss, penalty, mlp.logits], loss=total, optimizer=gd.optim.Adam(lr=1e-2))
    evaluator = gd.compile([total, mlp.logits])
    ckpt = tmp_path / "ckpt.gdl"
    history = gd.fit(train, gd.data.DataLoader(x, y, batch_size=32, shuffle=True), epochs=3, metrics=["accuracy", "f1"],
                     validation=(evaluator, x, y), checkpoint=ckpt, progress=False)
    ce, tn = mlp.loss.name, total.name
    assert history.objective == tn
    assert set(history.epochs[0]) == {"epoch", tn, ce, "l2", "accuracy", "f1", f"val_{tn}", "val_accuracy",
                                      "val_f1", "lr"}
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"] == history[tn] and history["val_loss"] == history[f"val_{tn}"]
    for e in history.epochs:  # the objective is the sum of its parts, each reported under its own name
        assert e[tn] == pytest.approx(e[ce] + e["l2"], rel=1e-5)
    assert history[tn][-1] < history[tn][0]
    assert history["val_accuracy"][-1] == 1.0
    assert history["lr"] == [pytest.approx(1e-2)] * 3
    resumed = gd.load(ckpt)
    assert int(resumed.state()["optimizer.t"]) == 3 * 7
    assert gd.evaluate(evaluator, x, y, metrics=["accuracy"]) == {tn: pytest.approx(history[f"val_{tn}"][-1], rel=1e-5),
                                                                   "accuracy": 1.0}


def test_binary_one_logit_model_gets_threshold_accuracy() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 4)).astype("float32")
    t = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype("float32")[:, None]
    with gd.Graph("binary", seed=0):
        xi = gd.placeholder("x", (None, 4))
        ti = gd.placeholder("t", (None, 1))
        logit = layers.Linear(4, 1, name="fc")(xi)
        loss = losses.BinaryCrossEntropyWithLogits()(logit, ti)
    train = gd.compile([loss, logit], optimizer=gd.optim.Adam(lr=0.05))
    evaluator = gd.compile([loss, logit])
    h = gd.fit(train, gd.data.DataLoader(x, t, batch_size=50), epochs=5, metrics=["accuracy", "roc_auc"],
               validation=(evaluator, x, t), progress=False)
    scores = evaluator.run({"x": x, "t": t})[1][:, 0]
    assert h["val_accuracy"][-1] == pytest.approx(sk.accuracy_score(t[:, 0], scores > 0))
    assert h["val_roc_auc"][-1] == pytest.approx(sk.roc_auc_score(t[:, 0], scores))
    assert h["val_accuracy"][-1] > 0.9  # argmax over one column would say 1 - mean(t), about 0.6


def test_which_output_a_metric_scores_is_inferred_or_asked_for(mlp) -> None:
    x, y = _separable(64)
    loader = gd.data.DataLoader(x, y, batch_size=32)
    only_loss = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    with pytest.raises(gd.GraphDLError, match=r"only scalar outputs.*gd.compile\(\[loss, logits\]"):
        gd.fit(only_loss, loader, metrics=["accuracy"], progress=False)
    with mlp.g:
        probs = layers.Softmax()(mlp.logits)
    two = gd.compile([mlp.loss, mlp.logits, probs], optimizer=gd.optim.SGD(lr=0.1))
    with pytest.raises(gd.GraphDLError, match=r"all have one row per sample; say which with metrics=\{'fc2'"):
        gd.fit(two, loader, metrics=["accuracy"], progress=False)
    h = gd.fit(two, loader, metrics={"fc2": ["accuracy"], probs.name: ["accuracy"]}, progress=False)
    assert h["fc2/accuracy"] == h[f"{probs.name}/accuracy"]
    with pytest.raises(gd.GraphDLError, match="targets"):
        gd.fit(two, loader, metrics={"fc2": ["accuracy"]}, targets={"fc2": "nope"}, progress=False)
    with pytest.raises(gd.metrics.MetricError, match="one shape"):
        gd.fit(two, loader, metrics={"fc2": ["mse"]}, progress=False)


def test_history_saves_and_loads_json_and_csv(mlp, tmp_path) -> None:
    x, y = _separable(64)
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.SGD(lr=0.1))
    h = gd.fit(train, gd.data.DataLoader(x, y, batch_size=16), epochs=2, metrics=["accuracy"], progress=False)
    for name in ("h.json", "h.csv"):
        h.save(tmp_path / name)
        back = gd.History.load(tmp_path / name)
        assert back.objective == h.objective == mlp.loss.name
        assert back.keys() == h.keys()
        for k in h.keys():
            assert back[k] == pytest.approx(h[k], rel=1e-15), k
        assert back["epoch"] == [1, 2] and isinstance(back["epoch"][0], int)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(gd.GraphDLError, match="cannot read history file"):
        gd.History.load(tmp_path / "bad.json")


def test_resume_continues_epoch_numbering(mlp, tmp_path) -> None:
    x, y = _separable(64)
    loader = gd.data.DataLoader(x, y, batch_size=16, shuffle=True)
    train = gd.compile([mlp.loss], optimizer=gd.optim.Adam(lr=1e-2))
    h = gd.fit(train, loader, epochs=2, checkpoint=tmp_path / "c.gdl", progress=False)
    resumed = gd.load(tmp_path / "c.gdl")
    h2 = gd.fit(resumed, loader, epochs=4, initial_epoch=2, history=h, progress=False)
    assert h2 is h and h["epoch"] == [1, 2, 3, 4]
    assert int(resumed.state()["optimizer.t"]) == 4 * 4
    with pytest.raises(gd.GraphDLError, match="initial_epoch"):
        gd.fit(resumed, loader, epochs=1, initial_epoch=2, progress=False)


def _dropout_batchnorm_model() -> gd.Executable:
    with gd.Graph("resumable", dtype="float64", seed=2):
        x = gd.placeholder("x", (None, 64))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.BatchNorm1D(16)(layers.Dropout(0.3)(layers.ReLU()(layers.Linear(64, 16)(x))))
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(16, 10, name="out")(h), y)
    return gd.compile([loss], optimizer=gd.optim.Adam(lr=1e-2))


def test_a_resumed_run_trains_as_an_uninterrupted_one(tmp_path) -> None:
    """Shuffled batches, dropout masks, BatchNorm statistics and Adam moments: stopping after epoch 2 and
    resuming from the checkpoint with a new loader gives the very model 4 uninterrupted epochs give."""
    x, y = _separable(64)
    whole = _dropout_batchnorm_model()
    h_whole = gd.fit(whole, gd.data.DataLoader(x, y, batch_size=16, shuffle=True, seed=5), epochs=4, progress=False)
    first = _dropout_batchnorm_model()
    h = gd.fit(first, gd.data.DataLoader(x, y, batch_size=16, shuffle=True, seed=5), epochs=2,
               checkpoint=tmp_path / "c.gdl", progress=False)
    resumed = gd.load(tmp_path / "c.gdl")
    gd.fit(resumed, gd.data.DataLoader(x, y, batch_size=16, shuffle=True, seed=5), epochs=4, initial_epoch=2,
           history=h, progress=False)
    assert h["loss"] == h_whole["loss"]
    for name, value in whole.state().items():
        assert np.array_equal(resumed.state()[name], value), name


def test_fitting_again_draws_new_orders() -> None:
    """A second fit with the same loader continues its epochs (new orders), as iterating it again would."""
    x, y = _separable(64)
    loader = gd.data.DataLoader(x, y, batch_size=64, shuffle=True, seed=1)
    seen = []
    train = _dropout_batchnorm_model()
    train_run = train.run
    train.run = lambda feeds, **kw: (seen.append(np.array(next(iter(feeds.values())))), train_run(feeds, **kw))[1]
    gd.fit(train, loader, epochs=2, progress=False)
    gd.fit(train, loader, epochs=2, progress=False)
    assert loader.epoch == 4
    assert len({a.tobytes() for a in seen}) == 4


def _poisoned(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x, y = _separable(n)
    x[20, 3] = np.nan  # sample 20: in the second batch of 16
    return x, y


def test_nonfinite_loss_stops_naming_epoch_and_step_and_keeps_the_checkpoint(mlp, tmp_path) -> None:
    x, y = _separable(64)
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    ckpt = tmp_path / "c.gdl"
    gd.fit(train, gd.data.DataLoader(x, y, batch_size=16), epochs=1, checkpoint=ckpt, progress=False)
    good = {k: v.copy() for k, v in gd.load(ckpt).parameters().items()}
    xp, yp = _poisoned()
    with pytest.raises(gd.NonFiniteError, match=r"epoch 2, step 2 .*on_nonfinite='skip'"):
        gd.fit(train, gd.data.DataLoader(xp, yp, batch_size=16), epochs=3, initial_epoch=1, checkpoint=ckpt,
               progress=False)
    kept = gd.load(ckpt).parameters()
    for k, v in good.items():
        np.testing.assert_array_equal(kept[k], v)


def test_a_nonfinite_model_is_never_saved(mlp, tmp_path) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    path = tmp_path / "m.gdl"
    assert gd.train.save_if_finite(train, path)
    before = path.read_bytes()
    train.values["fc1.b"][0] = np.inf
    with pytest.warns(RuntimeWarning, match=r"non-finite values in \['fc1.b'\]"):
        assert not gd.train.save_if_finite(train, path)
    assert path.read_bytes() == before


def test_skip_leaves_the_model_as_if_the_batch_were_absent(mlp) -> None:
    xp, yp = _poisoned()
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    start = {k: v.copy() for k, v in train.values.items()}
    with pytest.warns(RuntimeWarning, match="epoch 1, step 2"):
        h = gd.fit(train, gd.data.DataLoader(xp, yp, batch_size=16), epochs=1, on_nonfinite="skip", progress=False)
    assert h.epochs[0]["skipped_batches"] == 1
    skipped = {k: v.copy() for k, v in train.values.items()}
    for k, v in start.items():
        train.values[k][...] = v
    keep = np.r_[0:16, 32:64]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.fit(train, gd.data.DataLoader(xp[keep], yp[keep], batch_size=16), epochs=1, progress=False)
    for k, v in skipped.items():
        if k != "optimizer.t":
            np.testing.assert_array_equal(train.values[k], v, err_msg=k)
    assert int(skipped["optimizer.t"]) == 3


def test_fit_argument_errors(mlp) -> None:
    x, y = _separable(10)
    loader = gd.data.DataLoader(x, y)
    with pytest.raises(gd.GraphDLError, match="needs a training executable"):
        gd.fit(gd.compile([mlp.logits]), loader, progress=False)
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    with pytest.raises(gd.GraphDLError, match="on_nonfinite"):
        gd.fit(train, loader, on_nonfinite="ignore", progress=False)
    with pytest.raises(gd.GraphDLError, match="without an optimizer"):
        gd.fit(train, loader, validation=(train, x, y), progress=False)
    with pytest.raises(gd.GraphDLError, match="validation has 1 arrays"):
        gd.fit(train, loader, validation=(gd.compile([mlp.loss]), x), progress=False)
    with pytest.raises(gd.GraphDLError, match="validation must be"):
        gd.fit(train, loader, validation=x, progress=False)
    # arguments of the wrong kind are named, not left to fail inside
    for data in (x, (x, y)):
        with pytest.raises(gd.GraphDLError, match=r"fit takes its data as a gd.data.DataLoader"):
            gd.fit(train, data, progress=False)
    for epochs in ("3", 2.5, True, -1):
        with pytest.raises(gd.GraphDLError, match=r"epochs"):
            gd.fit(train, loader, epochs=epochs, progress=False)
    for callbacks in (1, [1], [gd.callbacks.EarlyStopping(), "x"]):
        with pytest.raises(gd.GraphDLError, match=r"callbacks must be a list of gd.callbacks.Callback"):
            gd.fit(train, loader, callbacks=callbacks, progress=False)
    for batch_size in ("8", 0, 2.0):
        with pytest.raises(gd.GraphDLError, match=r"batch_size must be a whole number >= 1"):
            gd.data.DataLoader(x, y, batch_size=batch_size)
        with pytest.raises(gd.GraphDLError, match=r"batch_size must be a whole number >= 1"):
            gd.evaluate(gd.compile([mlp.loss, mlp.logits]), x, y, batch_size=batch_size)
    with pytest.raises(gd.GraphDLError, match=r"array 0 is a single value"):
        gd.data.DataLoader(np.float32(3.0))
    assert len(gd.fit(train, gd.data.DataLoader(x, y, batch_size=np.int64(5)), epochs=np.int64(1),
                      progress=False).epochs) == 1


def test_validation_arrays_use_the_training_plans_inference_mode(mlp) -> None:
    x, y = _separable(96)
    with mlp.g:
        dropped = gd.layers.Dropout(0.9, name="drop")(mlp.logits)
        loss = losses.SoftmaxCrossEntropy()(dropped, mlp.y)
    train = gd.compile([loss, dropped], optimizer=gd.optim.SGD(lr=0.05))
    h = gd.fit(train, gd.data.DataLoader(x, y, batch_size=32), epochs=2, metrics=["accuracy"], validation=(x, y),
               progress=False)
    mine = gd.evaluate(gd.compile([loss, dropped]), x, y, inputs=["x", "y"])
    assert h[f"val_{loss.name}"][-1] == pytest.approx(mine[loss.name], rel=1e-5)  # dropout off, like an inference plan
    assert h["val_accuracy"][-1] == mine["accuracy"]
    h2 = gd.fit(train, gd.data.DataLoader(x, y, batch_size=32), epochs=1, validation=gd.data.DataLoader(x, y),
                progress=False)
    assert f"val_{loss.name}" in h2


def test_progress_bar_shows_values_by_name(mlp, capsys) -> None:
    x, y = _separable(64)
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.SGD(lr=0.1))
    gd.fit(train, gd.data.DataLoader(x, y, batch_size=16), epochs=1, metrics=["accuracy"],
           validation=(gd.compile([mlp.loss, mlp.logits]), x, y))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "4/4" in err and f"{mlp.loss.name}=" in err and "val_accuracy=" in err


def test_learning_rate_api_changes_the_step(mlp, batch) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    feeds = {"x": batch[0], "y": batch[1]}
    start = {k: v.copy() for k, v in train.values.items()}
    train.run(feeds)
    delta = train.values["fc1.W"] - start["fc1.W"]
    for k, v in start.items():
        train.values[k][...] = v
    assert gd.train.learning_rate(train) == pytest.approx(0.1)
    gd.train.scale_learning_rate(train, 0.25)
    assert gd.train.learning_rate(train) == pytest.approx(0.025)
    train.run(feeds)
    np.testing.assert_allclose(train.values["fc1.W"] - start["fc1.W"], 0.25 * delta, rtol=1e-3, atol=1e-7)
    with pytest.raises(gd.GraphDLError, match="no learning-rate node"):
        gd.train.learning_rate(gd.compile([mlp.logits]))
