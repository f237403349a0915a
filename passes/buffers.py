"""Buffer planning: liveness over the schedule, then offsets in one arena, reusing freed space.

Every value a step computes gets a slot in one arena. A value is live from the step that writes it
to the last step that reads it; requested outputs stay live to the end. A slot is freed after its
last reader runs and reused by a later value that fits (best fit, coalescing neighbours), or, for
ops that declare it, by the very step that last reads it (in place). Feeds, parameters, state and
constants live outside the arena and are never reused (compare MXNet's plan_memory, ONNX Runtime's
allocation planner and tinygrad's memory planner).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

import numpy as np

from graphdl.ir import COMPUTED_KINDS, IR
from graphdl.plan import BufferSlot, Plan, Step
from graphdl.registry import get_op

ALIGN = 64


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _Arena:
    """Free list of (offset, size) blocks over a growing arena; best fit, coalescing on free."""

    def __init__(self) -> None:
        self.free: list[tuple[int, int]] = []  # sorted by offset
        self.size = 0

    def alloc(self, n: int) -> int:
        best = None
        for k, (_, size) in enumerate(self.free):
            if size >= n and (best is None or size < self.free[best][1]):
                best = k
        if best is not None:
            off, size = self.free.pop(best)
            if size > n:
                bisect.insort(self.free, (off + n, size - n))
            return off
        if self.free and self.free[-1][0] + self.free[-1][1] == self.size:  # grow the last free block
            off, _ = self.free.pop()
            self.size = off + n
            return off
        off = self.size
        self.size += n
        return off

    def release(self, off: int, n: int) -> None:
        k = bisect.bisect(self.free, (off, n))
        self.free.insert(k, (off, n))
        if k + 1 < len(self.free) and off + n == self.free[k + 1][0]:
            self.free[k] = (off, n + self.free.pop(k + 1)[1])
        if k > 0 and self.free[k - 1][0] + self.free[k - 1][1] == off:
            prev = self.free.pop(k - 1)
            self.free[k - 1] = (prev[0], prev[1] + self.free[k - 1][1])


def plan_buffers(ir: IR, shapes: Mapping[str, tuple[int, ...]], *, reuse: bool = True) -> Plan:
    """Schedule the computed nodes of ``ir`` (already in topological order) and give each an arena slot."""
    nodes = [n for n in ir.nodes if n.kind in COMPUTED_KINDS]
    steps: list[Step] = []
    produced: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        out = None if get_op(n.op).writes else n.name
        steps.append(Step(n.name, n.op, n.inputs, out))
        if out is not None:
            produced[out] = i
            last_use[out] = i
        for v in n.inputs:
            last_use[v] = i
    end = len(steps)
    for o in ir.outputs:
        if o in produced:
            last_use[o] = end  # what the user can see is never reused
    dtypes = {n.name: n.dtype for n in ir.nodes}
    size = {v: _align(_nbytes(shapes[v], dtypes[v])) for v in produced}

    # 1. In place: an output takes the buffer of an input that dies at this step, if its op allows.
    buffer_of: dict[str, str] = {}  # value -> name of the value that first owned its buffer
    for i, step in enumerate(steps):
        v = step.output
        if v is None:
            continue
        buffer_of[v] = v
        if not reuse:
            continue
        for k in get_op(step.op).inplace:
            src = step.inputs[k] if k < len(step.inputs) else None
            if (src in produced and last_use[src] == i and size[src] == size[v]
                    and dtypes[src] == dtypes[v] and shapes[src] == shapes[v]
                    and step.inputs.count(src) == 1):
                buffer_of[v] = buffer_of[src]
                break
    # 2. Liveness of buffers: from the first writer to the last reader of any value they hold.
    start: dict[str, int] = {}
    stop: dict[str, int] = {}
    for v, b in buffer_of.items():
        start.setdefault(b, produced[v])
        stop[b] = max(stop.get(b, 0), last_use[v])
    # Lower bound for this order and aliasing: the most bytes live at any one step.
    delta = [0] * (end + 2)
    for b in start:
        delta[start[b]] += size[b]
        delta[stop[b] + 1] -= size[b]
    live, lower = 0, 0
    for d in delta:
        live += d
        lower = max(lower, live)
    # 3. Offsets: allocate when a buffer's first value is written, free after its last read.
    arena = _Arena()
    offset: dict[str, int] = {}
    freed_at: dict[int, list[str]] = {}
    for b in start:
        freed_at.setdefault(stop[b], []).append(b)
    for i, step in enumerate(steps):
        v = step.output
        if v is not None and buffer_of[v] == v:
            if reuse:
                offset[v] = arena.alloc(size[v])
            else:
                offset[v], arena.size = arena.size, arena.size + size[v]
        if reuse:
            for b in freed_at.get(i, ()):
                arena.release(offset[b], size[b])
    return Plan(
        steps=tuple(steps),
        shapes=dict(shapes),
        dtypes=dtypes,
        slots={v: BufferSlot(offset[b], size[v]) for v, b in buffer_of.items()},
        arena_bytes=arena.size,
        naive_bytes=sum(size.values()),
        lower_bound_bytes=lower,
        feeds=tuple(n.name for n in ir.nodes if n.kind.value == "placeholder"),
        outputs=ir.outputs,
        live_ranges={v: (produced[v], last_use[v]) for v in produced},
    )
