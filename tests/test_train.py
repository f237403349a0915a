"""The fit loop: history, accuracy tracking, validation, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd


def _separable(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, 64)).astype("float32") * 0.1
    x[np.arange(n), y] += 2.0
    return x, y


def test_fit_records_history_validation_and_checkpoints(mlp, tmp_path) -> None:
    x, y = _separable()
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.Adam(lr=1e-2))
    predict = gd.compile([mlp.logits])
    ckpt = tmp_path / "ckpt.gdl"
    history = gd.fit(train, gd.data.DataLoader(x, y, batch_size=32, shuffle=True), epochs=3,
                     validation=(predict, x, y), checkpoint=ckpt, progress=False)
    assert len(history.epochs) == 3 and set(history.epochs[0]) == {"loss", "accuracy", "val_accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] == 1.0
    resumed = gd.load(ckpt)
    assert int(resumed.state()["optimizer.t"]) == 3 * 7


def test_fit_needs_a_training_executable(mlp) -> None:
    x, y = _separable(10)
    with pytest.raises(gd.GraphDLError, match="needs a training executable"):
        gd.fit(gd.compile([mlp.logits]), gd.data.DataLoader(x, y), progress=False)


def test_progress_bar_shows_metrics(mlp, capsys) -> None:
    x, y = _separable(64)
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    gd.fit(train, gd.data.DataLoader(x, y, batch_size=16), epochs=1, validation=(gd.compile([mlp.logits]), x, y))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "4/4" in err and "loss=" in err and "val_accuracy=" in err
