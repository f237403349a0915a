"""Reporting shared by the benchmarks: Markdown tables, units, whether a competitor is installed."""

from __future__ import annotations

import importlib.util


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
