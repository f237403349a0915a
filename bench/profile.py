"""Per-op time of one graphdl plan: each bound step timed alone, summed by op, as a Markdown table.

``python -m bench.profile [cnn_train|mlp_train|cnn_infer_256] [--threads 1] [--steps N] [--by node]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections import defaultdict

from bench.common import table


def profile(workload: str = "cnn_train", steps: int = 20, by: str = "op") -> str:
    """Median over ``steps`` runs of each step's CPU time (this process, all threads: run it with one
    BLAS thread for a per-op split unaffected by other processes' load) and wall time (what several
    threads shorten), summed by op (``by="op"``) or one row per step (``by="node"``)."""
    from bench.competitors import graphdl_workload

    made = graphdl_workload(workload)
    if made is None:
        raise SystemExit(f"unknown workload {workload!r}")
    ex, feeds = made
    ex.run(feeds, copy=False)
    bound = ex.bound_plan({t.name: v.shape for t, v in feeds.items()})
    calls, plan_steps = bound.calls, bound.steps  # the plan's steps plus the guard steps added at binding
    cpu: list[list[float]] = [[] for _ in calls]
    wall: list[list[float]] = [[] for _ in calls]
    from graphdl import threads

    with threads.held() if bound.splits else contextlib.nullcontext():  # as Executable.run runs its steps
        for _ in range(steps):
            for k, call in enumerate(calls):
                t, w = time.process_time(), time.perf_counter()
                call()
                wall[k].append(time.perf_counter() - w)
                cpu[k].append(time.process_time() - t)
    by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    count: dict[str, int] = defaultdict(int)
    for s, ts, ws in zip(plan_steps, cpu, wall):
        key = s.op if by == "op" else f"{s.node} ({s.op})"
        by_op[key][0] += statistics.median(ts)
        by_op[key][1] += statistics.median(ws)
        count[key] += 1
    total = sum(t for t, _ in by_op.values())
    total_wall = sum(w for _, w in by_op.values())
    rows = [[op, str(count[op]), f"{t * 1e3:.3f} ms", f"{100 * t / total:.1f} %", f"{w * 1e3:.3f} ms"]
            for op, (t, w) in sorted(by_op.items(), key=lambda kv: -kv[1][0])]
    rows.append(["total", str(len(calls)), f"{total * 1e3:.3f} ms", "100 %", f"{total_wall * 1e3:.3f} ms"])
    return table([f"graphdl {workload}: {by}", "steps", "median CPU time", "share", "median wall time"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workload", nargs="?", default="cnn_train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--by", choices=("op", "node"), default="op", help="sum by op, or one row per plan step")
    ap.add_argument("--threads", type=int, help="BLAS threads (default: as NumPy starts; 1 for a per-op split)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from graphdl.threads import num_threads

    with num_threads(args.threads) if args.threads else contextlib.nullcontext():
        print(profile(args.workload, args.steps, args.by))


if __name__ == "__main__":
    main()
