"""Buffer planning: liveness over the schedule, then offsets in one arena, reusing freed space.

Every value a step computes (each output of a multi-output node) gets a slot in one arena, and so
does every scratch buffer a kernel declares (``OpDef.workspace``), live during its own step only. A
value is live from the step that writes it to the last step that reads it; requested outputs stay
live to the end. A slot is freed after its last reader runs and reused by a later value that fits
(best fit, coalescing neighbours), or, for ops that declare it, by the very step that last reads it
(in place). An offline placement (largest buffers first, each at the lowest offset free over its
lifetime) is also tried; the smaller wins.
Feeds, parameters, state and constants live outside the arena and are never reused (compare MXNet's
plan_memory, ONNX Runtime's allocation planner and tinygrad's memory planner).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping
from typing import TypeVar

import numpy as np

from graphdl.ir import COMPUTED_KINDS, IR, Node, NodeKind
from graphdl.plan import BufferSlot, LiveRanges, Plan, Step
from graphdl.registry import OpDef, get_op

ALIGN = 64
K = TypeVar("K")  # a buffer's key


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _Arena:
    """Free blocks over a growing arena: best fit by size, coalescing neighbours on release.

    Free blocks are indexed by (size, offset) in a sorted list and by both ends in dicts, so alloc
    and release cost a bisection plus a list insert, not a scan of every free block.
    """

    def __init__(self) -> None:
        self.by_size: list[tuple[int, int]] = []  # (size, offset), sorted
        self.start: dict[int, int] = {}  # offset -> size of the free block starting there
        self.end: dict[int, int] = {}  # offset + size -> offset
        self.size = 0

    def _add(self, off: int, n: int) -> None:
        bisect.insort(self.by_size, (n, off))
        self.start[off] = n
        self.end[off + n] = off

    def _remove(self, off: int, n: int) -> None:
        del self.by_size[bisect.bisect_left(self.by_size, (n, off))]
        del self.start[off]
        del self.end[off + n]

    def alloc(self, n: int) -> int:
        k = bisect.bisect_left(self.by_size, (n, -1))
        if k < len(self.by_size):  # the smallest free block that fits
            size, off = self.by_size[k]
            self._remove(off, size)
            if size > n:
                self._add(off + n, size - n)
            return off
        last = self.end.get(self.size)
        if last is not None:  # grow the free block at the end of the arena
            self._remove(last, self.size - last)
            self.size = last + n
            return last
        off, self.size = self.size, self.size + n
        return off

    def release(self, off: int, n: int) -> None:
        before = self.end.get(off)
        if before is not None:
            self._remove(before, off - before)
            off, n = before, n + off - before
        after = self.start.get(off + n)
        if after is not None:
            self._remove(off + n, after)
            n += after
        self._add(off, n)


#: Offline placement is quadratic in the number of buffers alive together; above this many buffers
#: only the online allocator runs, so compile time stays near-linear on very large graphs.
OFFLINE_LIMIT = 3000
#: Jittered restarts of the offline placement, for plans with at most RESTART_LIMIT buffers.
RESTARTS = 64
RESTART_LIMIT = 128


def _place_by_size(size: dict[K, int], start: dict[K, int], stop: dict[K, int],
                   order: str | list[K] = "size") -> tuple[dict[K, int], int]:
    """Offline placement (TFLite's greedy-by-size): biggest buffers first ("size", or "area" = size
    times lifetime, or an explicit list), each in the tightest gap where it overlaps no placed buffer
    live at the same time."""
    placed: list[tuple[int, int, int, int]] = []  # (start, stop, offset, size)
    offset: dict[K, int] = {}
    top = 0
    if order == "area":
        sequence = sorted(size, key=lambda b: (-size[b] * (stop[b] - start[b] + 1), start[b]))
    elif order == "size":
        sequence = sorted(size, key=lambda b: (-size[b], start[b]))
    else:
        sequence = list(order)
    for b in sequence:
        s, e, n = start[b], stop[b], size[b]
        busy = sorted((o, o + m) for ps, pe, o, m in placed if ps <= e and s <= pe)
        best, best_gap, prev = None, None, 0
        for lo, hi in busy:
            gap = lo - prev
            if gap >= n and (best_gap is None or gap < best_gap):
                best, best_gap = prev, gap
            prev = max(prev, hi)
        off = prev if best is None else best
        placed.append((s, e, off, n))
        offset[b] = off
        top = max(top, off + n)
    return offset, top


def _workspace(nodes: list, steps: list[Step], shapes: Mapping[str, tuple[int, ...]], ops: Mapping[str, OpDef]
               ) -> dict[int, list[tuple[tuple[str, str, int], int]]]:
    """Per step index, the scratch buffers its op declares: ((kind, node, k) key, aligned bytes)."""
    out: dict[int, list[tuple[tuple[str, str, int], int]]] = {}
    if all(op.workspace is None for op in ops.values()):
        return out
    for i, (n, step) in enumerate(zip(nodes, steps)):
        op = ops[step.op]
        if op.workspace is None:
            continue
        in_shapes = tuple(tuple(shapes[v]) for v in step.inputs)
        if op.multi_output:  # as the kernel factory sees them: one shape and dtype per output
            out_shape, dtype = tuple(tuple(shapes[r]) for r in n.refs), tuple(np.dtype(d) for d in n.dtypes)
        else:
            out_shape, dtype = tuple(shapes[n.name]), np.dtype(n.dtype)
        declared = op.workspace(n.attr, in_shapes, out_shape, dtype)
        out[i] = [(("workspace", n.name, k), _align(_nbytes(tuple(shape), dtype)))
                  for k, (shape, dtype) in enumerate(declared)]
    return out


def plan_buffers(ir: IR, shapes: Mapping[str, tuple[int, ...]], *, reuse: bool = True) -> Plan:
    """Schedule the computed nodes of ``ir`` (already in topological order) and give each an arena slot.

    Values and buffers are numbered (a value in the order computed; a buffer by the value that first
    owns it, then kernels' scratch buffers), so liveness and placement work on lists, not on dicts
    keyed by name: this runs once per plan over every value of graphs with 100k nodes."""
    nodes: list[Node] = []
    feeds: list[str] = []
    dtypes: dict[str, str] = {}  # of every value
    for n in ir.nodes:
        if n.kind in COMPUTED_KINDS:
            nodes.append(n)
            continue
        dtypes.update(zip(n.refs, n.dtypes))
        if n.kind is NodeKind.PLACEHOLDER:
            feeds.append(n.name)
    ops: dict[str, OpDef] = {}  # each op looked up once
    itemsize: dict[str, int] = {}
    steps: list[Step] = []
    index: dict[str, int] = {}  # computed value -> its number
    values: list[str] = []  # number -> value
    produced: list[int] = []  # step computing each value
    last: list[int] = []  # last step reading it
    size: list[int] = []  # aligned bytes, per value then per scratch buffer
    value_dtype: list[str] = []
    for i, n in enumerate(nodes):
        op = ops.get(n.op)
        if op is None:
            op = ops[n.op] = get_op(n.op)
        outs = () if op.effects.writes else n.refs  # one slot per output; a writing op has no output
        steps.append(Step(n.name, n.op, n.inputs, outs))
        shape_only = op.shape_only if isinstance(op.shape_only, tuple) else op.shape_only(n.attr, len(n.inputs))
        for k, v in enumerate(n.inputs):
            j = index.get(v)
            if j is not None and k not in shape_only:  # a shape-only read keeps nothing alive
                last[j] = i
        if not outs:
            dtypes.update(zip(n.refs, n.dtypes))
        for out, d in zip(outs, n.dtypes):
            index[out] = len(values)
            values.append(out)
            produced.append(i)
            last.append(i)
            dtypes[out] = d
            value_dtype.append(d)
            item = itemsize.get(d)
            if item is None:
                item = itemsize[d] = np.dtype(d).itemsize
            size.append(_align(math.prod(shapes[out]) * item))
    end = len(steps)
    for o in ir.outputs:
        if o in index:
            last[index[o]] = end  # what the user can see is never reused
    # Kernels' scratch buffers: live during their own step only, so they share bytes with dead values
    # and with other steps' scratch, never with anything live at that step.
    workspace = _workspace(nodes, steps, shapes, ops)

    # 1. In place: an output takes the buffer of an input that dies at this step, if its op allows
    # (only the first output may take an input's buffer). Values are numbered in step order, so ``v``
    # counts along instead of looking each output up (lookups in tables of 100k names are slow).
    nvalues = len(values)
    owner = list(range(nvalues))  # value -> the value that first owned its buffer
    if reuse:
        v = 0  # number of the current step's first output
        for i, step in enumerate(steps):
            inplace = ops[step.op].inplace
            if inplace and step.outputs:
                for k in inplace:
                    src = index.get(step.inputs[k]) if k < len(step.inputs) else None
                    if (src is not None and last[src] == i and size[src] == size[v]
                            and value_dtype[src] == value_dtype[v]
                            and step.inputs.count(step.inputs[k]) == 1):
                        owner[v] = owner[src]
                        break
            v += len(step.outputs)
    # 2. Liveness of buffers: from the first writer to the last reader of any value they hold. Buffer
    # b < nvalues is value b's (if it owns one); scratch buffers follow, numbered in step order.
    start = produced + [0] * sum(len(ws) for ws in workspace.values())
    stop = last[:] + [0] * (len(start) - nvalues)
    for v in range(nvalues):
        b = owner[v]
        if b != v and last[v] > stop[b]:
            stop[b] = last[v]
    scratch: dict[int, list[int]] = {}  # step -> its scratch buffers
    for i, ws in workspace.items():
        scratch[i] = []
        for _key, nbytes in ws:
            b = len(size)
            start[b] = stop[b] = i
            size.append(nbytes)
            scratch[i].append(b)
    buffers = [b for b in range(len(start)) if b >= nvalues or owner[b] == b]
    # Lower bound for this order and aliasing: the most bytes live at any one step.
    delta = [0] * (end + 2)
    for b in buffers:
        delta[start[b]] += size[b]
        delta[stop[b] + 1] -= size[b]
    live, lower = 0, 0
    for d in delta:
        live += d
        lower = max(lower, live)
    # 3. Offsets. Online: allocate when a buffer's first value is written, free after its last read.
    arena = _Arena()
    offset = [0] * len(start)
    freed_at: dict[int, list[int]] = {}
    for b in buffers:
        freed_at.setdefault(stop[b], []).append(b)
    v = 0  # number of the current step's first output
    for i, step in enumerate(steps):
        new = [*scratch.get(i, ()), *(j for j in range(v, v + len(step.outputs)) if owner[j] == j)]
        v += len(step.outputs)
        for b in new:
            if reuse:
                offset[b] = arena.alloc(size[b])
            else:
                offset[b], arena.size = arena.size, arena.size + size[b]
        if reuse:
            for b in freed_at.get(i, ()):
                arena.release(offset[b], size[b])
    arena_bytes = arena.size
    # Offline: knowing every lifetime, place big buffers first; keep whichever arena is smaller.
    if reuse and arena_bytes > lower and len(buffers) <= OFFLINE_LIMIT:
        sizes = {b: size[b] for b in buffers}
        orders: list[str | list[int]] = ["size", "area"]
        if len(buffers) <= RESTART_LIMIT:
            # Greedy orders can miss a packing that exists; jittered size orders (a fixed seed, so the
            # plan is deterministic) often find it. Stop as soon as one meets the lower bound.
            rng = random.Random(0)
            orders += [sorted(sizes, key=lambda b: -sizes[b] * rng.uniform(0.5, 1.5)) for _ in range(RESTARTS)]
        for order in orders:
            placed, top = _place_by_size(sizes, dict(zip(buffers, map(start.__getitem__, buffers))),
                                         dict(zip(buffers, map(stop.__getitem__, buffers))), order)
            if top < arena_bytes:
                arena_bytes = top
                for b, off in placed.items():
                    offset[b] = off
            if arena_bytes == lower:
                break
    slot = {b: BufferSlot(offset[b], size[b]) for b in buffers}  # values sharing a buffer share its slot
    return Plan(
        steps=tuple(steps),
        shapes=dict(shapes),
        dtypes=dtypes,
        slots={v: slot[b] for v, b in zip(values, owner)},
        arena_bytes=arena_bytes,
        naive_bytes=sum(size),
        workspace={steps[i].node: tuple(slot[b] for b in bs) for i, bs in scratch.items()},
        lower_bound_bytes=lower,
        feeds=tuple(feeds),
        outputs=ir.outputs,
        live_ranges=LiveRanges(values, produced, last),
    )
