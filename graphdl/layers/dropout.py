"""Dropout: random masks in training plans, identity in inference plans."""

from __future__ import annotations

import numpy as np

from graphdl.layers.base import Layer
from graphdl.tensor import Tensor


class Dropout(Layer):
    """Inverted dropout: in training plans zero each entry with probability ``p`` and scale the rest by
    1/(1-p); identity in inference plans. Masks come from (seed, a step counter kept as state), so runs
    are reproducible and a reloaded training model continues the same sequence."""

    op = "dropout"

    def __init__(self, p: float = 0.5, seed: int | None = None, name: str | None = None) -> None:
        p = self._fraction("p", p)
        super().__init__(name)
        self.p = p
        self.seed = int(self.graph.rng.integers(2**31)) if seed is None else self._count("seed", seed, 0)
        self.add_state("counter", np.zeros(1, dtype=np.int64))  # (1,): Graph.stored keeps arrays at least 1-d

    def __call__(self, x: Tensor) -> Tensor:
        # each call of the same layer draws its own masks
        return self._apply(self.op, [x, self.buffers["counter"]], {"p": self.p, "seed": self.seed + self.calls})
