"""Data-parallel scaling: 2 ranks x 1 BLAS thread against 1 rank x 1 BLAS thread, each in fresh processes.

``python -m bench.distributed [--batch 1024] [--steps 30] [--repeats 3]`` launches the worker below
with ``mpiexec -n 1`` and ``-n 2`` alternately (one BLAS thread per rank) and prints throughput,
the share of communication hidden behind compute, and the alpha-beta cost model's prediction
(docs/distributed.md) for the same case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def worker(batch: int, steps: int) -> None:
    """One rank: time training steps of the benchmark MLP; time the blocked share of the waits."""
    import graphdl as gd
    from graphdl import layers, losses, optim
    from graphdl.distributed import rank_and_size
    from graphdl.ops import collective

    rank, size = rank_and_size()
    with gd.Graph("mlp", seed=0) as g:
        x = gd.placeholder("x", (None, 784))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.ReLU()(layers.Linear(784, 1024, name="fc1")(x))
        h = layers.ReLU()(layers.Linear(1024, 1024, name="fc2")(h))
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(1024, 10, name="fc3")(h), y)
    dist = gd.distributed.MPI() if size > 1 else None
    train = gd.compile([loss], optimizer=optim.SGD(lr=0.01, momentum=0.9), distributed=dist)
    rng = np.random.default_rng(rank)
    xb = rng.standard_normal((batch, 784)).astype("float32")
    yb = rng.integers(0, 10, batch)
    for _ in range(3):
        train.run({x: xb, y: yb}, copy=False)
    collective.STATS.clear()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train.run({x: xb, y: yb}, copy=False)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    blocked = collective.STATS.get("wait_seconds", 0.0) / steps
    comm_alone = 0.0
    grad_bytes = sum(v.nbytes for v in g.parameters().values())
    if size > 1:  # the same bytes all-reduced with nothing to overlap: blocking, after a barrier
        from mpi4py import MPI

        buf = np.ones(grad_bytes // 4, dtype=np.float32)
        samples = []
        for _ in range(10):
            dist.comm.Barrier()
            t0 = time.perf_counter()
            dist.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            samples.append(time.perf_counter() - t0)
        comm_alone = statistics.median(samples)
    if rank == 0:
        done = collective.STATS.get("done_before_wait", 0) / max(collective.STATS.get("waits", 1), 1)
        print(json.dumps({"size": size, "step_s": step, "samples_per_s": size * batch / step,
                          "blocked_wait_s": blocked, "allreduce_alone_s": comm_alone, "grad_bytes": grad_bytes,
                          "done_before_wait": done}))


def _launch(n: int, batch: int, steps: int) -> dict:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec") or "mpiexec"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([mpiexec, "-n", str(n), sys.executable, "-m", "bench.distributed", "--worker",
                          "--batch", str(batch), "--steps", str(steps)], capture_output=True, text=True, env=env,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--batch", type=int, default=1024, help="samples per rank per step")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    if a.worker:
        worker(a.batch, a.steps)
        return
    from graphdl.distributed import predict_step

    runs: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    for _ in range(a.repeats):
        for n in runs:
            runs[n].append(_launch(n, a.batch, a.steps))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    compute, nbytes = med[1]["step_s"], med[1]["grad_bytes"]
    beta = med[2]["allreduce_alone_s"] / nbytes  # two ranks: T = 2 (p - 1) / p * n * beta = n * beta
    # The share of buckets whose all-reduce had finished when the update needed it: communication that ran
    # while later backward kernels did. (Time blocked in waits also holds the skew between ranks' steps,
    # so it can exceed one all-reduce alone; it is printed, not used.)
    hidden = med[2]["done_before_wait"]
    print(f"load: {os.getloadavg()[0]:.2f}; MLP 784-1024-1024-10, {a.batch} samples per rank, SGD momentum, "
          f"1 BLAS thread per rank, medians of {a.repeats} launches x {a.steps} steps\n")
    print("| ranks | step | samples/s | throughput vs 1 rank | wait blocked / step | all-reduce alone "
          "| buckets done before their wait | cost model step |")
    print("|---|---|---|---|---|---|---|---|")
    for n, m in med.items():
        pred = predict_step(compute, nbytes, n, alpha=0.0, beta=beta, overlap=hidden)
        print(f"| {n} | {m['step_s'] * 1e3:.1f} ms | {m['samples_per_s']:,.0f} | "
              f"{m['samples_per_s'] / med[1]['samples_per_s']:.2f}x | {m['blocked_wait_s'] * 1e3:.2f} ms | "
              f"{m['allreduce_alone_s'] * 1e3:.2f} ms | {m['done_before_wait']:.0%} | {pred['step_s'] * 1e3:.1f} ms |")
    print(f"\ncommunication hidden behind compute (2 ranks, buckets finished before their wait): {hidden:.0%}. "
          "3 ranks on 2 cores oversubscribe them: "
          "that row shows the cost of oversubscription, which the model (compute per rank fixed) does not.\n")
    print(cost_table(compute, nbytes, hidden))


#: Typical latency per message (s) and bandwidth (bytes/s) of two cluster networks.
NETWORKS = {"10 Gbit/s Ethernet (TCP)": (25e-6, 10e9 / 8), "100 Gbit/s (RDMA)": (3e-6, 100e9 / 8)}


def cost_table(compute_s: float, grad_bytes: float, overlap: float, buckets: int = 2) -> str:
    """Predicted step time and scaling efficiency for 2-256 ranks on the NETWORKS (fixed batch per rank)."""
    from graphdl.distributed import predict_step

    rows = ["| ranks | " + " | ".join(f"{k}: step, efficiency" for k in NETWORKS) + " |",
            "|---|" + "---|" * len(NETWORKS)]
    for p in (2, 4, 8, 16, 32, 64, 128, 256):
        cells = []
        for alpha, bw in NETWORKS.values():
            m = predict_step(compute_s, grad_bytes, p, alpha=alpha, beta=1 / bw, overlap=overlap, buckets=buckets)
            cells.append(f"{m['step_s'] * 1e3:.1f} ms, {m['efficiency']:.0%}")
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    return (f"Cost model: compute {compute_s * 1e3:.1f} ms per step, {grad_bytes / 2**20:.1f} MiB of gradients in "
            f"{buckets} buckets, {overlap:.0%} of communication hidden\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
