"""Writes the committed training file tests/data/train_v<N>.gdl (N: the format version of the graphdl that
runs this script) and tests/data/train_v<N>_expected.npz: the batch, the state it was saved with, and the
loss and parameters after one more step. tests/test_format_training_file.py loads the file with today's
graphdl, resumes one step and compares.

The model: Linear -> BatchNorm1D -> ReLU -> Linear with softmax cross-entropy, trained three steps with Adam
(lr 0.05, weight decay 0.01) under a cosine schedule with one warm-up step, so the file holds parameters,
Adam moments, the step counter and BatchNorm running statistics.

    python tests/data/make_training_file.py            # with this checkout: train_v2.gdl
    PYTHONPATH=<checkout of commit 5c3e3c8> python tests/data/make_training_file.py   # train_v1.gdl
"""

from __future__ import annotations

import os
import sys

import numpy as np

import graphdl as gd
from graphdl import serialize

HERE = os.path.dirname(os.path.abspath(__file__))


def build() -> tuple[gd.Executable, dict[str, np.ndarray]]:
    with gd.Graph("train", seed=3):
        x = gd.placeholder("x", (None, 6))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Linear(6, 8, name="fc1")(x)
        h = gd.layers.BatchNorm1D(8, name="bn")(h)
        h = gd.layers.ReLU()(h)
        logits = gd.layers.Linear(8, 3, name="fc2")(h)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    optimizer = gd.optim.Adam(lr=0.05, weight_decay=0.01, schedule=gd.optim.CosineLR(total_steps=10, warmup_steps=1))
    rng = np.random.default_rng(7)
    feed = {"x": rng.standard_normal((5, 6)).astype("float32"), "y": rng.integers(0, 3, 5)}
    return gd.compile([loss], optimizer=optimizer), feed


def main() -> int:
    train, feed = build()
    for _ in range(3):
        train.run(feed)
    version = serialize.FORMAT_VERSION
    path = os.path.join(HERE, f"train_v{version}.gdl")
    train.save(path)
    saved = {f"saved/{k}": v.copy() for k, v in train.values.items()}
    (loss,) = train.run(feed)
    after = {f"after/{k}": v.copy() for k, v in train.parameters().items()}
    np.savez(os.path.join(HERE, f"train_v{version}_expected.npz"), x=feed["x"], y=feed["y"], loss=loss,
             **saved, **after)
    print(f"wrote {path} (graphdl {gd.__version__}, format v{version}); next-step loss {float(loss):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
