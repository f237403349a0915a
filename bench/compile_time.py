"""Compile time against graph size: gd.compile plus the first plan (specialise, plan buffers, bind)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import table


def _deep_mlp(layers: int):
    import graphdl as gd

    with gd.Graph("deep", seed=0) as g:
        x = gd.placeholder("x", (None, 16))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = x
        for _ in range(layers):
            h = gd.layers.Tanh()(gd.layers.Linear(16, 16)(h))
        loss = gd.losses.SoftmaxCrossEntropy()(h, y)
    return g, [loss], gd.optim.Adam()


def _chain(nodes: int):
    import graphdl as gd

    with gd.Graph("chain") as g:
        h = gd.placeholder("x", (None, 16))
        for k in range(nodes // 2):  # each op adds a scalar constant and the op
            h = gd.ops.tanh(h * 1.01) if k % 2 else gd.ops.sigmoid(h + 0.5)
    return g, [h], None


def _time(build, size: int, repeats: int) -> tuple[int, float, float]:
    """(nodes compiled, median wall seconds, median CPU seconds of this process) of compile + plan."""
    import graphdl as gd

    times, cpu, n = [], [], 0
    for _ in range(repeats):
        _, outputs, opt = build(size)
        t, c = time.perf_counter(), time.process_time()
        ex = gd.compile(outputs, opt)
        ex.bound_plan({i: (8, *ex.nodes[i].shape[1:]) for i in ex.inputs})
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        n = len(ex.ir.nodes)
    return n, statistics.median(times), statistics.median(cpu)


CASES = {"training graph (deep MLP, Adam)": (_deep_mlp, 1250, 5000),
         "inference chain (elementwise)": (_chain, 20000, 80000)}


def measure(label: str, repeats: int) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    build, small, large = CASES[label]
    return _time(build, small, repeats), _time(build, large, repeats)


def run(repeats: int = 3) -> tuple[str, dict]:
    """Each case in a fresh interpreter: garbage collection walks every live object, so a process
    that has imported PyTorch and JAX would charge big graphs for their objects too. CPU time of
    the process is shown beside wall time: on a shared machine it is the steadier of the two."""
    rows, data = [], {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for label in CASES:
        code = (f"import json, sys; sys.path.insert(0, {root!r}); from bench.compile_time import measure; "
                f"print(json.dumps(measure({label!r}, {repeats})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
        (n1, t1, c1), (n2, t2, c2) = json.loads(out.stdout.split("\n")[-2])
        data[label] = ((n1, t1, c1), (n2, t2, c2))
        rows.append([label, f"{n1}", f"{t1:.2f} s ({c1:.2f} s)", f"{n2}", f"{t2:.2f} s ({c2:.2f} s)",
                     f"{t2 / t1:.2f}x ({c2 / c1:.2f}x)"])
    text = table(["graph", "nodes (compiled)", "compile + plan: wall (CPU)", "nodes (compiled)",
                  "compile + plan: wall (CPU)", "ratio: wall (CPU)"], rows)
    return text, data
