"""Run the benchmarks and print Markdown tables: ``python -m bench [--quick] [--repeats N] [--out FILE]``.

Timings (see ``bench.harness``): every competitor in its own fresh process, alternating over
repeats, with default threads and with one thread each; in the environment as it is and, when
OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, again with both unset. Then graphdl alone: the CNN
step's per-op profile, peak RSS, buffer planning, rematerialisation and compile-time scaling.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _machine() -> str:
    import numpy as np

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [f"{cpu}, {os.cpu_count()} CPUs", f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    from importlib.metadata import PackageNotFoundError, version

    for mod in ("torch", "jax", "onnxruntime"):
        try:
            parts.append(f"{mod} {version(mod)}")
        except PackageNotFoundError:
            parts.append(f"{mod} not installed")
    return "; ".join(parts)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def timing_section(args: argparse.Namespace, log) -> tuple[str, dict]:
    from bench import harness
    from bench.competitors import COMPETITORS

    competitors, notes = harness.installed(args.competitors or list(COMPETITORS))
    set_vars = [f"{v}={os.environ[v]}" for v in harness.OPENBLAS_VARS if v in os.environ]
    envs = [("environment as it is", False)]
    if set_vars:
        envs.append(("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset", True))
    parts, all_ratios = [], {}
    for env_name, unset in envs:
        for threads in args.threads:
            label = f"{env_name}, {'default threads' if threads == 0 else 'one thread each'}"
            log(f"{label}: {_uptime()}")
            res = harness.measure(args.workloads, competitors, repeats=args.repeats, threads=threads,
                                  unset_openblas=unset, quick=args.quick, log=log)
            all_ratios[label] = harness.ratios(res)
            if threads == 1:  # one thread: CPU time is not inflated by other processes' load
                all_ratios[label + " (CPU time)"] = harness.ratios(res, cpu=True)
            parts.append(f"### {label}\n\n{harness.blas_line(res)} Started at: `{_uptime()}`.\n\n"
                         f"{harness.render(res, cpu=threads == 1)}")
    head = []
    if set_vars:
        head.append(f"Set here: {', '.join(set_vars)}; the second group of tables runs with both unset.")
    else:
        head.append("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set here, so the environment as it is "
                    "is also the one with both unset.")
    head.append(f"{args.repeats} repeats; each is one fresh process per competitor and workload, "
                "competitors in rotating order. Median: of the per-process medians. Min: fastest single step.")
    if notes:
        head.append("; ".join(notes) + ".")
    return "\n\n".join([" ".join(head), *parts]), all_ratios


def targets_section(all_ratios: dict) -> str:
    """The issues' targets (12: CNN, MLP; 9: transformer block, LSTM) against the figures of the last
    environment measured (OpenBLAS vars unset)."""
    from bench.common import table

    rows = []
    checks = [("cnn_train", "PyTorch eager", 1.0), ("cnn_train", "NumPy GEMM floor", 2.0),
              ("mlp_train", "NumPy GEMM floor", 1.05), ("mlp_train", "JAX jit", 1.0),
              ("cnn_infer_1", "PyTorch eager", 1.0), ("cnn_infer_256", "PyTorch eager", 1.0),
              ("transformer_train", "PyTorch eager", 1.0), ("lstm_train", "PyTorch eager", 1.5)]
    labels = list(all_ratios)
    unset = [k for k in labels if "unset" in k] or labels
    for label in unset:
        r = all_ratios[label]
        for w, comp, target in checks:
            if w in r and comp in r[w]:
                got = r[w][comp]
                rows.append([label, w, f"graphdl / {comp}",
                             f"<= {target:.2f}x", f"{got:.2f}x", "met" if got <= target else "NOT met"])
    return table(["setting", "workload", "ratio", "target", "measured", ""], rows)


def other_sections(quick: bool) -> list[tuple[str, str]]:
    from bench import compile_time, memory
    from bench.profile import profile
    from graphdl.threads import num_threads

    with num_threads(1):
        cnn_profile = profile("cnn_train", 10 if quick else 30)
    return [("CNN training step, per op (graphdl, one BLAS thread, CPU time)", cnn_profile),
            ("Peak RSS", memory.peak_rss(ROOT)[0]), ("CNN first training run", memory.first_run_rss(ROOT)[0]),
            ("Character language model training, peak RSS", memory.char_lm_rss(ROOT)[0]),
            ("Buffer planning", memory.planner()[0]), ("Rematerialisation", memory.remat()[0]),
            ("Compile time", compile_time.run(1 if quick else 3)[0])]


def main() -> None:
    from bench.competitors import COMPETITORS, WORKLOADS

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    ap.add_argument("--repeats", type=int, help="fresh processes per competitor and workload (default 5, quick 2)")
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--competitors", nargs="+", choices=list(COMPETITORS))
    ap.add_argument("--threads", nargs="+", type=int, choices=(0, 1), default=[0, 1],
                    help="0 = default threads, 1 = one thread each (default: both)")
    ap.add_argument("--timings-only", action="store_true", help="skip profile, memory and compile time")
    ap.add_argument("--verbose", "-v", action="store_true", help="log every run to stderr")
    ap.add_argument("--out", help="also write the Markdown to this file")
    args = ap.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 5)
    sys.path.insert(0, ROOT)

    def log(msg: str) -> None:
        if args.verbose:
            print(msg, file=sys.stderr, flush=True)

    started = time.time()
    parts = [f"# graphdl benchmarks\n\nMachine: {_machine()}."]
    timing, all_ratios = timing_section(args, log)
    parts += [f"## Timings\n\n{timing}", f"## Targets (issues 12 and 9)\n\n{targets_section(all_ratios)}"]
    if not args.timings_only:
        parts.append("## graphdl alone: profile, memory and compile time\n\n" + "\n\n".join(
            f"### {name}\n\n{text}" for name, text in other_sections(args.quick)))
    parts.append(f"_Total benchmark time: {time.time() - started:.0f} s; at the end: `{_uptime()}`._")
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
