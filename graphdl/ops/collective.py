"""Collective ops for data-parallel training over MPI: bucketed gradient all-reduce, started and awaited.

``allreduce_start`` packs its gradient inputs into one flat bucket and starts a non-blocking sum over
all ranks; ``allreduce_wait`` completes it and scales by 1/size (the mean over ranks), in place;
``bucket_slice`` reads one gradient back out of the bucket. The distribute pass
(passes/distribute.py) puts each start right after the last of its gradients is computed and each wait
just before its first reader, so communication overlaps the rest of the backward pass.

The communicator is MPI's world communicator (what ``mpiexec`` launches); with one process the ops
are plain copies. MPI moves a non-blocking collective along only inside MPI calls, so a progress
thread polls the requests in flight while the main thread runs the backward kernels (which release
the GIL), and marks each one done; the main thread never touches a request after starting it. A
request is found by the address of the bucket it fills: the start and the wait of one bucket see the
same planned buffer. A wait gives up after the timeout of the plan (attribute ``timeout``) with an
error naming the bucket, so a dead or stalled rank ends the job instead of hanging it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from graphdl.attrs import Float, Int, Ints
from graphdl.errors import ExecutionError
from graphdl.ops.common import same_shape
from graphdl.registry import Effects, OpDef, register

COMMUNICATES = Effects(communicates=True)


class _Progress:
    """A daemon thread that polls the all-reduces in flight and sets each one's event when it completes."""

    POLL_SECONDS = 5e-5

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.pending: dict[int, tuple[Any, threading.Event]] = {}
        threading.Thread(target=self._run, name="graphdl-mpi-progress", daemon=True).start()

    def add(self, key: int, request: Any) -> None:
        with self.lock:
            self.pending[key] = (request, threading.Event())
            self.lock.notify()

    def take(self, key: int) -> threading.Event | None:
        with self.lock:
            entry = self.pending.get(key)
        return None if entry is None else entry[1]

    def forget(self, key: int) -> None:
        with self.lock:
            self.pending.pop(key, None)

    def _run(self) -> None:
        while True:
            with self.lock:
                while not any(not e.is_set() for _, e in self.pending.values()):
                    self.lock.wait()
                work = [(r, e) for r, e in self.pending.values() if not e.is_set()]
            for request, event in work:
                if request.Test():
                    event.set()
            time.sleep(self.POLL_SECONDS)


#: The progress thread, started with the first all-reduce of a multi-rank run (run-time state).
_PROGRESS: list[_Progress] = []
#: Seconds blocked in waits, waits, and waits whose all-reduce had already finished, since last cleared
#: (read by bench/distributed.py: the evidence that communication overlaps the backward pass).
STATS: dict[str, float] = {}


def world() -> Any:
    """MPI's world communicator (imports mpi4py on first use)."""
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - depends on the environment
        raise ExecutionError("data-parallel training needs mpi4py: pip install 'graphdl[mpi]'") from None
    return MPI.COMM_WORLD


def _start_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    if any(None in s for s in shapes):
        return (None,)
    return (sum(math.prod(s) for s in shapes),)


def _start_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    comm = world()
    from mpi4py import MPI

    bounds = np.cumsum([0, *(math.prod(s) for s in in_shapes)])

    def allreduce_start(*args: np.ndarray) -> None:
        *grads, out = args
        for g, lo, hi in zip(grads, bounds[:-1], bounds[1:]):
            out[lo:hi] = g.reshape(-1)
        if comm.size > 1:
            if not _PROGRESS:
                _PROGRESS.append(_Progress())
            _PROGRESS[0].add(out.ctypes.data, comm.Iallreduce(MPI.IN_PLACE, out, op=MPI.SUM))

    return allreduce_start


def _wait_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    comm = world()
    timeout = float(attrs["timeout"])
    scale = 1.0 / comm.size

    def allreduce_wait(bucket: np.ndarray, out: np.ndarray) -> None:
        t0 = time.perf_counter()
        key = bucket.ctypes.data
        done = _PROGRESS[0].take(key) if _PROGRESS else None
        if done is not None:
            STATS["waits"] = STATS.get("waits", 0) + 1
            if done.is_set():  # it finished while later backward kernels ran
                STATS["done_before_wait"] = STATS.get("done_before_wait", 0) + 1
            elif not done.wait(timeout):
                raise ExecutionError(
                    f"rank {comm.rank} of {comm.size}: the all-reduce of gradient bucket {attrs['bucket']} did "
                    f"not complete within {timeout:g} s; another rank has died or stalled (see its output). "
                    "Raise the timeout with gd.distributed.MPI(timeout=...) if steps are that slow")
            _PROGRESS[0].forget(key)
        np.multiply(bucket, scale, out=out)
        STATS["wait_seconds"] = STATS.get("wait_seconds", 0.0) + time.perf_counter() - t0

    return allreduce_wait


def _slice_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return tuple(attrs["shape"])


def _slice_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    lo = int(attrs["offset"])
    hi = lo + math.prod(out_shape)

    def bucket_slice(bucket: np.ndarray, out: np.ndarray) -> None:
        out.reshape(-1)[...] = bucket[lo:hi]

    return bucket_slice


register(OpDef("allreduce_start", _start_shape, _start_kernel, label_attrs=("bucket",), effects=COMMUNICATES,
               doc="Pack gradients into one flat bucket and start summing it over all MPI ranks (non-blocking).",
               attr_schema={"bucket": Int(low=0)}))
register(OpDef("allreduce_wait", same_shape, _wait_kernel, arity=1, inplace=(0,), label_attrs=("bucket",),
               effects=COMMUNICATES,
               doc="Complete a bucket's all-reduce and divide by the number of ranks: the mean gradient.",
               attr_schema={"bucket": Int(low=0), "timeout": Float(low=0.0)}))
register(OpDef("bucket_slice", _slice_shape, _slice_kernel, arity=1, label_attrs=("offset",),
               doc="One gradient, read back out of an all-reduced bucket.",
               attr_schema={"offset": Int(low=0), "shape": Ints(low=0)}))
