"""Callbacks: early stopping (restoring the best weights on every kind of end), best-only checkpoints, learning-rate
reduction on the plan's node, CSV logs and the learning-rate finder, also after a resume."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import graphdl as gd
from graphdl.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateFinder,
    ModelCheckpoint,
    ReduceLROnPlateau,
)


class Scripted(Callback):
    """Puts a chosen value into each epoch's logs (placed before the callback under test) and keeps a copy of
    the parameters at the end of every epoch."""

    def __init__(self, values: list[float], name: str = "score") -> None:
        super().__init__()
        self.values, self.name, self.snapshots = values, name, {}

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        logs[self.name] = self.values[epoch - 1]
        self.snapshots[epoch] = {k: v.copy() for k, v in self.executable.parameters().items()}


def _data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, 64)).astype("float32") * 0.1
    x[np.arange(n), y] += 2.0
    return x, y


def _params_equal(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def setup(mlp):
    x, y = _data()
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    return train, gd.data.DataLoader(x, y, batch_size=16)


def test_early_stopping_stops_after_patience_and_restores_best(setup) -> None:
    train, loader = setup
    script = Scripted([1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    stop = EarlyStopping("score", patience=2, min_delta=0.01, restore_best_weights=True)
    h = gd.fit(train, loader, epochs=6, callbacks=[script, stop], progress=False)
    assert h["epoch"] == [1, 2, 3, 4] and stop.stopped_epoch == 4 and stop.best_epoch == 2
    assert stop.restored_epoch == 2 and _params_equal(train.parameters(), script.snapshots[2])


def test_restore_best_weights_when_the_epochs_simply_run_out(setup) -> None:
    train, loader = setup
    script = Scripted([0.9, 0.3, 0.5, 0.6])
    stop = EarlyStopping("score", patience=10, restore_best_weights=True)
    h = gd.fit(train, loader, epochs=4, callbacks=[script, stop], progress=False)
    assert len(h.epochs) == 4 and stop.stopped_epoch is None  # not stopped by the callback
    assert not _params_equal(script.snapshots[4], script.snapshots[2])
    assert stop.restored_epoch == 2 and _params_equal(train.parameters(), script.snapshots[2])


def test_restore_best_weights_when_training_fails(setup) -> None:
    train, loader = setup
    x, y = loader.arrays
    script = Scripted([0.5, 0.9, 0.9])
    stop = EarlyStopping("score", patience=10, restore_best_weights=True)
    gd.fit(train, loader, epochs=2, callbacks=[script, stop], progress=False)
    bad = x.copy()
    bad[40] = np.nan
    with pytest.raises(gd.NonFiniteError, match="epoch 3, step 3"):
        gd.fit(train, gd.data.DataLoader(bad, y, batch_size=16), epochs=3, initial_epoch=2, callbacks=[script, stop],
               progress=False)
    assert _params_equal(train.parameters(), script.snapshots[1])
    assert all(np.all(np.isfinite(v)) for v in train.values.values())


def test_mode_is_inferred_from_the_name_and_monitor_must_exist(setup) -> None:
    assert EarlyStopping("val_accuracy").mode == "max" and EarlyStopping("val_loss").mode == "min"
    train, loader = setup
    with pytest.raises(gd.GraphDLError, match=r"monitors 'val_loss'.*fit\(validation=\.\.\.\)"):
        gd.fit(train, loader, epochs=1, callbacks=[EarlyStopping()], progress=False)
    with pytest.raises(gd.GraphDLError, match="mode"):
        EarlyStopping(mode="up")


def test_model_checkpoint_saves_only_improvements_and_never_nonfinite(setup, tmp_path) -> None:
    train, loader = setup
    path = tmp_path / "best.gdl"

    class Poison(Callback):
        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            if epoch == 4:
                self.executable.values["fc2.b"][0] = np.nan

    script = Scripted([0.8, 0.9, 0.4, 0.1])
    ckpt = ModelCheckpoint(path, "score")
    with pytest.warns(RuntimeWarning, match="not saving"):
        gd.fit(train, loader, epochs=4, callbacks=[script, Poison(), ckpt], progress=False)
    assert [e for e, _ in ckpt.saved] == [1, 3]
    assert _params_equal(gd.load(path).parameters(), script.snapshots[3])


def test_model_checkpoint_keeps_the_earlier_best_after_a_resume(setup, tmp_path) -> None:
    train, loader = setup
    path = tmp_path / "best.gdl"
    first = Scripted([0.5, 0.3], name="val_score")
    h = gd.fit(train, loader, epochs=2, callbacks=[first, ModelCheckpoint(path, "val_score")], progress=False)
    before = path.read_bytes()
    resumed = gd.load(path)
    again = ModelCheckpoint(path, "val_score")
    gd.fit(resumed, loader, epochs=4, initial_epoch=2, history=h,
           callbacks=[Scripted([0, 0, 0.4, 0.35], name="val_score"), again], progress=False)
    assert again.best == 0.3 and again.saved == [] and path.read_bytes() == before
    assert h["epoch"] == [1, 2, 3, 4]


def test_reduce_lr_on_plateau_changes_the_plans_learning_rate_and_survives_save(setup, tmp_path) -> None:
    train, loader = setup
    script = Scripted([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    reduce = ReduceLROnPlateau("score", factor=0.5, patience=2, min_lr=0.03)
    h = gd.fit(train, loader, epochs=6, callbacks=[script, reduce], progress=False)
    assert reduce.reductions == [(3, pytest.approx(0.05)), (5, pytest.approx(0.03))]
    assert h["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.03, 0.03])
    assert gd.train.learning_rate(train) == pytest.approx(0.03)
    train.save(tmp_path / "m.gdl")
    assert gd.train.learning_rate(gd.load(tmp_path / "m.gdl")) == pytest.approx(0.03)


def test_csv_logger_writes_rows_and_appends_after_resume(setup, tmp_path) -> None:
    train, loader = setup
    path = tmp_path / "log.csv"
    h = gd.fit(train, loader, epochs=2, callbacks=[CSVLogger(path)], progress=False)
    gd.fit(train, loader, epochs=3, initial_epoch=2, history=h, callbacks=[CSVLogger(path, append=True)],
           progress=False)
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[2][h.objective]) == pytest.approx(h["loss"][2])


@pytest.mark.slow
def test_learning_rate_finder_sweeps_and_restores_everything(mlp, tmp_path) -> None:
    x, y = _data(256)
    train = gd.compile([mlp.loss], optimizer=gd.optim.Adam(lr=1e-3))
    before = {k: v.copy() for k, v in train.values.items()}
    finder = gd.callbacks.find_learning_rate(train, gd.data.DataLoader(x, y, batch_size=16, shuffle=True),
                                             min_lr=1e-5, max_lr=10.0, steps=40)
    assert 3 <= len(finder.lrs) <= 40
    assert finder.lrs[0] == pytest.approx(1e-5)
    np.testing.assert_allclose(np.diff(np.log(finder.lrs)), np.log(finder.gamma))
    assert finder.losses[-1] != finder.losses[0]
    assert 1e-5 <= finder.suggestion() <= 10.0
    for k, v in before.items():
        np.testing.assert_array_equal(train.values[k], v, err_msg=k)
    assert gd.train.learning_rate(train) == pytest.approx(1e-3)
    finder.plot(tmp_path / "lr.png")
    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "lr.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    with pytest.raises(gd.GraphDLError, match="min_lr < max_lr"):
        LearningRateFinder(1.0, 0.1)


def test_early_stopping_continues_counting_after_a_resume(setup) -> None:
    train, loader = setup
    h = gd.fit(train, loader, epochs=3, callbacks=[Scripted([0.5, 0.3, 0.4], name="val_score")], progress=False)
    assert h["val_score"] == [0.5, 0.3, 0.4]  # values a callback adds to the logs are recorded
    stop = EarlyStopping("val_score", patience=2)  # a fresh object, as in a new process
    gd.fit(train, loader, epochs=10, initial_epoch=3, history=h,
           callbacks=[Scripted([0, 0, 0, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35], name="val_score"), stop],
           progress=False)
    assert stop.best == 0.3 and stop.best_epoch == 2 and stop.stopped_epoch == 4 and h["epoch"][-1] == 4
