"""Callbacks for ``gd.fit``, in the Keras spirit: hooks at train, epoch and batch boundaries and a
``stop_training`` flag.

``fit`` calls ``set_context(executable, history)`` and then ``on_train_begin``, ``on_epoch_begin``,
``on_batch_end``, ``on_epoch_end`` and ``on_train_end`` (on every kind of end: epochs ran out, a
callback stopped training, or an error). Epoch logs hold every value by name, as ``History`` does;
``"loss"``/``"val_loss"`` are aliases for the objective. Callbacks that track a best value take it
from the history they are given, so they continue correctly after a resume (``fit(initial_epoch=...,
history=...)``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from graphdl.errors import GraphDLError, file_path, flag, real_number, whole_number
from graphdl.executable import Executable
from graphdl.train import (
    History,
    learning_rate,
    save_if_finite,
    scale_learning_rate,
    set_learning_rate_attrs,
)

_MAXIMISED = ("accuracy", "auc", "f1", "precision", "recall", "r2")


class Callback:
    """Base: every hook does nothing. ``executable`` and ``history`` are set by ``fit``."""

    executable: Executable
    history: History

    def __init__(self) -> None:
        self.stop_training = False

    def set_context(self, executable: Executable, history: History) -> None:
        self.executable, self.history = executable, history

    def on_train_begin(self, logs: dict[str, Any]) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, logs: dict[str, Any]) -> None: ...


class _Monitoring(Callback):
    """Watches one logged value for improvements (``mode`` "min", "max" or "auto" from its name)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        super().__init__()
        kind = type(self).__name__
        if not isinstance(mode, str) or mode not in ("auto", "min", "max"):
            raise GraphDLError(f"{kind}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str):
            raise GraphDLError(f"{kind}: monitor names a logged value such as 'val_loss', got {monitor!r:.40}")
        self.monitor, self.min_delta = monitor, abs(real_number(min_delta, f"{kind}: min_delta"))
        self.mode = mode if mode != "auto" else ("max" if any(m in monitor for m in _MAXIMISED) else "min")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0

    def _key(self) -> str:
        return self.history._key(self.monitor)

    def value(self, logs: dict[str, Any]) -> float:
        key = self._key()
        if key not in logs:
            raise GraphDLError(f"{type(self).__name__} monitors '{self.monitor}' but the epoch logs have "
                               f"{sorted(k for k in logs if k != 'epoch')}; pass monitor=one of them (validation "
                               "values need fit(validation=...))")
        return float(logs[key])

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        # After a resume, the history holds the earlier epochs: continue from their best.
        if self.best is None and self.monitor in self.history:
            for e in self.history.epochs:
                if self._key() in e:
                    self.observe(int(e.get("epoch", 0)), float(e[self._key()]))

    def observe(self, epoch: int, value: float) -> bool:
        """Record one epoch's value; True if it is the new best."""
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False


class EarlyStopping(_Monitoring):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``restore_best_weights`` puts back the parameters and state of the best epoch at the end of training,
    on every kind of end (also when the epochs simply run out).
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False) -> None:
        restore_best_weights = flag(restore_best_weights, "EarlyStopping: restore_best_weights")
        super().__init__(monitor, mode, min_delta)
        self.patience = whole_number(patience, "EarlyStopping: patience")
        self.restore_best_weights = restore_best_weights
        self.best_values: dict[str, np.ndarray] | None = None
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.stop_training, self.stopped_epoch, self.restored_epoch = False, None, None
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.observe(epoch, self.value(logs)):
            if self.restore_best_weights:
                self.best_values = {k: v.copy() for k, v in self.executable.values.items()}
        elif self.wait >= self.patience:
            self.stop_training, self.stopped_epoch = True, epoch

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.restore_best_weights and self.best_values is not None:
            for k, v in self.best_values.items():
                self.executable.values[k][...] = v
            self.restored_epoch = self.best_epoch


class ModelCheckpoint(_Monitoring):
    """Save the training executable to ``path`` (``{epoch}`` is replaced) after an epoch: only when ``monitor``
    improves (``save_best_only``, the default) or every epoch. Saves are atomic (``Executable.save``) and never
    write a model with non-finite values; after a resume the earlier best is kept unless beaten."""

    rank_zero_only = True  # under MPI, one rank writes the file

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss", *, save_best_only: bool = True,
                 mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.path = file_path(path, "ModelCheckpoint")
        self.save_best_only = flag(save_best_only, "ModelCheckpoint: save_best_only")
        self.saved: list[tuple[int, str]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        better = self.observe(epoch, self.value(logs)) if self.save_best_only else True
        if better:
            path = self.path.replace("{epoch}", str(epoch))
            if save_if_finite(self.executable, path):
                self.saved.append((epoch, path))


class ReduceLROnPlateau(_Monitoring):
    """Multiply the plan's learning rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs, then wait ``cooldown`` epochs; never below ``min_lr``. The rate is an attribute of the plan's
    ``learning_rate`` node, so it is saved with the model and kept on resume."""

    def __init__(self, monitor: str = "val_loss", *, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, mode: str = "auto") -> None:
        super().__init__(monitor, mode, min_delta)
        if not 0 < real_number(factor, "ReduceLROnPlateau: factor") < 1:
            raise GraphDLError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self.factor, self.min_lr = float(factor), real_number(min_lr, "ReduceLROnPlateau: min_lr")
        self.patience = whole_number(patience, "ReduceLROnPlateau: patience")
        self.cooldown = whole_number(cooldown, "ReduceLROnPlateau: cooldown")
        self.cooldown_left = 0
        self.reductions: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        improved = self.observe(epoch, self.value(logs))
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if improved or self.wait < self.patience:
            return
        lr = learning_rate(self.executable)
        new = max(lr * self.factor, self.min_lr)
        if new < lr:
            scale_learning_rate(self.executable, new / lr)
            self.reductions.append((epoch, new))
            if self.history.epochs and self.history.epochs[-1].get("epoch") == epoch:
                self.history.epochs[-1]["lr"] = learning_rate(self.executable)
        self.cooldown_left, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Write one CSV row per epoch (every logged name as a column) to ``path``, rewritten atomically after
    each epoch. ``append=True`` keeps the rows already in the file (after a resume)."""

    rank_zero_only = True  # under MPI, one rank writes the file

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        super().__init__()
        self.path, self.append = file_path(path, "CSVLogger"), flag(append, "CSVLogger: append")
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.rows = History.load(self.path).epochs if self.append and os.path.exists(self.path) else []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append(dict(logs))
        tmp = f"{self.path}.tmp"
        History(self.rows, self.history.objective).save(tmp)
        os.replace(tmp, self.path)


class LearningRateFinder(Callback):
    """Sweep the learning rate exponentially from ``min_lr`` to ``max_lr`` over ``steps`` training steps,
    recording the objective at each; stop early when the loss exceeds ``diverge`` times its best. At the end
    the parameters, optimizer state and learning rate are put back as they were.

    Use with enough epochs to cover ``steps``: ``fit(train, loader, epochs=99, callbacks=[finder])``, or
    ``find_learning_rate``. Then ``finder.lrs``, ``finder.losses``, ``finder.suggestion()`` and
    ``finder.plot("lr.png")``.
    """

    def __init__(self, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100, diverge: float = 4.0,
                 smoothing: float = 0.05) -> None:
        super().__init__()
        min_lr = real_number(min_lr, "LearningRateFinder: min_lr")
        max_lr = real_number(max_lr, "LearningRateFinder: max_lr")
        steps = whole_number(steps, "LearningRateFinder: steps")
        diverge = real_number(diverge, "LearningRateFinder: diverge")
        smoothing = real_number(smoothing, "LearningRateFinder: smoothing")
        if not 0 < min_lr < max_lr or steps < 2:
            raise GraphDLError(f"LearningRateFinder needs 0 < min_lr < max_lr and steps >= 2; got {min_lr}, "
                               f"{max_lr}, {steps}")
        self.min_lr, self.max_lr, self.steps = min_lr, max_lr, steps
        self.diverge, self.smoothing = diverge, smoothing
        self.gamma = (max_lr / min_lr) ** (1.0 / (steps - 1))
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        exe = self.executable
        self.stop_training = False
        self.lrs, self.losses, self._smooth = [], [], None
        self._saved_values = {k: v.copy() for k, v in exe.values.items()}
        self._saved_attrs = {n.name: n.attr for n in exe.ir.nodes if n.op == "learning_rate"}
        if len(self._saved_attrs) != 1:
            raise GraphDLError(f"LearningRateFinder needs exactly one learning-rate node; '{exe.name}' has "
                               f"{sorted(self._saved_attrs)}")
        counter = exe.nodes[next(iter(self._saved_attrs))].inputs[0]
        exe.values[counter][...] = 0  # the exponential schedule counts from here (restored at the end)
        set_learning_rate_attrs(exe, lambda n: {"lr": self.min_lr, "dtype": n.attr["dtype"],
                                                "schedule": "exponential", "gamma": self.gamma})

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None:
        loss = float(logs["batch_objective"])
        self.lrs.append(self.min_lr * self.gamma ** len(self.lrs))
        self._smooth = loss if self._smooth is None else (1 - self.smoothing) * self._smooth + self.smoothing * loss
        self.losses.append(self._smooth)
        best = min(self.losses)
        if len(self.lrs) >= self.steps or not math.isfinite(loss) or self._smooth > self.diverge * best:
            self.stop_training = True

    def on_train_end(self, logs: dict[str, Any]) -> None:
        exe, saved = self.executable, self._saved_attrs
        for k, v in self._saved_values.items():
            exe.values[k][...] = v
        set_learning_rate_attrs(exe, lambda n: saved[n.name])

    def suggestion(self) -> float:
        """The learning rate where the smoothed loss falls fastest (steepest negative slope in log lr)."""
        if len(self.losses) < 3:
            raise GraphDLError("LearningRateFinder: fewer than 3 steps recorded; run it over more batches")
        slopes = np.gradient(np.asarray(self.losses), np.log(np.asarray(self.lrs)))
        return float(self.lrs[int(np.argmin(slopes))])

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Draw the smoothed loss against the learning rate (log scale) to a PNG or SVG file."""
        from graphdl.plot import lr_sweep

        lr_sweep(self.lrs, self.losses, path, suggestion=self.suggestion() if len(self.losses) >= 3 else None)


def find_learning_rate(train: Executable, loader: Any, *, min_lr: float = 1e-6, max_lr: float = 1.0,
                       steps: int = 100, **fit_kwargs: Any) -> LearningRateFinder:
    """Run a ``LearningRateFinder`` sweep over ``loader`` (as many epochs as ``steps`` needs); the model is
    unchanged afterwards."""
    from graphdl.train import fit

    finder = LearningRateFinder(min_lr, max_lr, steps)
    epochs = max(1, math.ceil(steps / max(1, len(loader))))
    fit(train, loader, epochs=epochs, callbacks=[finder], **{"progress": False, **fit_kwargs})
    return finder
