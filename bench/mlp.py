"""MLP 784-1024-1024-10, batch 256, one SGD step: graphdl vs the GEMM floor, PyTorch eager, JAX jit."""

from __future__ import annotations

import itertools

import numpy as np

from bench.common import training_step_table
from bench.models import MLP_SIZES, graphdl_mlp, jax_mlp, mlp_data, torch_mlp


def gemm_floor(x: np.ndarray):
    """Only the 8 GEMMs of a training step (3 forward, 3 weight gradients, 2 input gradients), out=."""
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((a, b), dtype=np.float32) * 0.01 for a, b in itertools.pairwise(MLP_SIZES)]
    acts = [x] + [np.empty((x.shape[0], w.shape[1]), np.float32) for w in ws]
    grads_in = [np.empty_like(a) for a in acts[1:]]
    grads_w = [np.empty_like(w) for w in ws]

    def step() -> None:
        for k, w in enumerate(ws):
            np.matmul(acts[k], w, out=acts[k + 1])
        for k in reversed(range(len(ws))):
            np.matmul(acts[k].T, grads_in[k], out=grads_w[k])
            if k:
                np.matmul(grads_in[k], ws[k].T, out=grads_in[k - 1])

    return step


def run(repeats: int = 15) -> tuple[str, dict[str, float]]:
    x, y = mlp_data()
    ex, xt, yt = graphdl_mlp()
    feeds = {xt: x, yt: y}
    fns = {"NumPy GEMM floor (8 GEMMs, out=)": gemm_floor(x), "graphdl": lambda: ex.run(feeds, copy=False)}
    title = "MLP 784-1024-1024-10, batch 256, one SGD step"
    return training_step_table(title, "NumPy GEMM floor (8 GEMMs, out=)", fns, x, y,
                               lambda: torch_mlp()[2], jax_mlp, repeats=repeats, inner=3)
