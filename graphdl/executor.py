"""Runs a Plan with NumPy over preallocated buffers: bind once, then straight-line generated code.

Binding allocates one aligned arena, takes a view of it for every computed value, builds each op's
kernel for its concrete shapes, and generates a Python function with one line per step, e.g.
``k3(v0, v4, v5, v7)  # linear_1 (linear)``. Kernels and arrays are closure variables of that
function, so a step costs one call: no planning, no dictionary lookups, no allocation. ``run_loop``
runs the same bound kernels in a plain loop; tests check that both agree.
"""

from __future__ import annotations

import functools
import linecache
import types
from collections.abc import Callable, Mapping

import numpy as np

from graphdl.errors import ExecutionError
from graphdl.graph import format_shape
from graphdl.ir import IR, NodeKind
from graphdl.plan import Plan, Step
from graphdl.registry import get_op

ALIGN = 64


def aligned_arena(nbytes: int) -> np.ndarray:
    """A byte array whose data starts on an ALIGN-byte boundary."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


def generate_source(plan: Plan, value_names: list[str]) -> str:
    """The body of the step function: one line per step, with the node's name and op in a comment.

    ``value_names[i]`` is the value bound to variable ``v<i>``; kernel ``k<j>`` is step ``j``'s.
    """
    index = {name: i for i, name in enumerate(value_names)}
    lines = [f"def make_step(k, v):\n    {_unpack('k', len(plan.steps))}\n    {_unpack('v', len(value_names))}",
             "    def step():"]
    for j, s in enumerate(plan.steps):
        args = [f"v{index[i]}" for i in s.inputs]
        if s.output is not None:
            args.append(f"v{index[s.output]}")
        lines.append(f"        k{j}({', '.join(args)})  # {s.node} ({s.op})")
    if not plan.steps:
        lines.append("        pass")
    lines.append("    return step")
    return "\n".join(lines) + "\n"


def _unpack(prefix: str, n: int) -> str:
    if n == 0:
        return "pass"
    return f"{', '.join(f'{prefix}{i}' for i in range(n))}, = {prefix}"


class BoundPlan:
    """A Plan with every buffer allocated and every kernel built and bound to its arrays.

    ``run`` copies the feeds into their buffers and calls the generated step function; it plans and
    allocates nothing.
    """

    _count = 0

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
        self.feeds = [(f, arrays[f]) for f in plan.feeds]
        self.outputs = [arrays[o] for o in plan.outputs]
        kernels: list[Callable[..., None]] = []
        calls: list[Callable[[], None]] = []
        for step in plan.steps:
            node = nodes[step.node]
            in_shapes = tuple(plan.shapes[i] for i in step.inputs)
            kernel = get_op(step.op).kernel(node.attr, in_shapes, plan.shapes[step.node], np.dtype(node.dtype))
            args = [arrays[i] for i in step.inputs]
            if step.output is not None:
                args.append(arrays[step.output])
            kernels.append(kernel)
            calls.append(functools.partial(kernel, *args))
        self.calls = calls
        value_names = list(arrays)
        self.source = generate_source(plan, value_names)
        BoundPlan._count += 1
        self._filename = f"<graphdl plan {BoundPlan._count}: {ir.name}>"
        # Register the text so tracebacks and debuggers can show the generated lines.
        linecache.cache[self._filename] = (len(self.source), None, self.source.splitlines(True), self._filename)
        namespace: dict[str, object] = {}
        exec(compile(self.source, self._filename, "exec"), namespace)  # our own generated text only
        self._step = namespace["make_step"](kernels, [arrays[v] for v in value_names])
        self._first_line = 5  # line of step 0 in the generated source

    def _copy_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        for name, buf in self.feeds:
            np.copyto(buf, feeds[name], casting="same_kind")

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run the generated step function, return the output buffers (not copies)."""
        self._copy_feeds(feeds)
        try:
            self._step()
        except Exception as e:
            raise self._step_error(self._failed_step(e), e) from e
        return self.outputs

    def run_loop(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The same plan run by a plain loop over bound calls (the reference for the generated code)."""
        self._copy_feeds(feeds)
        k = 0
        try:
            for k, call in enumerate(self.calls):  # noqa: B007  (k names the failing step)
                call()
        except Exception as e:
            raise self._step_error(self.plan.steps[k], e) from e
        return self.outputs

    def _failed_step(self, e: BaseException) -> Step:
        tb: types.TracebackType | None = e.__traceback__
        line = None
        while tb is not None:  # the innermost frame of the generated function names the step
            if tb.tb_frame.f_code.co_filename == self._filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        assert line is not None, "an exception inside the step function has its frame in the traceback"
        return self.plan.steps[line - self._first_line]

    def _step_error(self, step: Step, e: Exception) -> ExecutionError:
        shapes = ", ".join(f"'{i}' {format_shape(self.plan.shapes[i])}" for i in step.inputs)
        return ExecutionError(
            f"{step.op} at node '{step.node}' failed: {type(e).__name__}: {e}; inputs: {shapes}")
