"""Run by tests/test_distributed.py under mpiexec (or alone): 10 data-parallel SGD steps of a small CNN whose
first convolution the compiler fuses with its pooling (conv2d_pool_blocks); parameters saved by rank 0.

usage: cnn_steps.py OUT.npz PER_RANK_BATCH
"""

from __future__ import annotations

import sys

import numpy as np
from steps import run_steps  # (this directory: the script's own)

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.distributed import rank_and_size


def main(out: str, per_rank: int) -> None:
    rank, size = rank_and_size()
    with gd.Graph("cnn", dtype="float64", seed=rank) as g:  # different seeds: the broadcast must fix them
        x = gd.placeholder("x", (None, 1, 12, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Conv2D(1, 10, 3, padding=1, name="conv1")(x)
        h = layers.MaxPool2D(2, name="pool1")(layers.ReLU(name="relu1")(h))
        h = layers.MaxPool2D(2, name="pool2")(layers.ReLU()(layers.Conv2D(10, 6, 3, padding=1, name="conv2")(h)))
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(54, 3, name="fc")(layers.Flatten()(h)), y)
    dist = gd.distributed.MPI(bucket_bytes=2000, timeout=30) if size > 1 else None
    train = gd.compile([loss], optimizer=optim.SGD(lr=0.1, momentum=0.9), distributed=dist)
    assert any(n.op == "conv2d_pool_blocks" for n in train.ir.nodes)
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((96, 1, 12, 12)), rng.integers(0, 3, 96)
    loader = gd.data.DataLoader(xs, ys, batch_size=per_rank, shuffle=True, seed=1, shard=(rank, size))
    run_steps(train, loader, x, y, 10)
    if rank == 0:
        np.savez(out, **g.parameters())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
