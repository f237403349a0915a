"""Fair timings: every competitor in its own fresh process, alternating over repeats, same threads.

For each repeat and workload, every competitor runs once in a new ``python -m bench.worker`` process
(the order rotates each repeat, so a slow spell on a shared machine hits them all alike). A run
times ``steps`` steps after a warm-up; its median is one sample. Tables show the median of those
samples and the minimum single step, with ratios. Thread settings: "default" leaves the
environment as it is; "1 thread" sets OMP/OPENBLAS/MKL_NUM_THREADS=1, XLA_FLAGS for one Eigen
thread, and ``torch.set_num_threads(1)``. The 1-minute load average is recorded with every run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from bench.common import available, table
from bench.lstm_models import TITLES as LSTM_TITLES
from bench.seq_models import TITLES as SEQ_TITLES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
TITLES = {
    "mlp_train": "MLP 784-1024-1024-10, batch 256, one SGD step",
    "cnn_train": "CNN conv32-pool-conv64-pool-dense10, 28x28, batch 64, one SGD step",
    "cnn_infer_1": "the same CNN, inference (logits), batch 1",
    "cnn_infer_256": "the same CNN, inference (logits), batch 256",
    "chain": "200 chained elementwise ops, 64x64 float32 (time per op)",
    **SEQ_TITLES,
    **LSTM_TITLES,
}
FLOOR = "NumPy GEMM floor"


@dataclass
class Result:
    """Samples of one competitor on one workload: per-run medians, every step time, loads."""

    medians: list[float] = field(default_factory=list)
    cpu_medians: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    blas: dict = field(default_factory=dict)
    skipped: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.medians)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_medians)

    @property
    def minimum(self) -> float:
        return min(self.steps)


def environment(threads: int, unset_openblas: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (unset_openblas and k in OPENBLAS_VARS)}
    if threads == 1:
        env.update(ONE_THREAD)
    return env


def run_one(competitor: str, workload: str, env: dict[str, str], *, threads: int, steps: int,
            warmup: int) -> dict:
    spec = json.dumps({"competitor": competitor, "workload": workload, "steps": steps, "warmup": warmup,
                       "threads": threads})
    out = subprocess.run([sys.executable, "-m", "bench.worker", spec], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{competitor} on {workload} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def steps_for(workload: str, quick: bool) -> tuple[int, int]:
    """(timed steps, warm-up steps) per run."""
    if workload == "chain" or workload == "cnn_infer_1":
        return (50, 10) if quick else (200, 20)
    return (10, 3) if quick else (30, 5)


def measure(workloads: list[str], competitors: list[str], *, repeats: int, threads: int, unset_openblas: bool,
            quick: bool = False, log=None) -> dict[str, dict[str, Result]]:
    """Results by workload and competitor; competitors alternate (rotated order) within every repeat."""
    env = environment(threads, unset_openblas)
    results = {w: {c: Result() for c in competitors} for w in workloads}
    for r in range(repeats):
        for w in workloads:
            steps, warmup = steps_for(w, quick)
            k = r % len(competitors)
            for c in competitors[k:] + competitors[:k]:
                res = results[w][c]
                if res.skipped:
                    continue
                out = run_one(c, w, env, threads=threads, steps=steps, warmup=warmup)
                if out.get("skipped"):
                    res.skipped = True
                    continue
                res.medians.append(statistics.median(out["times"]))
                res.cpu_medians.append(statistics.median(out["cpu"]))
                res.steps.extend(out["times"])
                res.loads.append(out["load"])
                res.blas = out["blas"]
                if log:
                    log(f"  repeat {r + 1}/{repeats} {w:14s} {c:18s} {res.medians[-1] * 1e3:9.3f} ms "
                        f"load {out['load']:.2f}")
    return results


def installed(competitors: list[str]) -> tuple[list[str], list[str]]:
    """(competitors whose framework is importable, notes about the others)."""
    from bench.competitors import COMPETITORS

    keep, notes = [], []
    for c in competitors:
        needs = COMPETITORS[c].needs
        if needs is None or available(needs):
            keep.append(c)
        else:
            notes.append(f"{c}: {needs} not installed, skipped")
    return keep, notes


def _fmt(seconds: float, workload: str) -> str:
    return f"{seconds * 1e6:.2f} us" if workload == "chain" or seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def render(results: dict[str, dict[str, Result]], cpu: bool = False) -> str:
    """One Markdown table per workload: median, minimum, ratio to the floor, graphdl / this; with
    ``cpu`` (one-thread runs) also the median CPU time per step and graphdl's ratio on it."""
    parts = []
    for w, by_comp in results.items():
        done = {c: r for c, r in by_comp.items() if not r.skipped and r.medians}
        floor = done.get(FLOOR)
        ours = done.get("graphdl")
        rows = []
        for c, r in done.items():
            rows.append([c, _fmt(r.median, w), _fmt(r.minimum, w),
                         f"{r.median / floor.median:.2f}x" if floor else "-",
                         f"{ours.median / r.median:.2f}x" if ours else "-"]
                        + ([_fmt(r.cpu, w), f"{ours.cpu / r.cpu:.2f}x" if ours else "-"] if cpu else []))
        loads = [x for r in done.values() for x in r.loads]
        floor_name = "NumPy ufuncs, out=" if w == "chain" else FLOOR
        head = [TITLES[w], "median", "min", f"vs {floor_name}", "graphdl / this"]
        if cpu:
            head += ["CPU median", "graphdl / this (CPU)"]
        text = table(head, rows).replace(f"| {FLOOR} |", f"| {floor_name} |")
        if loads:
            text += f"\n\nLoad average (1 min) during these runs: {min(loads):.2f}-{max(loads):.2f}."
        parts.append(f"#### {TITLES[w]}\n\n{text}")
    return "\n\n".join(parts)


def ratios(results: dict[str, dict[str, Result]], cpu: bool = False) -> dict[str, dict[str, float]]:
    """graphdl's median (wall, or CPU with ``cpu``) over each competitor's, by workload."""
    out: dict[str, dict[str, float]] = {}
    for w, by_comp in results.items():
        ours = by_comp.get("graphdl")
        if ours is None or not ours.medians:
            continue
        key = (lambda r: r.cpu) if cpu else (lambda r: r.median)
        out[w] = {c: key(ours) / key(r) for c, r in by_comp.items() if c != "graphdl" and r.medians}
    return out


def blas_line(results: dict[str, dict[str, Result]]) -> str:
    for by_comp in results.values():
        for r in by_comp.values():
            if r.blas:
                b = r.blas
                return (f"NumPy's BLAS (threadpoolctl, in the workers): {b.get('internal_api')} "
                        f"{b.get('version')}, kernel {b.get('architecture')}, {b.get('num_threads')} threads.")
    return "NumPy's BLAS: threadpoolctl not installed."
