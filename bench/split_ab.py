"""graphdl's thread modes A/B, each run a fresh process, runs alternating:
``python -m bench.split_ab [workload ...] [--baseline DIR] [--repeats N]``.

Variants: this tree with its defaults (a plan with batch-split kernels holds the threads during its
steps: graphdl.threads), the same with splitting off (``GRAPHDL_SPLIT_MIN=off``: BLAS threads inside
each GEMM, copies on one core), and with ``--baseline DIR`` another checkout (``/work/main``, say), each
with NumPy imported before graphdl (as ``python -m bench`` does) and with graphdl imported first
(which sets OpenBLAS's idle spin in older trees). The runs of all variants alternate, so they share the
load from other processes. Prints medians and minimums of wall and CPU time per step (CPU time of the
whole process: what a busy machine perturbs least for one thread; with two, wall time is what counts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The bench worker with graphdl imported before it (the worker itself imports NumPy first).
GRAPHDL_FIRST = "import sys, runpy, graphdl; runpy.run_module('bench.worker', run_name='__main__')"


def variants(baseline: str | None, orders: tuple[str, ...]) -> list[tuple[str, str, dict[str, str]]]:
    """(label, checkout, extra environment) of every variant."""
    trees = [("this tree", ROOT, {}), ("this tree, split off", ROOT, {"GRAPHDL_SPLIT_MIN": "off"})]
    if baseline:
        trees.append((f"baseline {baseline}", baseline, {}))
    return [(f"{label}, {order} first", tree, {**env, "_ORDER": order})
            for label, tree, env in trees for order in orders]


def run(tree: str, env: dict[str, str], workload: str, steps: int, warmup: int) -> dict:
    spec = json.dumps({"competitor": "graphdl", "workload": workload, "steps": steps, "warmup": warmup, "threads": 0})
    order = env.get("_ORDER", "numpy")
    cmd = [sys.executable, "-c", GRAPHDL_FIRST, spec] if order == "graphdl" else [sys.executable, "-m", "bench.worker",
                                                                                 spec]
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GRAPHDL_SPLIT_MIN")}
    clean.update({k: v for k, v in env.items() if not k.startswith("_")}, PYTHONPATH=tree)
    out = subprocess.run(cmd, cwd=tree, env=clean, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{tree} {workload}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(workloads: list[str], baseline: str | None = None, repeats: int = 3, steps: int = 30,
            orders: tuple[str, ...] = ("numpy", "graphdl")) -> str:
    """Markdown tables, one per workload: per-step wall and CPU time of every variant."""
    from bench.common import table

    out = []
    for workload in workloads:
        found: dict[str, list[dict]] = {}
        loads = []
        for r in range(repeats):
            vs = variants(baseline, orders)
            for label, tree, env in vs[r % len(vs):] + vs[:r % len(vs)]:  # rotate who runs first
                got = run(tree, env, workload, steps, 5)
                found.setdefault(label, []).append(got)
                loads.append(got["load"])
        rows = []
        for label, runs in found.items():
            wall = [t for g in runs for t in g["times"]]
            cpu = [t for g in runs for t in g["cpu"]]
            rows.append([label, *(f"{f(x) * 1e3:.2f} ms" for x in (wall, cpu) for f in (statistics.median, min))])
        out.append(table([f"graphdl {workload}, default threads", "wall median", "wall min", "CPU median", "CPU min"],
                         rows) + f"\nLoad average (1 min): {min(loads):.2f}-{max(loads):.2f}.\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workloads", nargs="*", default=["cnn_train"])
    ap.add_argument("--baseline", help="another checkout of graphdl to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--order", choices=("numpy", "graphdl", "both"), default="both",
                    help="which is imported first in the workers")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    orders = ("numpy", "graphdl") if args.order == "both" else (args.order,)
    print(compare(args.workloads, args.baseline, args.repeats, args.steps, orders))


if __name__ == "__main__":
    main()
