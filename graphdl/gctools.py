"""Pausing Python's cyclic garbage collector while a graph is compiled or a plan is bound."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside. Compiling builds many small objects and no garbage cycles, and
    every full collection walks every live object, the growing graph included, which made compile
    time grow quadratically with graph size. Collection resumes (if it was on) on exit."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
