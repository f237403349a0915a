"""Small models shared by the executor, planner and pass tests."""

from __future__ import annotations

import itertools

import numpy as np

import graphdl as gd


def mlp(sizes: tuple[int, ...] = (20, 32, 32, 5), seed: int = 0, dtype: str = "float32",
        ) -> tuple[gd.Graph, gd.Tensor, gd.Tensor, gd.Tensor]:
    """Linear-ReLU layers of ``sizes`` and a softmax cross-entropy loss: (graph, x, y, loss)."""
    with gd.Graph("mlp", dtype=dtype, seed=seed) as g:
        x = gd.placeholder("x", (None, sizes[0]))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = x
        for k, (a, b) in enumerate(itertools.pairwise(sizes)):
            h = gd.layers.Linear(a, b, name=f"fc{k}")(h)
            if k < len(sizes) - 2:
                h = gd.layers.ReLU(name=f"act{k}")(h)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(h, y)
    return g, x, y, loss


def batch(n: int, features: int, classes: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)
