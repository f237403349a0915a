"""Compile time against graph size: gd.compile plus the first plan (specialise, plan buffers, bind).

``python -m bench.compile_time`` prints the table of ``run`` (each measurement the first compile in a fresh
interpreter); ``--stages`` adds the CPU time of every pass, of verification, shape specialisation, buffer
planning, binding and Python's ``compile`` of the generated code at both sizes (each size in a fresh
interpreter, least of ``--repeats``);
``--profile CASE`` prints a cProfile of one compile + plan of the large graph (CASE: mlp or chain).
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

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
    """(nodes compiled, median wall seconds, median CPU seconds of this process) of compile + plan,
    ``repeats`` times in this process (each graph built anew; the previous executable is dropped before
    the next graph is built, so freeing it is not charged to the next compile)."""
    import graphdl as gd

    times, cpu, n = [], [], 0
    for _ in range(repeats):
        ex = None  # the previous repeat's executable is freed here, outside the timed region
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


def first_compile(label: str, size: int) -> tuple[int, float, float]:
    """(nodes, wall s, CPU s) of the first compile + plan of a ``size`` graph in this process, as a user's
    script compiles: after a warm-up on a tiny graph of the same kind (imports, first calls), which is
    dropped before the measured graph is built."""
    build = CASES[label][0]
    _time(build, max(2, size // 100), 1)
    return _time(build, size, 1)


def _fresh(call: str) -> object:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import json, sys; sys.path.insert(0, {root!r}); import bench.compile_time as m; "
            f"print(json.dumps(m.{call}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.split("\n")[-2])


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" + (f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else "")


def run(repeats: int = 3) -> tuple[str, dict]:
    """Each measurement in a fresh interpreter (``first_compile``), small and large graphs alternating,
    ``repeats`` pairs per case: one process's leftovers (earlier graphs, a previous executable freed
    during the next compile, the collector's generations) never reach another measurement, and PyTorch
    or JAX imported by the parent are not in the process. Shown: medians over the processes, with the
    range; the ratio is of the medians, with the range of each pair's ratio. CPU time of the process is
    shown beside wall time: on a shared machine it is the steadier of the two."""
    rows, data = [], {}
    for label, (_, small, large) in CASES.items():
        pairs = [(_fresh(f"first_compile({label!r}, {small})"), _fresh(f"first_compile({label!r}, {large})"))
                 for _ in range(repeats)]
        n1, n2 = pairs[0][0][0], pairs[0][1][0]
        t1, c1 = [a[1] for a, _ in pairs], [a[2] for a, _ in pairs]
        t2, c2 = [b[1] for _, b in pairs], [b[2] for _, b in pairs]
        ratios = [b[1] / a[1] for a, b in pairs]
        med1, med2 = statistics.median(t1), statistics.median(t2)
        data[label] = ((n1, med1, statistics.median(c1)), (n2, med2, statistics.median(c2)))
        rows.append([label, f"{n1}", f"{_spread(t1)} s ({statistics.median(c1):.2f} s)", f"{n2}",
                     f"{_spread(t2)} s ({statistics.median(c2):.2f} s)",
                     f"{med2 / med1:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)"])
    text = table(["graph", "nodes (compiled)", "compile + plan: wall (CPU)", "nodes (compiled)",
                  "compile + plan: wall (CPU)", "ratio of medians (per pair)"], rows)
    return text, data


def stage_times(label: str, size: int, repeats: int) -> dict[str, float]:
    """CPU seconds of each stage of compile + first plan (least over ``repeats``), and "total"."""
    import graphdl as gd
    import graphdl.executor as executor
    import passes

    spent: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - t
        return wrapper

    pipeline = tuple((name, timed(name, fn)) for name, fn in passes.PIPELINE)
    passes.verify = timed("verify", passes.verify)
    passes.concrete_shapes = timed("concrete_shapes", passes.concrete_shapes)
    passes.plan_buffers = timed("plan_buffers", passes.plan_buffers)
    executor.compile = timed("python compile()", builtins.compile)  # shadows the builtin in the executor
    executor.BoundPlan.__init__ = timed("bind (with compile())", executor.BoundPlan.__init__)
    compile_graph = passes.compile_graph
    passes.compile_graph = lambda ir, spec, check=True, pipeline=pipeline: compile_graph(
        ir, spec, check=check, pipeline=pipeline)
    best: dict[str, float] = {}
    for _ in range(repeats):
        _, outputs, opt = CASES[label][0](size)
        spent.clear()
        t = time.process_time()
        ex = gd.compile(outputs, opt)
        ex.bound_plan({i: (8, *ex.nodes[i].shape[1:]) for i in ex.inputs})
        spent["total"] = time.process_time() - t
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    return best


def stages(repeats: int = 3) -> str:
    """Per-stage CPU milliseconds at both sizes of each case, and the large/small ratio."""
    parts = []
    for label, (_, small, large) in CASES.items():
        a, b = (_fresh(f"stage_times({label!r}, {n}, {repeats})") for n in (small, large))
        rows = [[k, f"{a[k] * 1e3:.0f}", f"{b.get(k, 0) * 1e3:.0f}",
                 f"{b.get(k, 0) / a[k]:.2f}x" if a[k] > 1e-3 else ""] for k in a]
        parts.append(f"{label}\n\n" + table(["stage (CPU ms)", f"size {small}", f"size {large}", "ratio"], rows))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="per-pass and per-stage CPU times")
    parser.add_argument("--profile", choices=["mlp", "chain"], help="cProfile one compile + plan of the large graph")
    args = parser.parse_args()
    if args.profile:
        import cProfile
        import pstats

        import graphdl as gd

        label = next(k for k in CASES if (args.profile == "mlp") == ("MLP" in k))
        _, outputs, opt = CASES[label][0](CASES[label][2])
        with cProfile.Profile() as prof:
            ex = gd.compile(outputs, opt)
            ex.bound_plan({i: (8, *ex.nodes[i].shape[1:]) for i in ex.inputs})
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    print(run(args.repeats)[0])
    if args.stages:
        print()
        print(stages(args.repeats))


if __name__ == "__main__":
    main()
