"""Run by tests/test_distributed.py under mpiexec (or alone): 20 data-parallel steps, parameters saved by rank 0.

usage: train_steps.py OUT.npz OPTIMIZER CLIP DTYPE
"""

from __future__ import annotations

import sys

import numpy as np
from steps import run_steps  # (this directory: the script's own)

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.distributed import rank_and_size


def main(out: str, opt_name: str, clip: str, dtype: str) -> None:
    rank, size = rank_and_size()
    clip_norm = 0.5 if clip == "clip" else None
    opt = (optim.SGD(lr=0.1, momentum=0.9, clip_norm=clip_norm) if opt_name == "sgd"
           else optim.Adam(lr=0.01, clip_norm=clip_norm))
    with gd.Graph("mlp", dtype=dtype, seed=rank) as g:  # different seeds: the broadcast must fix them
        x = gd.placeholder("x", (None, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Tanh()(layers.Linear(12, 16, name="fc1")(x))
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(16, 4, name="fc2")(h), y)
    dist = gd.distributed.MPI(bucket_bytes=600, timeout=30) if size > 1 else None
    train = gd.compile([loss], optimizer=opt, distributed=dist)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((480, 12)).astype(dtype)
    ys = rng.integers(0, 4, 480)
    per_rank = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    loader = gd.data.DataLoader(xs, ys, batch_size=per_rank, shuffle=True, seed=1, shard=(rank, size))
    run_steps(train, loader, x, y, 20)
    if rank == 0:
        np.savez(out, **g.parameters(), t=train.state()["optimizer.t"])


if __name__ == "__main__":
    main(*sys.argv[1:5])
