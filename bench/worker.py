"""One timed run of one competitor on one workload, in this fresh process: ``python -m bench.worker JSON``.

The argument is ``{"competitor": ..., "workload": ..., "steps": n, "warmup": n, "threads": 0 or 1}``.
Thread limits come from the environment the parent sets (OMP/OPENBLAS/MKL_NUM_THREADS, XLA_FLAGS);
PyTorch is also told ``torch.set_num_threads(1)``, and in the one-thread setting the process is pinned to
one CPU before anything loads (jax 0.10's XLA ignores its thread flags: its "one thread" MLP step ran
on both cores, 14 ms wall for 27 ms CPU). Prints one JSON line: per-step seconds (wall,
and CPU seconds of the whole process, the steadier figure for one-thread runs on a busy machine),
and the BLAS that NumPy loaded (threadpoolctl), so the report can say which OpenBLAS kernel ran.
"""

from __future__ import annotations

import json
import os
import sys
import time


def blas_info() -> dict[str, object]:
    """NumPy's BLAS as threadpoolctl sees it: library, kernel architecture, threads."""
    try:
        import threadpoolctl
    except ImportError:
        return {}
    for pool in threadpoolctl.threadpool_info():
        if pool.get("user_api") == "blas":
            return {k: pool.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
    return {}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["threads"] == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np  # noqa: F401  (NumPy's BLAS loads first, as in a user's process)

    from bench.competitors import COMPETITORS, PER_CALL

    comp = COMPETITORS[spec["competitor"]]
    if comp.needs == "torch" and spec["threads"] == 1:
        import torch

        torch.set_num_threads(1)
    step = comp.build(spec["workload"])
    if step is None:
        print(json.dumps({"skipped": True}))
        return
    for _ in range(spec["warmup"]):
        step()
    times, cpu = [], []
    per = PER_CALL.get(spec["workload"], 1)
    for _ in range(spec["steps"]):
        t, c = time.perf_counter(), time.process_time()
        step()
        times.append((time.perf_counter() - t) / per)
        cpu.append((time.process_time() - c) / per)
    print(json.dumps({"times": times, "cpu": cpu, "blas": blas_info(), "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
