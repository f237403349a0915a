"""Reporting shared by the benchmarks: Markdown tables, units, whether a competitor is installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any


def available(module: str) -> bool:
    """Whether a competitor can be imported (benchmarks skip a missing one with a note)."""
    return importlib.util.find_spec(module) is not None


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


def torch_sgd_step(layer: Any, lr: float, output: Callable[[Any], Any] = lambda y: y) -> Callable[[Any], Any]:
    """One eager SGD step of a torch module on loss = mean of its squared output: ``step(x) -> loss``
    (``output`` picks the tensor from what the module returns, e.g. an LSTM's ``(out, state)``)."""
    import torch

    opt = torch.optim.SGD(layer.parameters(), lr=lr)

    def step(x: Any) -> Any:
        opt.zero_grad(set_to_none=False)
        y = output(layer(x))
        loss = (y * y).mean()
        loss.backward()
        opt.step()
        return loss

    return step


def workload_pair(name: str, graphdl_build: Callable[[], tuple[Any, Any]], torch_build: Callable[[], Any],
                  data: Callable[[], Any]) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """``(graphdl_workload, torch_step)`` for a module with one workload ``name``: graphdl's (executable,
    feeds) and PyTorch's zero-argument step on the same data; None for any other workload."""

    def graphdl_workload(workload: str) -> tuple[Any, dict] | None:
        if workload != name:
            return None
        ex, x = graphdl_build()
        return ex, {x: data()}

    def torch_step(workload: str) -> Any:
        if workload != name:
            return None
        import torch

        step, x = torch_build(), torch.from_numpy(data())
        return lambda: step(x)

    return graphdl_workload, torch_step
