"""Inference latency on one exported ONNX model: graphdl (importing the file) against onnxruntime.

``python -m bench.onnx_latency [--repeats N] [--quick]``. The digits MLP (64-128-10 with input
standardisation) and the digits CNN (conv32-BN-conv64-BN-pool-dropout-dense10, 8x8) are built by the
examples, exported once with ``gd.onnx.export``, and each competitor runs that same file in its own
fresh process (``python -m bench.onnx_latency --worker JSON``), alternating order over repeats, as
``bench.harness`` does: graphdl runs ``gd.onnx.load(file).compile()``, onnxruntime an
``InferenceSession`` (intra- and inter-op threads 1 in the one-thread setting, its defaults otherwise).
Thread settings come from ``bench.harness.environment``. Prints Markdown tables with the 1-minute
load average seen by the workers (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("digits_mlp", "digits_cnn")
BATCHES = (1, 256)
COMPETITORS = ("graphdl", "onnxruntime")


def export_models(directory: str) -> dict[str, str]:
    """Write both example models (trained for a few steps, so BatchNorm statistics are not trivial) as ONNX."""
    import numpy as np

    import graphdl as gd
    from examples import train_digits, train_digits_cnn

    rng = np.random.default_rng(0)
    paths = {}
    x = rng.uniform(0, 16, (256, 64)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    g, _, _, logits, loss = train_digits.build(x)
    gd.compile([loss, logits], optimizer=gd.optim.SGD(lr=0.01)).run({"x": x, "y": y})
    paths["digits_mlp"] = os.path.join(directory, "digits_mlp.onnx")
    gd.onnx.export(g, paths["digits_mlp"], outputs=[logits])
    logits, loss = train_digits_cnn.build()
    train = gd.compile([loss, logits], optimizer=gd.optim.SGD(lr=0.01))
    train.run({"x": x.reshape(-1, 1, 8, 8) / 16, "y": y})
    paths["digits_cnn"] = os.path.join(directory, "digits_cnn.onnx")
    gd.onnx.export(train, paths["digits_cnn"])
    return paths


def worker(spec: dict) -> dict:
    """Time one competitor on one model file and batch size, in this process."""
    import numpy as np

    batch = spec["batch"]
    if spec["competitor"] == "graphdl":
        import graphdl as gd

        imported = gd.onnx.load(spec["path"])
        exe = imported.compile()
        name = next(iter(imported.inputs))
        shape = tuple(batch if d is None else d for d in imported.inputs[name].shape)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        step = lambda: exe.run({name: x}, copy=False)
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if spec["threads"] == 1:
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(spec["path"], opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = tuple(batch if not isinstance(d, int) else d for d in inp.shape)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        step = lambda: sess.run(None, {inp.name: x})
    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"times": times, "load": os.getloadavg()[0]}


def measure(paths: dict[str, str], threads: int, repeats: int, quick: bool, log=print) -> dict:
    from bench.harness import environment

    env = environment(threads, unset_openblas=False)
    medians: dict[tuple[str, int, str], list[float]] = {}
    minima: dict[tuple[str, int, str], float] = {}
    loads: list[float] = []
    for r in range(repeats):
        for model in MODELS:
            for batch in BATCHES:
                steps, warmup = ((100, 10) if quick else (400, 40)) if batch == 1 else ((10, 2) if quick else (40, 5))
                order = COMPETITORS[r % 2:] + COMPETITORS[:r % 2]
                for comp in order:
                    spec = json.dumps({"competitor": comp, "path": paths[model], "batch": batch, "steps": steps,
                                       "warmup": warmup, "threads": threads})
                    out = subprocess.run([sys.executable, "-m", "bench.onnx_latency", "--worker", spec], env=env,
                                         cwd=ROOT, capture_output=True, text=True)
                    if out.returncode:
                        raise RuntimeError(f"{comp} on {model} batch {batch} failed:\n{out.stderr[-2000:]}")
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    medians.setdefault((model, batch, comp), []).append(statistics.median(res["times"]))
                    minima[model, batch, comp] = min(minima.get((model, batch, comp), math.inf), *res["times"])
                    loads.append(res["load"])
                    log(f"  threads={threads or 'default'} repeat {r + 1} {model} batch {batch:3d} {comp:12s} "
                        f"{medians[model, batch, comp][-1] * 1e3:8.3f} ms  load {res['load']:.2f}")
    return {"medians": medians, "minima": minima, "loads": loads}


def render(results: dict[int, dict]) -> str:
    from bench.common import table

    rows = []
    for model in MODELS:
        for batch in BATCHES:
            row = [model, str(batch)]
            for threads in (1, 0):
                m, lo = results[threads]["medians"], results[threads]["minima"]
                ours, theirs = statistics.median(m[model, batch, "graphdl"]), statistics.median(
                    m[model, batch, "onnxruntime"])
                best = lo[model, batch, "graphdl"] / lo[model, batch, "onnxruntime"]
                row += [f"{ours * 1e3:.3f} ms", f"{theirs * 1e3:.3f} ms", f"{ours / theirs:.2f}x", f"{best:.2f}x"]
            rows.append(row)
    head = ["model", "batch", "graphdl (1 thread)", "onnxruntime (1 thread)", "ratio", "ratio of minima",
            "graphdl (default)", "onnxruntime (default)", "ratio", "ratio of minima"]
    loads = [x for r in results.values() for x in r["loads"]]
    return (table(head, rows) + "\n\nMedian of per-run medians; ratio = graphdl / onnxruntime; ratio of minima: "
            f"of the fastest single steps (steadier on a loaded machine). Load average (1 min) "
            f"seen by the workers: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer steps per run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sys.path.insert(0, ROOT)
    with tempfile.TemporaryDirectory() as directory:
        paths = export_models(directory)
        results = {threads: measure(paths, threads, args.repeats, args.quick, log=lambda s: print(s, file=sys.stderr))
                   for threads in (1, 0)}
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
