"""Batch-split kernels on and off, steps alternating in one process: ``python -m bench.split_ab [workload]``.

Two executables of one workload are bound, one with ``graphdl.threads.SPLIT_MIN = SPLIT_ON`` (conv2d, its
gradients and max pooling cut the batch into one slice per BLAS thread) and one with splitting off (BLAS
threads inside each GEMM, copies on one thread). Their steps alternate, so both see the same load from
other processes; with one BLAS thread both run the same code. Prints min, quartile and median wall times.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def compare(workload: str = "cnn_train", steps: int = 60) -> str:
    """Markdown table: wall time per step with the batch split over threads and without."""
    import graphdl as gd
    from bench.common import table
    from bench.competitors import graphdl_workload

    shipped = gd.threads.SPLIT_MIN
    runs = {}
    try:
        for name, split_min in (("split over threads", gd.threads.SPLIT_ON), ("not split", None)):
            gd.threads.SPLIT_MIN = split_min  # read when kernels are bound (conv) or run (pooling)
            made = graphdl_workload(workload)
            if made is None:
                raise SystemExit(f"unknown workload {workload!r}")
            ex, feeds = made
            for _ in range(3):
                ex.run(feeds, copy=False)
            runs[name] = (split_min, ex, feeds, [])
        for _ in range(steps):
            for split_min, ex, feeds, times in runs.values():
                gd.threads.SPLIT_MIN = split_min
                t = time.perf_counter()
                ex.run(feeds, copy=False)
                times.append(time.perf_counter() - t)
    finally:
        gd.threads.SPLIT_MIN = shipped
    rows = []
    for name, (_, _, _, times) in runs.items():
        times.sort()
        rows.append([name, *(f"{times[int(q * (len(times) - 1))] * 1e3:.2f} ms" for q in (0, 0.25, 0.5))])
    head = f"graphdl {workload}, {gd.threads.get_num_threads()} BLAS threads"
    return table([head, "min", "25 %", "median"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workload", nargs="?", default="cnn_train")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(compare(args.workload, args.steps))


if __name__ == "__main__":
    main()
