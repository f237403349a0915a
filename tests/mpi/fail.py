"""Run by tests/test_distributed.py under mpiexec: one rank fails (raises, or is killed) mid-training.

usage: fail.py raise|kill|stall
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.distributed import rank_and_size


def main(how: str) -> None:
    rank, size = rank_and_size()
    with gd.Graph("mlp") as g:
        x = gd.placeholder("x", (None, 8))
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(8, 3, name="fc")(x), y)
    train = gd.compile([loss], optimizer=optim.SGD(lr=0.1), distributed=gd.distributed.MPI(timeout=5))
    rng = np.random.default_rng(rank)
    for step in range(1000):
        if rank == size - 1 and step == 3:
            if how == "raise":
                raise ValueError(f"boom on rank {rank} at step {step}")
            if how == "stall":
                time.sleep(120)
            os.kill(os.getpid(), signal.SIGKILL)
        train.run({x: rng.standard_normal((4, 8)).astype("float32"), y: rng.integers(0, 3, 4)})
    del g


if __name__ == "__main__":
    main(sys.argv[1])
