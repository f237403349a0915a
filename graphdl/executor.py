"""Runs a Plan with NumPy over preallocated buffers: bind once, then straight-line generated code.

Binding allocates one aligned arena, takes a view of it for every computed value, builds each op's
kernel for its concrete shapes, and generates Python with one line per step, e.g.
``k3(v0, v4, v5, v7)  # linear_1 (linear)`` (long plans in chunks of CHUNK steps). Kernels and
arrays are closure variables of that code, so a step costs one call: no planning, no dictionary
lookups, no allocation. ``run_loop`` runs the same bound kernels in a plain loop; tests check that both agree.
"""

from __future__ import annotations

import functools
import linecache
import math
import types
from collections.abc import Callable, Mapping

import numpy as np

from graphdl.errors import ExecutionError
from graphdl.ir import IR, NodeKind, format_shape
from graphdl.plan import Plan, Step
from graphdl.registry import get_op

ALIGN = 64


def aligned_arena(nbytes: int) -> np.ndarray:
    """A byte array whose data starts on an ALIGN-byte boundary."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


def comment_text(label: str) -> str:
    """``label`` made safe for a comment in generated code: backslash escapes (``ascii``) for
    everything outside printable ASCII, so newlines, carriage returns and other line breaks cannot occur."""
    return ascii(str(label))[1:-1]


#: Steps per generated function: CPython compiles one function with thousands of closure variables
#: in time quadratic in their number, so long plans are split into chunks called in turn.
CHUNK = 256


def generate_source(plan: Plan, value_names: list[str], chunk: int | None = None) -> list[tuple[str, list[int]]]:
    """One function maker per chunk of steps, with the indices of the values it uses; ``k<j>`` is
    step j's kernel, ``v<i>`` the array bound to ``value_names[i]``. Each step is one line with its
    node's name and op in a comment.

    Nothing from the graph becomes code: kernels and arrays are named by index only, and the comment
    is escaped to printable ASCII (``comment_text``), so no name can end the line it is on."""
    chunk = chunk or CHUNK
    index = {name: i for i, name in enumerate(value_names)}
    sources = []
    for c0 in range(0, max(len(plan.steps), 1), chunk):
        steps = plan.steps[c0:c0 + chunk]
        used: dict[int, None] = {}
        lines = []
        for j, s in enumerate(steps, start=c0):
            args = [f"v{index[i]}" for i in (*s.inputs, *s.outputs)]
            for a in args:
                used[int(a[1:])] = None
            lines.append(f"        k{j}({', '.join(args)})  # {comment_text(f'{s.node} ({s.op})')}")
        ks = ", ".join(f"k{j}" for j in range(c0, c0 + len(steps)))
        vs = ", ".join(f"v{i}" for i in used)
        head = [f"def make_chunk_{c0 // chunk}(k, v):",
                f"    {ks}, = k" if ks else "    pass",
                f"    {vs}, = v" if vs else "    pass",
                "    def step():"]
        sources.append(("\n".join([*head, *(lines or ["        pass"]), "    return step"]) + "\n", list(used)))
    return sources


_FIRST_STEP_LINE = 5  # line of a chunk's first step in its generated source


def _sequence(chunks: list[Callable[[], None]]) -> Callable[[], None]:
    def step() -> None:
        for chunk in chunks:
            chunk()

    return step


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
            if n.name in plan.slots:
                for r, d in zip(n.refs, n.dtypes, strict=True):  # one slot per output
                    shape, dtype, slot = plan.shapes[r], np.dtype(d), plan.slots[r]
                    nbytes = math.prod(shape) * dtype.itemsize
                    arrays[r] = self.arena[slot.offset:slot.offset + nbytes].view(dtype).reshape(shape)
                continue
            shape, dtype = plan.shapes[n.name], np.dtype(n.dtype)
            if n.kind is NodeKind.PLACEHOLDER:
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
            op = get_op(step.op)
            if op.multi_output:
                factory_args = (node.attr, in_shapes, tuple(plan.shapes[r] for r in node.refs),
                                tuple(np.dtype(d) for d in node.dtypes))
            else:
                factory_args = (node.attr, in_shapes, plan.shapes[step.node], np.dtype(node.dtype))
            if step.node in plan.workspace:  # the kernel's scratch buffers, as byte views of the arena
                ws = [self.arena[s.offset:s.offset + s.nbytes] for s in plan.workspace[step.node]]
                kernel = op.kernel(*factory_args, workspace=ws)
            else:
                kernel = op.kernel(*factory_args)
            args = [arrays[i] for i in (*step.inputs, *step.outputs)]
            kernels.append(kernel)
            calls.append(functools.partial(kernel, *args))
        self.calls = calls
        value_names = list(arrays)
        BoundPlan._count += 1
        self._filenames: dict[str, int] = {}  # generated file name -> index of its first step
        chunks = []
        generated = generate_source(plan, value_names)
        for c, (src, used) in enumerate(generated):
            filename = f"<graphdl plan {BoundPlan._count}: {comment_text(ir.name)}, chunk {c}>"
            # Register the text so tracebacks and debuggers can show the generated lines.
            linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
            namespace: dict[str, object] = {}
            exec(compile(src, filename, "exec"), namespace)  # our own generated text only
            first = c * CHUNK
            ks = kernels[first:first + CHUNK]
            vs = [arrays[value_names[i]] for i in used]
            chunks.append(namespace[f"make_chunk_{c}"](ks, vs))
            self._filenames[filename] = first
        self.source = "".join(src for src, _ in generated)
        self._step = chunks[0] if len(chunks) == 1 else _sequence(chunks)

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
        index = None
        while tb is not None:  # the innermost frame of generated code names the step
            first = self._filenames.get(tb.tb_frame.f_code.co_filename)
            if first is not None:
                index = first + tb.tb_lineno - _FIRST_STEP_LINE
            tb = tb.tb_next
        assert index is not None, "an exception inside the step function has its frame in the traceback"
        return self.plan.steps[index]

    def _step_error(self, step: Step, e: Exception) -> ExecutionError:
        shapes = ", ".join(f"'{i}' {format_shape(self.plan.shapes[i])}" for i in step.inputs)
        return ExecutionError(
            f"{step.op} at node '{step.node}' failed: {type(e).__name__}: {e}; inputs: {shapes}")
