"""TEMPORARY: a Python-unrolled stand-in for gd.ops.scan until the scan op lands (remove then)."""

from __future__ import annotations

from typing import Any

import graphdl as gd


def unrolled_scan(body: Any, init: Any, xs: gd.Tensor, length: int | None = None, reverse: bool = False) -> Any:
    steps = range(xs.shape[0])
    carry, ys = init, []
    for t in (reversed(steps) if reverse else steps):
        carry, y = body(carry, xs[t])
        ys.append(y)
    return carry, gd.ops.stack(ys[::-1] if reverse else ys, 0)


def install() -> None:
    if not hasattr(gd.ops, "scan"):
        gd.ops.scan = unrolled_scan
