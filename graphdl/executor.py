"""Runs a Plan with NumPy over preallocated buffers: bind once, then a flat loop of kernel calls."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np

from graphdl.errors import ExecutionError
from graphdl.graph import format_shape
from graphdl.ir import IR, NodeKind
from graphdl.plan import Plan
from graphdl.registry import get_op

ALIGN = 64


def aligned_arena(nbytes: int) -> np.ndarray:
    """A byte array whose data starts on an ALIGN-byte boundary."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


class BoundPlan:
    """A Plan with every buffer allocated and every kernel built and bound to its arrays.

    ``run`` copies the feeds into their buffers and calls each step; it plans and allocates nothing.
    """

    def __init__(self, plan: Plan, ir: IR, values: Mapping[str, np.ndarray]) -> None:
        self.plan = plan
        nodes = ir.node_map()
        self.arena = aligned_arena(plan.arena_bytes)
        arrays: dict[str, np.ndarray] = {}
        for n in ir.nodes:
            shape, dtype = plan.shapes[n.name], np.dtype(n.dtype)
            if n.name in plan.slots:
                slot = plan.slots[n.name]
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                arrays[n.name] = self.arena[slot.offset:slot.offset + nbytes].view(dtype).reshape(shape)
            elif n.kind is NodeKind.PLACEHOLDER:
                arrays[n.name] = np.empty(shape, dtype)
            elif n.op == "scalar":
                arrays[n.name] = np.full((), n.attr["value"], dtype)
            elif n.kind in (NodeKind.PARAM, NodeKind.STATE, NodeKind.CONSTANT):
                arrays[n.name] = values[n.name]
        self.arrays = arrays
        self.feeds = {f: arrays[f] for f in plan.feeds}
        self.outputs = [arrays[o] for o in plan.outputs]
        calls: list[Callable[[], None]] = []
        for step in plan.steps:
            node = nodes[step.node]
            op = get_op(step.op)
            in_shapes = tuple(plan.shapes[i] for i in step.inputs)
            kernel = op.kernel(node.attr, in_shapes, plan.shapes[step.node], np.dtype(node.dtype))
            args = [arrays[i] for i in step.inputs]
            if step.output is not None:
                args.append(arrays[step.output])
            calls.append(functools.partial(kernel, *args))
        self.calls = calls

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run every step, return the output buffers (not copies)."""
        for name, buf in self.feeds.items():
            np.copyto(buf, feeds[name], casting="same_kind")
        call = None
        try:
            for call in self.calls:
                call()
        except Exception as e:  # re-raise with the node, op and input shapes
            step = self.plan.steps[self.calls.index(call)]
            shapes = ", ".join(f"'{i}' {format_shape(self.plan.shapes[i])}" for i in step.inputs)
            raise ExecutionError(
                f"{step.op} at node '{step.node}' failed: {type(e).__name__}: {e}; inputs: {shapes}"
            ) from e
        return self.outputs
