"""Per-op time of one graphdl plan: each bound step timed alone, summed by op, as a Markdown table.

``python -m bench.profile [cnn_train|mlp_train|cnn_infer_256] [--threads 1] [--steps N]``
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


def profile(workload: str = "cnn_train", steps: int = 20) -> str:
    """Median over ``steps`` runs of each step's CPU time (this process, all threads: run it with one
    BLAS thread for a per-op split unaffected by other processes' load), summed by op."""
    from bench.competitors import graphdl_workload

    made = graphdl_workload(workload)
    if made is None:
        raise SystemExit(f"unknown workload {workload!r}")
    ex, feeds = made
    ex.run(feeds, copy=False)
    bound = ex.bound_plan({t.name: v.shape for t, v in feeds.items()})
    calls, plan_steps = bound.calls, bound.steps  # the plan's steps plus the guard steps added at binding
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(steps):
        for k, call in enumerate(calls):
            t = time.process_time()
            call()
            samples[k].append(time.process_time() - t)
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for s, ts in zip(plan_steps, samples):
        by_op[s.op] += statistics.median(ts)
        count[s.op] += 1
    total = sum(by_op.values())
    rows = [[op, str(count[op]), f"{t * 1e3:.3f} ms", f"{100 * t / total:.1f} %"]
            for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])]
    rows.append(["total", str(len(calls)), f"{total * 1e3:.3f} ms", "100 %"])
    return table([f"graphdl {workload}: op", "steps", "median CPU time", "share"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workload", nargs="?", default="cnn_train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, help="BLAS threads (default: as NumPy starts; 1 for a per-op split)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from graphdl.threads import num_threads

    with num_threads(args.threads) if args.threads else contextlib.nullcontext():
        print(profile(args.workload, args.steps))


if __name__ == "__main__":
    main()
