"""CNN conv32-pool-conv64-pool-dense10, 28x28, batch 64, one SGD step: graphdl vs the im2col GEMM floor,
PyTorch eager and JAX jit."""

from __future__ import annotations

import numpy as np

from bench.common import training_step_table
from bench.models import cnn_data, graphdl_cnn, jax_cnn, torch_cnn


def gemm_floor(n: int):
    """Only the GEMMs of the step with im2col matrices prepared beforehand: both convolutions forward,
    both weight gradients, conv2's input gradient, and the dense layer's three."""
    rng = np.random.default_rng(0)

    def mats(m: int, k: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, c), dtype=np.float32),
                np.empty((m, c), np.float32))

    conv1 = mats(n * 28 * 28, 9, 32)
    conv2 = mats(n * 14 * 14, 288, 64)
    dense = mats(n, 64 * 7 * 7, 10)
    dw1, dw2, dwd = np.empty((9, 32), np.float32), np.empty((288, 64), np.float32), np.empty((3136, 10), np.float32)
    dcols2 = np.empty((n * 14 * 14, 288), np.float32)
    dxd = np.empty((n, 3136), np.float32)

    def step() -> None:
        for a, b, c in (conv1, conv2, dense):
            np.matmul(a, b, out=c)
        np.matmul(dense[0].T, dense[2], out=dwd)
        np.matmul(dense[2], dense[1].T, out=dxd)
        np.matmul(conv2[0].T, conv2[2], out=dw2)
        np.matmul(conv2[2], conv2[1].T, out=dcols2)
        np.matmul(conv1[0].T, conv1[2], out=dw1)

    return step


def run(repeats: int = 10) -> tuple[str, dict[str, float]]:
    import graphdl as gd

    if not hasattr(gd.layers, "Conv2D"):
        return "CNN: skipped, this graphdl has no Conv2D layer yet", {}
    x, y = cnn_data()
    ex, xt, yt = graphdl_cnn()
    feeds = {xt: x, yt: y}
    fns = {"NumPy im2col GEMM floor": gemm_floor(x.shape[0]), "graphdl": lambda: ex.run(feeds, copy=False)}
    title = "CNN conv32-pool-conv64-pool-dense10, 28x28, batch 64, one SGD step"
    return training_step_table(title, "NumPy im2col GEMM floor", fns, x, y,
                               torch_cnn, jax_cnn, repeats=repeats, inner=2)
