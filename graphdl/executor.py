"""Runs a Plan with NumPy over preallocated buffers: bind once, then straight-line generated code.

Binding allocates one aligned arena, takes a view of it for every computed value, builds each op's
kernel for its concrete shapes, and generates Python with one line per step, e.g.
``k3(v0, v4, v5, v7)  # linear_1 (linear)`` (long plans in chunks of CHUNK steps). Kernels and
arrays are globals of each chunk (loads CPython caches), so a step costs one call: no planning, no dictionary
lookups, no allocation. ``run_loop`` runs the same bound kernels in a plain loop; tests check that both agree.

A step is all-or-nothing. The schedule puts every writing update after the forward pass, so a kernel
that refuses its inputs (a label out of range) stops the step before any state changes. Binding adds
guard steps to the plan: ``check_finite`` right after a training plan's objective (NaN/inf raises
NonFiniteError before any update), and with ``check_numerics`` one after every computed value.
Ctrl-C during a step that writes state is deferred to its end (``run``), so a step is never torn.
"""

from __future__ import annotations

import functools
import itertools
import linecache
import math
import threading
import types

# The C function behind signal.signal: the module's wrapper turns every handler into an enum member
# through a caught ValueError, which costs about 8 us per call here against 0.7 us.
from _signal import SIGINT, default_int_handler
from _signal import raise_signal as _raise_signal
from _signal import signal as _set_handler
from collections.abc import Callable, Mapping

import numpy as np

from graphdl.codegen import CHUNK, FIRST_STEP_LINE, Lines, chunk_sources, comment_text, sequence
from graphdl.errors import ExecutionError, GraphDLError, NonFiniteError
from graphdl.gctools import paused_gc
from graphdl.guards import count_nonfinite, finite_guard, floating, numerics_guard
from graphdl.ir import COMPUTED_KINDS, IR, Node, NodeKind, format_shape
from graphdl.plan import Plan, Step
from graphdl.registry import InputValueError, OpDef, get_op

ALIGN = 64


def aligned_arena(nbytes: int) -> np.ndarray:
    """A byte array whose data starts on an ALIGN-byte boundary."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


def _record(received: list[int], signum: int, frame: object) -> None:
    received.append(signum)


class BoundPlan:
    """A Plan with every buffer allocated and every kernel built and bound to its arrays.

    ``run`` copies the feeds into their buffers and calls the generated step function; it plans and
    allocates nothing. ``steps`` are the plan's steps with the guard steps added at binding: after
    ``objective`` a finite check, and with ``check_numerics`` a check after every floating-point value
    (the plan must then write nothing before its last value: ``passes.schedule.schedule_updates_last``).
    """

    _count = itertools.count(1)

    def __init__(self, plan: Plan, ir: IR, values: Mapping[str, np.ndarray], *, objective: str | None = None,
                 check_numerics: bool = False) -> None:
        with paused_gc():
            self._bind(plan, ir, values, objective=objective, check_numerics=check_numerics)

    def _bind(self, plan: Plan, ir: IR, values: Mapping[str, np.ndarray], *, objective: str | None,
              check_numerics: bool) -> None:
        self.plan = plan
        self.check_numerics = check_numerics
        self._bodies: list[BoundPlan] = []  # bound sub-graphs (scan bodies) of this plan's kernels
        self._placeholders: set[str] = set()
        computed: list[Node] = []  # in the IR's order, which is the plan's (plan_buffers keeps it)
        self.arena = aligned_arena(plan.arena_bytes)
        arrays: dict[str, np.ndarray] = {}
        arena, slots, shapes, ndarray = self.arena, plan.slots, plan.shapes, np.ndarray
        dtypes: dict[str, np.dtype] = {}
        value_dtypes = plan.dtypes
        # Every computed value is a view of the arena; values the planner put at the same offset with the
        # same shape and dtype (a chain computed in place, one buffer after another) share one view, so a
        # plan of 100k values holds a few thousand arrays, not 100k.
        views: dict[tuple, np.ndarray] = {}
        for r, slot in slots.items():
            d = value_dtypes[r]
            key = (slot.offset, shapes[r], d)
            view = views.get(key)
            if view is None:
                dtype = dtypes.get(d)
                if dtype is None:
                    dtype = dtypes[d] = np.dtype(d)
                view = views[key] = ndarray(shapes[r], dtype, arena, slot.offset)
            arrays[r] = view
        for n in ir.nodes:
            if n.kind in COMPUTED_KINDS:
                computed.append(n)
                continue
            if n.kind is NodeKind.PLACEHOLDER:
                arrays[n.name] = np.empty(plan.shapes[n.name], np.dtype(n.dtype))
                self._placeholders.add(n.name)
            elif n.op == "scalar":
                arrays[n.name] = np.full((), n.attr["value"], np.dtype(n.dtype))
            elif n.kind in (NodeKind.PARAM, NodeKind.STATE, NodeKind.CONSTANT):
                arrays[n.name] = values[n.name]  # the model's own arrays
        self.arrays = arrays
        self.feeds = [(f, arrays[f]) for f in plan.feeds]
        self.outputs = [arrays[o] for o in plan.outputs]
        self.steps = self._with_guards(plan, objective)
        #: Index of the first step that writes parameters or state (len(steps) if none): a failure before
        #: it leaves everything as it was; Ctrl-C is deferred to the end of a step that writes.
        self.first_write = next((k for k, s in enumerate(self.steps) if s.op not in _GUARDS and get_op(s.op).writes),
                                len(self.steps))
        self.writes = self.first_write < len(self.steps)
        # SIGINTs received during a step; the handler is made once (a step allocates nothing) and does
        # not refer to self (no reference cycle: a dropped plan's arrays are freed at once)
        self._interrupts: list[int] = []
        self._on_sigint = functools.partial(_record, self._interrupts)
        kernels: list[Callable[..., None]] = []
        counter = values.get("optimizer.t")
        ops: dict[str, OpDef] = {}
        nodes: dict[str, Node] | None = None  # by name, only for a plan whose steps leave the IR's order
        node: Node | None = None
        k = 0
        for step in self.steps:
            if node is None or node.name != step.node:  # (a guard step shares the node of the step before)
                if k < len(computed) and computed[k].name == step.node:
                    node, k = computed[k], k + 1
                else:
                    nodes = ir.node_map() if nodes is None else nodes
                    node = nodes[step.node]
            if step.op == "check_finite":
                kernel = finite_guard(node, counter)
            elif step.op == "check_numerics":
                kernel = numerics_guard(node, plan.shapes[step.inputs[0]])
            else:
                op = ops.get(step.op)
                if op is None:
                    op = ops[step.op] = get_op(step.op)
                kernel = self._kernel(plan, node, step, op, dtypes)
            kernels.append(kernel)
        self._kernels = kernels
        #: Whether a kernel here or in a body hands work to graphdl's threads (graphdl.threads.splitting):
        #: then each step holds the threads (Executable.run, graphdl.threads.held).
        self.splits = any(getattr(k, "splits", False) for k in kernels) or any(b.splits for b in self._bodies)
        count = next(BoundPlan._count)
        self._filenames: dict[str, int] = {}  # generated file name -> index of its first step
        #: value -> where the code reads it; built from ``_chunk_values`` by the first ``pointers`` call
        #: (only scans ask), not for every value of every plan.
        self._pointers: dict[str, list[tuple[dict[str, object], str]]] | None = None
        self._chunk_values: list[tuple[dict[str, object], list[str]]] = []  # (namespace, values it reads as v0, v1..)
        chunks = []
        generated = chunk_sources(tuple(self.steps), CHUNK)
        compiled: dict[str, types.CodeType] = {}  # code text -> the chunk function's code
        # The global names of every chunk, made once per plan (not per chunk and value).
        knames = [f"k{j}" for j in range(CHUNK)]
        vnames = [f"v{i}" for i in range(max((len(used) for _, _, used in generated), default=0))]
        self.source = "".join(src for src, _, _ in generated)
        at = 0  # where the chunk's text starts in ``source``
        for c, (src, code, used) in enumerate(generated):
            filename = f"<graphdl plan {count}: {comment_text(ir.name)}, chunk {c}>"
            # Register the text so tracebacks and debuggers can show the generated lines.
            linecache.cache[filename] = (len(src), None, Lines(self.source, at, at + len(src)), filename)
            at += len(src)
            fn_code = compiled.get(code)
            if fn_code is None:  # our own generated text only
                module = compile(code, filename, "exec")
                fn_code = compiled[code] = next(k for k in module.co_consts if isinstance(k, types.CodeType))
            first = c * CHUNK
            namespace: dict[str, object] = dict(zip(knames, kernels[first:first + CHUNK]))
            namespace.update(zip(vnames, map(arrays.__getitem__, used)))
            self._chunk_values.append((namespace, used))
            name = f"chunk_{c}"
            chunks.append(types.FunctionType(fn_code.replace(co_filename=filename, co_name=name, co_qualname=name),
                                             namespace, name))
            self._filenames[filename] = first
        self._step = chunks[0] if len(chunks) == 1 else sequence(chunks)
        #: The generated step function, for a caller that writes the feeds into ``arrays`` itself and
        #: reads ``outputs`` afterwards (a scan kernel running its body once per time step).
        self.compute = self._step

    def _kernel(self, plan: Plan, node: Node, step: Step, op: OpDef,
                dtypes: dict[str, np.dtype]) -> Callable[..., None]:
        shapes = plan.shapes
        in_shapes = tuple([shapes[i] for i in step.inputs])
        if op.multi_output:
            factory_args = (node.attr, in_shapes, tuple(shapes[r] for r in node.refs),
                            tuple(np.dtype(d) for d in node.dtypes))
        else:
            dtype = dtypes.get(node.dtype)
            if dtype is None:
                dtype = dtypes[node.dtype] = np.dtype(node.dtype)
            factory_args = (node.attr, in_shapes, shapes[step.node], dtype)
        if not op.bodies and step.node not in plan.workspace:  # the common case
            return op.kernel(*factory_args)
        extra: dict[str, object] = {"binder": self._bind_body} if op.bodies else {}
        if step.node in plan.workspace:  # the kernel's scratch buffers, as byte views of the arena
            extra["workspace"] = [self.arena[s.offset:s.offset + s.nbytes] for s in plan.workspace[step.node]]
        return op.kernel(*factory_args, **extra)

    def _with_guards(self, plan: Plan, objective: str | None) -> list[Step]:
        """The plan's steps with guard steps: ``check_finite`` right after the objective's step (every
        writing step comes after it, or binding fails), ``check_numerics`` after every float value."""
        steps: list[Step] = []
        wrote = ""
        for s in plan.steps:
            if get_op(s.op).writes and not wrote:
                wrote = s.node
            steps.append(s)
            for ref in s.outputs:
                if self.check_numerics and floating(plan.dtypes[ref]):
                    if wrote:
                        raise ExecutionError(f"check_numerics needs every update after the last value, but '{wrote}' "
                                             f"runs before '{ref}'; schedule with schedule_updates_last")
                    steps.append(Step(s.node, "check_numerics", (ref,), ()))
                if ref == objective and plan.shapes[ref] == ():
                    if wrote:
                        raise ExecutionError(f"update '{wrote}' runs before the objective '{objective}': a non-finite "
                                             "objective could not refuse the step (passes/schedule.py orders them)")
                    steps.append(Step(s.node, "check_finite", (ref,), ()))
        return steps

    def _bind_body(self, body: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> BoundPlan:
        bound = bind_body(body, feed_shapes)
        self._bodies.append(bound)  # closed with this plan
        return bound

    def pointers(self, name: str) -> list[tuple[dict[str, object], str]]:
        """Where the generated step function reads value ``name``'s array: (namespace, key) pairs, none if
        no step uses it. Storing another C-contiguous array of the same shape and dtype under every pair
        makes ``compute`` read, or write, that array instead: a scan points its body's inputs at each
        step's time slice and its outputs at the stacked result. Only for a value no kernel writes in
        place of another (placeholders, and outputs of the plan, which are never reused), and only for
        ``compute`` (``calls`` and ``run_loop`` keep the bound arrays)."""
        if self._pointers is None:
            self._pointers = {}
            for namespace, used in self._chunk_values:
                for i, v in enumerate(used):
                    self._pointers.setdefault(v, []).append((namespace, f"v{i}"))
        return self._pointers.get(name, [])

    @property
    def bodies(self) -> tuple[BoundPlan, ...]:
        """The bound sub-graphs (scan bodies) of this plan's kernels, in binding order."""
        return tuple(self._bodies)

    def bytes(self) -> int:
        """Bytes this bound plan allocated: its arena, its placeholders' buffers and its bodies' (nested
        ones included); parameters, state and constants are the model's, not the plan's."""
        inputs = sum(a.nbytes for n, a in self.arrays.items() if n in self._placeholders)
        return self.arena.nbytes + inputs + sum(b.bytes() for b in self._bodies)

    def close(self) -> None:
        """Forget the generated source (for a plan dropped from a cache), its sub-graphs' too; the arrays
        go with the object."""
        for filename in self._filenames:
            linecache.cache.pop(filename, None)
        for body in self._bodies:
            body.close()

    def _copy_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        for name, buf in self.feeds:
            np.copyto(buf, feeds[name], casting="same_kind")
        if self.check_numerics:
            for name, buf in self.feeds:
                if floating(buf.dtype) and not np.isfinite(buf).all():
                    raise NonFiniteError(f"feed '{name}' holds non-finite values ({count_nonfinite(buf)} of "
                                         f"{buf.size}); nothing ran. Clean or drop these samples")

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run the generated step function, return the output buffers (not copies).

        On the main thread, a plan that writes state defers SIGINT (Ctrl-C) until the step has run
        whole: the previous handler is restored and then receives the signal (KeyboardInterrupt by default).
        """
        self._copy_feeds(feeds)
        if self.writes and threading.current_thread() is _MAIN:
            return self._run_deferring_sigint()
        try:
            self._step()
        except GraphDLError:
            raise
        except Exception as e:
            raise self._step_error(self._failed_step(e), e) from e
        return self.outputs

    def _run_deferring_sigint(self) -> list[np.ndarray]:
        previous = _set_handler(SIGINT, self._on_sigint)
        if previous is None:  # a handler installed outside Python cannot be restored: leave it alone
            _set_handler(SIGINT, default_int_handler)
            previous = default_int_handler
        try:
            self._step()
        except GraphDLError:
            raise
        except Exception as e:
            raise self._step_error(self._failed_step(e), e) from e
        finally:
            _set_handler(SIGINT, previous)
            if self._interrupts:  # the step is complete (or refused whole): deliver the interrupt now
                self._interrupts.clear()
                _raise_signal(SIGINT)
        return self.outputs

    @functools.cached_property
    def calls(self) -> list[Callable[[], None]]:
        """Each step's kernel bound to its arrays (what ``run_loop`` calls), made on first use."""
        return [functools.partial(kernel, *[self.arrays[i] for i in (*step.inputs, *step.outputs)])
                for kernel, step in zip(self._kernels, self.steps, strict=True)]

    def run_loop(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The same plan run by a plain loop over bound calls (the reference for the generated code)."""
        self._copy_feeds(feeds)
        k = 0
        try:
            for k, call in enumerate(self.calls):  # noqa: B007  (k names the failing step)
                call()
        except GraphDLError:
            raise
        except Exception as e:
            raise self._step_error(k, e) from e
        return self.outputs

    def _failed_step(self, e: BaseException) -> int:
        tb: types.TracebackType | None = e.__traceback__
        index = None
        while tb is not None:  # the innermost frame of generated code names the step
            first = self._filenames.get(tb.tb_frame.f_code.co_filename)
            if first is not None:
                index = first + tb.tb_lineno - FIRST_STEP_LINE
            tb = tb.tb_next
        assert index is not None, "an exception inside the step function has its frame in the traceback"
        return index

    def _step_error(self, index: int, e: Exception) -> GraphDLError:
        step = self.steps[index]
        state = ("the step was refused before any parameter or state changed" if index < self.first_write else
                 "updates before this step had already run: the step is incomplete (reload a checkpoint)")
        shapes = ", ".join(f"'{i}' {format_shape(self.plan.shapes[i])}" for i in step.inputs)
        if isinstance(e, InputValueError):  # a value the kernel cannot use, e.g. a label out of range
            name = step.inputs[e.index]
            what = "feed" if name in self.plan.feeds else "input"
            return ExecutionError(f"{step.op} at node '{step.node}' failed: {what} '{name}' {e.message}; {state}. "
                                  f"{e.hint}; inputs: {shapes}")
        written = "" if index < self.first_write else f"; {state}"
        return ExecutionError(
            f"{step.op} at node '{step.node}' failed: {type(e).__name__}: {e}; inputs: {shapes}{written}")


def plan_body(body: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> Plan:
    """The plan of a sub-graph (a scan's body) for concrete input shapes."""
    from passes.buffers import plan_buffers
    from passes.shapes import concrete_shapes

    return plan_buffers(body, concrete_shapes(body, feed_shapes))


def bind_body(body: IR, feed_shapes: Mapping[str, tuple[int, ...]]) -> BoundPlan:
    """A sub-graph (a scan's body) planned and bound for concrete input shapes, with its own arena:
    what a kernel of an op with ``bodies`` receives as ``binder``."""
    return BoundPlan(plan_body(body, feed_shapes), body, {})


def body_bytes(plan: Plan, ir: IR) -> int:
    """Bytes that binding ``plan`` allocates for its steps' sub-graphs (scan bodies) besides its own arena:
    per body, its arena and input buffers and, recursively, its own bodies' (what ``BoundPlan.bytes``
    counts once bound, computed here without allocating). Each body is bound once per step that runs it
    and lives as long as the plan."""
    nodes: dict[str, Node] | None = None  # made only for a plan with sub-graphs
    ops: dict[str, OpDef] = {}
    total = 0
    for step in plan.steps:
        op = ops.get(step.op)
        if op is None:
            op = ops[step.op] = get_op(step.op)
        if not op.bodies or op.body_feeds is None:
            continue
        nodes = ir.node_map() if nodes is None else nodes
        for body, feed in op.body_feeds(nodes[step.node].attr, tuple(plan.shapes[i] for i in step.inputs)):
            sub = plan_body(body, feed)
            inputs = sum(math.prod(feed[n.name]) * np.dtype(n.dtype).itemsize
                         for n in body.nodes if n.kind is NodeKind.PLACEHOLDER)
            total += sub.arena_bytes + inputs + body_bytes(sub, body)
    return total


_MAIN = threading.main_thread()
_GUARDS = frozenset({"check_finite", "check_numerics"})
