"""The fit loop: epochs over a DataLoader with a tqdm progress bar, history, validation, checkpoints."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graphdl.data import DataLoader
from graphdl.errors import GraphDLError
from graphdl.executable import Executable


@dataclass
class History:
    """Per-epoch metrics: ``history.epochs[k]`` is a dict such as {"loss": ..., "accuracy": ...}."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def evaluate(model: Executable, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256,
             inputs: Sequence[str] | None = None) -> float:
    """Accuracy of an inference executable (first output = logits) on (x, y)."""
    names = list(inputs or model.inputs[:1])
    correct = 0
    for (xb, yb) in DataLoader(x, y, batch_size=batch_size):
        (logits,) = model.run({names[0]: xb})[:1]
        correct += int(np.sum(np.argmax(logits, axis=-1) == yb))
    return correct / len(y)


def fit(train: Executable, loader: DataLoader, *, epochs: int = 1, inputs: Sequence[str] | None = None,
        validation: tuple[Executable, np.ndarray, np.ndarray] | None = None,
        checkpoint: str | os.PathLike[str] | None = None, progress: bool = True) -> History:
    """Train for ``epochs`` passes over ``loader``; each batch is one ``train.run``.

    ``inputs`` names the placeholders fed by the loader's arrays, in order (default: the training
    executable's inputs). The first output is the loss; if a later output has one row per sample
    and the last input holds integer labels, training accuracy is tracked too. ``validation`` is
    ``(predict, x, y)``; ``checkpoint`` saves the training model after each epoch.
    """
    from tqdm.auto import tqdm

    if not train.training:
        raise GraphDLError("fit needs a training executable: gd.compile([loss], optimizer=...)")
    names = list(inputs or train.inputs)
    if len(names) != len(loader.arrays):
        raise GraphDLError(f"the loader yields {len(loader.arrays)} arrays but inputs are {names}")
    history = History()
    for epoch in range(1, epochs + 1):
        total, seen, correct, tracks_accuracy = 0.0, 0, 0, False
        metrics: dict[str, float] = {}
        with tqdm(total=len(loader), desc=f"epoch {epoch}/{epochs}", disable=not progress, unit="batch") as bar:
            for batch in loader:
                outs = train.run(dict(zip(names, batch, strict=True)), copy=False)
                n = len(batch[0])
                total += float(outs[0]) * n
                seen += n
                labels = batch[-1]
                if len(outs) > 1 and np.issubdtype(labels.dtype, np.integer) and outs[1].shape[:1] == (n,):
                    tracks_accuracy = True
                    correct += int(np.sum(np.argmax(outs[1], axis=-1) == labels))
                metrics = {"loss": total / seen}
                if tracks_accuracy:
                    metrics["accuracy"] = correct / seen
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
            if validation is not None:
                metrics["val_accuracy"] = evaluate(validation[0], validation[1], validation[2])
                bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()})
        history.epochs.append(metrics)
        if checkpoint is not None:
            train.save(checkpoint)
    return history


