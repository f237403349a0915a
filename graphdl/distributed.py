"""Data-parallel training over MPI: the same compiled plan on every rank, gradients averaged in the plan.

``gd.compile(..., optimizer=..., distributed=gd.distributed.MPI())`` adds bucketed non-blocking
all-reduce nodes to the training plan (passes/distribute.py), broadcasts parameters and state from
rank 0 so every rank starts alike, and makes an uncaught exception on any rank end the whole job.
Launch with ``mpiexec -n N python train.py``; each rank feeds its own shard of every global batch
(``DataLoader(..., shard=(rank, size))``, automatic in ``gd.fit``). BatchNorm keeps per-rank batch
statistics (each rank normalises its own shard; running statistics are averaged at each broadcast
point only if you do so); see README "Running on a cluster".
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphdl.errors import GraphDLError


@dataclass(frozen=True)
class MPI:
    """Data parallelism over MPI's world communicator.

    ``bucket_bytes`` bounds the gradients summed by one all-reduce (smaller buckets start earlier and
    overlap more; larger ones pay less latency). ``timeout`` (seconds) bounds a wait for the other
    ranks: past it the step fails with an error instead of hanging. ``abort_on_error`` installs an
    excepthook that aborts every rank when one raises, so a failure never leaves the others waiting.
    """

    bucket_bytes: int = 1 << 22
    timeout: float = 60.0
    abort_on_error: bool = True

    def __post_init__(self) -> None:
        if self.bucket_bytes < 1 or self.timeout <= 0:
            raise GraphDLError(f"MPI needs bucket_bytes >= 1 and timeout > 0; got {self}")

    @property
    def comm(self) -> Any:
        from graphdl.ops.collective import world

        return world()

    @property
    def rank(self) -> int:
        return int(self.comm.rank)

    @property
    def size(self) -> int:
        return int(self.comm.size)

    def setup(self) -> None:
        """Called once per compile: install the abort-on-error hook."""
        if self.abort_on_error and self.size > 1:
            install_abort_hook()

    def broadcast(self, values: dict[str, np.ndarray]) -> None:
        """Copy every array of rank 0 into the same array on every other rank (in place, sorted by name)."""
        comm = self.comm
        if comm.size == 1:
            return
        names = sorted(values)
        if comm.bcast(names, root=0) != names:
            raise GraphDLError(f"rank {comm.rank}: the model's arrays differ from rank 0's; every rank must "
                               "build and compile the same graph")
        for name in names:
            comm.Bcast(values[name], root=0)

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        """The sum of a small float64 vector over all ranks (metrics, loss totals)."""
        from mpi4py import MPI as _MPI

        out = np.array(values, dtype=np.float64)
        if self.size > 1:
            self.comm.Allreduce(_MPI.IN_PLACE, out, op=_MPI.SUM)
        return out


_HOOKED = False


def install_abort_hook() -> None:
    """An uncaught exception on one rank prints its traceback and aborts every rank (no hang)."""
    global _HOOKED
    if _HOOKED:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        from graphdl.ops.collective import world

        comm = world()
        summary = "".join(traceback.format_exception_only(kind, value)).strip()
        sys.stderr.write(f"graphdl: rank {comm.rank} of {comm.size} failed ({summary}); aborting all ranks\n")
        traceback.print_exception(kind, value, tb)
        sys.stderr.flush()
        previous(kind, value, tb) if previous is not sys.__excepthook__ else None
        # mpiexec forwards each rank's output asynchronously: aborting at once could drop the traceback's
        # last lines (the error itself), as CI once saw
        time.sleep(0.5)
        comm.Abort(1)

    sys.excepthook = hook
    _HOOKED = True


def rank_and_size() -> tuple[int, int]:
    """(rank, size) under mpiexec, (0, 1) otherwise (without importing mpi4py when not launched by MPI)."""
    import os

    if not any(k in os.environ for k in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_SIZE")):
        return 0, 1
    from graphdl.ops.collective import world

    comm = world()
    return int(comm.rank), int(comm.size)


def allreduce_seconds(nbytes: float, ranks: int, *, alpha: float, beta: float, buckets: int = 1) -> float:
    """Alpha-beta model of a ring all-reduce (reduce-scatter then all-gather) of ``nbytes`` in ``buckets``
    messages: each bucket costs 2 (p - 1) alpha + 2 (p - 1) / p * bytes * beta (alpha: latency per
    message in seconds, beta: seconds per byte of link bandwidth)."""
    if ranks < 2:
        return 0.0
    p = ranks
    return buckets * 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta


def predict_step(compute_s: float, grad_bytes: float, ranks: int, *, alpha: float, beta: float,
                 overlap: float = 0.0, buckets: int = 1) -> dict[str, float]:
    """Predicted time per data-parallel step (fixed batch per rank): compute plus the part of the
    all-reduce not hidden behind the backward pass (``overlap`` in [0, 1])."""
    comm = allreduce_seconds(grad_bytes, ranks, alpha=alpha, beta=beta, buckets=buckets)
    step = compute_s + (1.0 - overlap) * comm
    return {"comm_s": comm, "step_s": step, "speedup": ranks * compute_s / step, "efficiency": compute_s / step}


def for_fit(train: Any, loader: Any, on_nonfinite: str) -> tuple[MPI | None, Any]:
    """What ``gd.fit`` needs under mpiexec: the plan's MPI setting (None when alone) and the loader sharded
    for this rank. A plan without gradient all-reduce under several ranks is refused: each rank would
    train its own model and nothing would say so."""
    rank, size = rank_and_size()
    collective = any(n.op == "allreduce_start" for n in train.ir.nodes)
    if size == 1 and not collective:
        return None, loader
    if not collective:
        raise GraphDLError(f"gd.fit runs on {size} MPI ranks, but the training plan '{train.name}' has no gradient "
                           "all-reduce, so each rank would train its own model; compile it with "
                           "distributed=gd.distributed.MPI() (to resume from a one-process checkpoint, build and "
                           "compile the model so, then load_parameters/load_state from the file)")
    dist = train.distributed if isinstance(train.distributed, MPI) else MPI()
    dist.setup()
    if on_nonfinite == "skip" and size > 1:
        raise GraphDLError("on_nonfinite='skip' is not supported on several ranks (a rank that skips would leave "
                           "the others waiting for its gradients); use on_nonfinite='stop'")
    if loader.size == 1 and size > 1:
        loader = loader.sharded(rank, size)
    elif (loader.rank, loader.size) != (rank, size):
        raise GraphDLError(f"the DataLoader is sharded as rank {loader.rank} of {loader.size}, but this is rank "
                           f"{rank} of {size}")
    return dist, loader


def average(dist: MPI | None, logs: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (every rank takes the same number of equal steps)."""
    if dist is None or dist.size == 1 or not logs:
        return logs
    keys = sorted(logs)
    names = dist.comm.bcast(keys, root=0)
    if names != keys:
        raise GraphDLError(f"rank {dist.rank} reports {keys}, rank 0 {names}; every rank must use the same metrics")
    total = dist.allreduce_sum(np.array([logs[k] for k in keys], dtype=np.float64)) / dist.size
    return {k: float(v) for k, v in zip(keys, total)}
