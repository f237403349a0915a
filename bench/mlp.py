"""MLP 784-1024-1024-10, batch 256, one SGD step: graphdl vs the GEMM floor, PyTorch eager, JAX jit."""

from __future__ import annotations

import itertools

import numpy as np

from bench.common import available, median_times, ms, ratio, table
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
    notes = []
    if available("torch"):
        import torch

        _, _, tstep = torch_mlp()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        fns["PyTorch eager"] = lambda: tstep(tx, ty)
    else:
        notes.append("PyTorch not installed: skipped")
    if available("jax"):
        import jax

        params, jstep = jax_mlp()
        jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y)
        state = [params]

        def jax_step() -> None:
            state[0], loss = jstep(state[0], jx, jy)
            loss.block_until_ready()

        fns["JAX jit"] = jax_step
    else:
        notes.append("JAX not installed: skipped")
    t = median_times(fns, repeats=repeats, inner=3)
    floor, ours = t["NumPy GEMM floor (8 GEMMs, out=)"], t["graphdl"]
    rows = [[name, ms(v), ratio(v, floor), ratio(ours, v)] for name, v in t.items()]
    text = table(["MLP 784-1024-1024-10, batch 256, one SGD step", "median", "vs GEMM floor",
                  "graphdl / this"], rows)
    if notes:
        text += "\n\n" + "; ".join(notes)
    return text, t
