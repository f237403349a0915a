"""Timing and reporting shared by the benchmarks: interleaved repeats, medians, Markdown tables."""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable, Mapping


def available(module: str) -> bool:
    """Whether a competitor can be imported (benchmarks skip a missing one with a note)."""
    return importlib.util.find_spec(module) is not None


def median_times(fns: Mapping[str, Callable[[], object]], *, repeats: int = 15, inner: int = 5,
                 warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function. Competitors are interleaved inside every repeat, so
    a slow spell on this shared machine hits them all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def training_step_table(title: str, floor_name: str, fns: dict[str, Callable[[], object]], x: object, y: object,
                        torch_step: Callable[[], Callable[..., object]] | None,
                        jax_step: Callable[[], tuple[object, Callable[..., object]]] | None,
                        *, repeats: int, inner: int) -> tuple[str, dict[str, float]]:
    """Time ``fns`` (the floor and graphdl) beside PyTorch eager and JAX jit training steps, when
    installed, and render medians with ratios to the floor and to graphdl."""
    notes = []
    if torch_step is not None and available("torch"):
        import torch

        tstep = torch_step()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        fns["PyTorch eager"] = lambda: tstep(tx, ty)
    else:
        notes.append("PyTorch not installed: skipped")
    if jax_step is not None and available("jax"):
        import jax

        params, jstep = jax_step()
        jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y)
        state = [params]

        def run_jax() -> None:
            state[0], loss = jstep(state[0], jx, jy)
            loss.block_until_ready()

        fns["JAX jit"] = run_jax
    else:
        notes.append("JAX not installed: skipped")
    t = median_times(fns, repeats=repeats, inner=inner)
    floor, ours = t[floor_name], t["graphdl"]
    rows = [[name, ms(v), ratio(v, floor), ratio(ours, v)] for name, v in t.items()]
    text = table([title, "median", "vs GEMM floor", "graphdl / this"], rows)
    if notes:
        text += "\n\n" + "; ".join(notes)
    return text, t
