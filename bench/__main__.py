"""Run every benchmark and print Markdown tables: ``python -m bench [--quick] [--out FILE]``.

The figures are for the environment as it is. When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set (they
slow NumPy's GEMM on some machines), the timing benchmarks run a second time in a child process with
both unset, and both tables are printed. Nothing here changes those variables for this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _environment() -> str:
    import numpy as np

    parts = [f"Python {platform.python_version()}", f"NumPy {np.__version__}", f"{os.cpu_count()} CPUs"]
    for mod in ("torch", "jax"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            parts.append(f"{mod} not installed")
    blas = ", ".join(f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ) or "OpenBLAS variables unset"
    return "; ".join(parts) + f"; {blas}"


def timing_sections(quick: bool) -> list[tuple[str, str]]:
    from bench import cnn, elementwise, mlp

    r = 5 if quick else 15
    return [("MLP training step", mlp.run(r)[0]), ("Per-op overhead", elementwise.run(r)[0]),
            ("CNN training step", cnn.run(max(3, r * 2 // 3))[0])]


def other_sections(quick: bool) -> list[tuple[str, str]]:
    from bench import compile_time, memory

    return [("Peak RSS", memory.peak_rss(ROOT)[0]), ("Buffer planning", memory.planner()[0]),
            ("Rematerialisation", memory.remat()[0]),
            ("Compile time", compile_time.run(1 if quick else 3)[0])]


def render(title: str, sections: list[tuple[str, str]]) -> str:
    return "\n\n".join([f"## {title}"] + [f"### {name}\n\n{text}" for name, text in sections])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--out", help="also write the Markdown to this file")
    ap.add_argument("--timing-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    started = time.time()
    if args.timing_only:  # the child run with the OpenBLAS variables unset
        print(render("Timings", timing_sections(args.quick)))
        return
    parts = [f"# graphdl benchmarks\n\n{_environment()}. Medians over interleaved repeats; ratios are "
             "measured side by side in one process."]
    parts.append(render("Timings, environment as it is", timing_sections(args.quick)))
    set_vars = [v for v in OPENBLAS_VARS if v in os.environ]
    if set_vars:
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
        child = subprocess.run([sys.executable, "-m", "bench", "--timing-only", *(["--quick"] if args.quick else [])],
                               env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        parts.append(child.stdout.replace("## Timings", f"## Timings with {' and '.join(set_vars)} unset", 1))
    else:
        parts.append("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set here, so the second run with both "
                     "unset would be identical and is skipped.")
    parts.append(render("Memory and compile time", other_sections(args.quick)))
    parts.append(f"_Total benchmark time: {time.time() - started:.0f} s._")
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
