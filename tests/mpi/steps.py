"""Shared by the scripts tests/test_distributed.py runs under mpiexec."""

from __future__ import annotations

import graphdl as gd


def run_steps(train: gd.Executable, loader: gd.data.DataLoader, x: gd.Tensor, y: gd.Tensor, steps: int) -> None:
    """``steps`` training steps over the loader's batches, epoch after epoch."""
    done = 0
    while done < steps:
        for xb, yb in loader:
            train.run({x: xb, y: yb})
            done += 1
            if done == steps:
                return
