"""A compiled model: the compiled IR, the arrays it reads, and a bounded cache of bound plans (one per
feed-shape signature).

Runs of one executable are serialised by a lock, so it may be called from several threads; a step is
all-or-nothing (see graphdl.executor); a plan that would not fit in memory is refused before allocating.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.errors import FeedError, ResourceError, flag, whole_number
from graphdl.executor import BoundPlan, body_bytes
from graphdl.graph import Tensor, assign_state, assign_values, format_shape, is_optimizer_state, values_of_kind
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind

Feeds = Mapping["Tensor | str", Any]


def init_stored(node: Node) -> np.ndarray:
    """The initial value of a state node that a pass created (optimizer moments, step counters)."""
    init = node.attr.get("init")
    if init != "zeros" or None in node.shape:
        raise FeedError(f"no value for {node.describe()}; load the model's weights first")
    return np.zeros(node.shape, dtype=node.dtype)


def available_memory() -> int | None:
    """Bytes of memory available for new allocations: MemAvailable from /proc/meminfo, else the free
    physical pages (os.sysconf), else None (unknown: no check)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB ({n:,} bytes)"


def _shape_fits(declared: tuple, actual: tuple) -> bool:
    """Whether a feed's shape matches a placeholder's (None = any size). A plain loop: this runs on
    every step, and a generator expression here leaked a little memory per call."""
    if len(declared) != len(actual):
        return False
    for d, a in zip(declared, actual):
        if d is not None and d != a:
            return False
    return True


class Executable:
    """The result of ``gd.compile`` or ``gd.load``: run it with feeds, save it, inspect it.

    Parameters are shared with the graph it was compiled from (the same arrays), so a training
    executable and an inference executable of one graph always see the same weights.

    ``max_cached_plans`` bounds the plans kept (least recently used dropped first, with their arenas);
    ``check_numerics`` makes every run name the first node that produces NaN or inf.
    """

    #: How many bound plans (one per feed-shape signature, each with its arena) are kept.
    max_cached_plans: int = 8

    def __init__(self, ir: IR, values: Mapping[str, np.ndarray], known_inputs: tuple[str, ...] = (),
                 objective: str | None = None, check_numerics: bool = False) -> None:
        self.ir = ir
        self.name = ir.name
        self.nodes = ir.node_map()
        self.values: dict[str, np.ndarray] = {}
        for n in ir.nodes:
            if n.kind in STORED_KINDS and n.op != "scalar":
                self.values[n.name] = values[n.name] if n.name in values else init_stored(n)
        self.inputs = tuple(n.name for n in ir.nodes if n.kind is NodeKind.PLACEHOLDER)
        self.known_inputs = frozenset(known_inputs) | frozenset(self.inputs)
        self.outputs = ir.outputs
        self.training = any(n.kind is NodeKind.UPDATE for n in ir.nodes)
        #: The output a training plan minimises (None for inference); the other outputs are monitors.
        self.objective = objective
        #: Data parallelism of a training plan (graphdl.distributed.MPI), set by gd.compile; None alone.
        self.distributed: Any = None
        self.check_numerics = check_numerics
        self._plans: OrderedDict[tuple, BoundPlan] = OrderedDict()
        self._lock = threading.Lock()
        self._checked_ir: IR | None = None

    def __repr__(self) -> str:
        kind = "training" if self.training else "inference"
        return (f"<Executable '{self.name}' ({kind}): inputs {list(self.inputs)}, outputs "
                f"{list(self.outputs)}, {len(self.ir.nodes)} nodes>")

    def __str__(self) -> str:
        from graphdl.printing import format_ir

        return format_ir(self.ir)

    def summary(self) -> str:
        """A table of the forward nodes with output shapes and parameter counts."""
        from graphdl.printing import summary

        return summary(self.ir)

    # -- running --------------------------------------------------------------------------
    def check_feeds(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Resolve keys to placeholder names and check names, shapes and dtypes; change nothing."""
        resolved: dict[str, np.ndarray] = {}
        if not isinstance(feeds, Mapping):
            raise FeedError(f"feeds must be a dict of input -> array (e.g. {{'x': x_batch}}; inputs of "
                            f"'{self.name}': {sorted(self.inputs)}), got {type(feeds).__name__}")
        for key, value in feeds.items():
            name = key.name if isinstance(key, Tensor) else key
            if not isinstance(name, str) or name not in self.known_inputs:
                raise FeedError(f"'{name}' is not an input of '{self.name}'; its inputs are "
                                f"{sorted(self.inputs)}")
            if name in self.inputs:
                resolved[name] = np.asarray(value)
        missing = [i for i in self.inputs if i not in resolved]
        if missing:
            shapes = ", ".join(f"'{m}' {format_shape(self.nodes[m].shape)}" for m in missing)
            raise FeedError(f"'{self.name}' needs a value for {shapes}; add it to the feed dict")
        for name, arr in resolved.items():
            node = self.nodes[name]
            if not _shape_fits(node.shape, arr.shape):
                raise FeedError(f"feed '{name}' has shape {arr.shape}, but placeholder "
                                f"{node.describe()} is {format_shape(node.shape)} (? = any size)")
            if self.training and arr.size == 0:
                raise FeedError(f"feed '{name}' is empty (shape {arr.shape}); a training step needs at least "
                                "one sample: skip empty batches (drop_last) before calling run")
            if not np.can_cast(arr.dtype, node.dtype, "same_kind"):
                raise FeedError(f"feed '{name}' has dtype {arr.dtype}, but placeholder {node.describe()} is "
                                f"{node.dtype}; convert it with .astype('{node.dtype}')")
        return resolved

    def _feed_shape(self, feed_shapes: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, ...]:
        """``feed_shapes[name]`` as a tuple of ints >= 0 of the placeholder's rank, else FeedError."""
        if not isinstance(feed_shapes, Mapping):
            raise FeedError(f"feed shapes must be a dict of input name -> shape (e.g. {{'{name}': (32, ...)}}), "
                            f"got {type(feed_shapes).__name__}")
        if name not in feed_shapes:
            raise FeedError(f"no shape for input '{name}' of '{self.name}'; its inputs are {sorted(self.inputs)}")
        shape = feed_shapes[name]
        declared = self.nodes[name].shape
        try:
            dims = tuple(int(d) for d in shape) if shape is not None and not isinstance(shape, str) else None
        except (TypeError, ValueError):
            dims = None
        if dims is None or len(dims) != len(declared) or min(dims, default=0) < 0 or any(
                isinstance(d, bool) or not isinstance(d, int | np.integer) for d in shape):
            raise FeedError(f"input '{name}' of '{self.name}' needs a shape of {len(declared)} whole numbers >= 0 "
                            f"like {format_shape(declared)}, got {shape!r}")
        return dims

    def bound_plan(self, feed_shapes: Mapping[str, tuple[int, ...]], check_numerics: bool = False) -> BoundPlan:
        """The plan for these feed shapes, built on first use and kept in a bounded LRU cache.

        Before allocating, a plan whose arena and parameters would not fit in available memory raises
        ResourceError. With ``check_numerics`` the plan checks every value before any update runs.
        """
        try:  # the steady state: a plan made before for these shapes
            key = (*(tuple(feed_shapes[i]) for i in self.inputs), check_numerics)
            bound = self._plans.get(key)
        except (KeyError, TypeError, IndexError):  # a name missing, a shape that is no sequence, feed shapes
            # that are no dict (an array): explained below
            bound = None
        if bound is not None:
            self._plans.move_to_end(key)
            return bound
        key = (*(self._feed_shape(feed_shapes, i) for i in self.inputs), check_numerics)
        from passes import specialize

        ir = self.ir
        if check_numerics and self.training:
            if self._checked_ir is None:
                from passes.schedule import schedule_updates_last

                self._checked_ir = schedule_updates_last(self.ir)
            ir = self._checked_ir
        plan = specialize(ir, feed_shapes)
        needed = plan.arena_bytes + body_bytes(plan, ir)
        self._check_memory(needed, feed_shapes)
        try:
            bound = BoundPlan(plan, ir, self.values, objective=self.objective, check_numerics=check_numerics)
        except MemoryError:
            self._check_memory(needed, feed_shapes, available=0)
            raise
        self._plans[key] = bound
        while len(self._plans) > max(1, self.max_cached_plans):
            self._plans.popitem(last=False)[1].close()
        return bound

    def _check_memory(self, arena: int, feed_shapes: Mapping[str, tuple[int, ...]],
                      available: int | None = None) -> None:
        """ResourceError if the arena (with the scan bodies' arenas) plus the parameters' size (what the
        kernels' temporaries take, about) exceed the memory available now."""
        available = available_memory() if available is None else available
        stored = sum(v.nbytes for v in self.values.values())
        if available is None or arena + stored <= available:
            return
        sizes = [s[d] for i in self.inputs for d, dim in enumerate(self.nodes[i].shape) if dim is None
                 for s in [feed_shapes[i]]]
        batch = f"batch size {sizes[0]}" if sizes else f"feed shapes {dict(feed_shapes)}"
        raise ResourceError(
            f"'{self.name}' with {batch} needs an arena of {_bytes(arena)} plus {_bytes(stored)} for parameters "
            f"and state, but only {_bytes(available)} of memory is available; nothing was allocated. Use a "
            "smaller batch, or compile with remat='sqrt' to keep fewer activations (memory_report(batch_size) "
            "gives the arena for a batch size)")

    def run(self, feeds: Feeds | None = None, *, copy: bool = True,
            check_numerics: bool | None = None) -> list[np.ndarray]:
        """Run the plan once; returns the outputs in order (copies unless ``copy=False``).

        A wrong or missing feed, a label out of range, a non-finite objective (NonFiniteError) or, with
        ``check_numerics`` (default: the executable's setting), any non-finite value refuses the whole
        step: no parameter, optimizer state or counter changes. Ctrl-C during a training step takes
        effect when the step has completed. Runs of one executable are serialised by a lock: calling it
        from several threads is safe, one step at a time. ``copy=False`` returns views of the plan's
        arena, which the next run for the same feed shapes (from any thread) overwrites.
        """
        resolved = self.check_feeds({} if feeds is None else feeds)  # (``feeds or {}``: an array is ambiguous)
        checked = self.check_numerics if check_numerics is None else flag(check_numerics, "run: check_numerics",
                                                                          FeedError)
        with self._lock:
            bound = self.bound_plan({k: v.shape for k, v in resolved.items()}, checked)
            if bound.splits:  # graphdl's pool does the parallel work, BLAS at one thread (graphdl.threads)
                with threads.held():
                    outs = bound.run(resolved)
            else:
                outs = bound.run(resolved)
            return [o.copy() for o in outs] if copy else outs

    __call__ = run

    # -- inspecting -----------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable parameters (live arrays) by name."""
        return values_of_kind(self.values, self.nodes, NodeKind.PARAM)

    def state(self, optimizer: bool = True) -> dict[str, np.ndarray]:
        """Persistent non-trainable arrays by name: the model's (running statistics, dropout counters) and,
        unless ``optimizer=False``, the optimizer's (moments, step counter)."""
        values = values_of_kind(self.values, self.nodes, NodeKind.STATE)
        optimizer = flag(optimizer, "state: optimizer", FeedError)
        return values if optimizer else {k: v for k, v in values.items() if not is_optimizer_state(self.nodes[k])}

    def load_state(self, values: Mapping[str, np.ndarray], strict: bool = True) -> list[str]:
        """Copy state arrays by name (what another model's ``state()`` returns); returns the names this model
        has no state for (e.g. a training model's optimizer moments, loaded into an inference model).
        With ``strict``, every state of the model itself (running statistics) must be given."""
        return assign_state(self.values, self.nodes, values, strict=strict, what=f"model '{self.name}'")

    def load_parameters(self, values: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the live parameters and state after checking names, shapes and dtypes."""
        assign_values(self.values, self.nodes, values, strict=strict, what=f"model '{self.name}'")

    def _batch_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        batch_size = whole_number(batch_size, "batch_size", 1, FeedError, "; e.g. model.memory_report(batch_size=64)")
        return {i: tuple(batch_size if d is None else d for d in self.nodes[i].shape) for i in self.inputs}

    def source(self, batch_size: int = 1) -> str:
        """The generated Python that runs one step for ``batch_size``: one line per step, node name in
        a comment, in chunks of up to ``graphdl.codegen.CHUNK`` steps (in each, ``k<j>`` is its j-th step's
        kernel, ``v<i>`` the i-th array it uses)."""
        with self._lock:
            return self.bound_plan(self._batch_shapes(batch_size)).source

    def memory_report(self, batch_size: int = 1) -> dict[str, int]:
        """Bytes of the plan for ``batch_size``: arena (with reuse, kernels' workspace included),
        naive (no reuse), lower bound (most bytes live at one step), workspace (the largest any one
        step uses), the scans' stacked per-step outputs (``history_bytes``: ys and the residuals kept
        for the gradient, part of the arena), the scan bodies' own arenas and input buffers, nested
        scans included (``body_bytes``), the feeds' buffers, ``plan_bytes`` (what binding the plan
        allocates: arena + bodies + feeds), parameters and state."""
        from passes import specialize

        shapes = self._batch_shapes(batch_size)
        plan = specialize(self.ir, shapes)
        bodies = body_bytes(plan, self.ir)
        feeds = sum(math.prod(plan.shapes[n.name]) * np.dtype(n.dtype).itemsize
                    for n in self.ir.nodes if n.kind is NodeKind.PLACEHOLDER)
        history = sum(plan.slots[r].nbytes for n in self.ir.nodes if n.op == "scan"
                      for r in n.refs[n.attr["carries"]:] if r in plan.slots)
        return {
            "arena_bytes": plan.arena_bytes,
            "history_bytes": history,
            "body_bytes": bodies,
            "feed_bytes": feeds,
            "plan_bytes": plan.arena_bytes + bodies + feeds,
            "naive_bytes": plan.naive_bytes,
            "lower_bound_bytes": plan.lower_bound_bytes,
            "workspace_bytes": max((sum(s.nbytes for s in ws) for ws in plan.workspace.values()), default=0),
            "parameter_bytes": sum(v.nbytes for v in self.parameters().values()),
            "state_bytes": sum(v.nbytes for v in self.state().values()),
            "steps": len(plan.steps),
        }

    def inference(self, outputs: Sequence[Tensor | str] | None = None) -> Executable:
        """The inference plan of chosen ``outputs`` (default: every output but the objective) that shares
        this model's live parameters and state: a training checkpoint loaded with ``gd.load`` gives its
        predictions, running statistics included, without the script that built it."""
        from passes import CompileSpec, compile_graph
        from passes.dce import eliminate_dead_code
        from passes.mode import inference_of
        from passes.pool_blocks import unfuse

        if outputs is not None and not isinstance(outputs, list | tuple):
            raise FeedError(f"inference takes a list of outputs (nodes or names), got {outputs!r:.40}")
        names = [o.name if isinstance(o, Tensor) else o for o in outputs] if outputs is not None else [
            o for o in self.outputs if o != self.objective]
        if not names:
            raise FeedError(f"'{self.name}' has no output besides its objective; name the outputs to predict, "
                            "e.g. model.inference(['logits'])")
        source = unfuse(self.ir)  # layers the training plan fused are nodes of their own again, as the user named them
        forward = {n.name for n in source.nodes if n.kind is not NodeKind.UPDATE and n.kind is not NodeKind.GRADIENT}
        bad = [o for o in names if o not in forward]
        if bad:
            raise FeedError(f"'{self.name}' has no forward node {bad}; choose among its outputs {list(self.outputs)} "
                            "or other forward nodes (print(model) lists them). A value the compiler no longer "
                            "computes (a ReLU's, when the max pooling reading it now runs first) is read by "
                            "compiling the graph you built: gd.compile([node])")
        ir = eliminate_dead_code(inference_of(source, tuple(names)))
        ir = compile_graph(ir, CompileSpec(tuple(names), options={"training": False, "from_plan": True}))
        return Executable(ir, self.values, known_inputs=tuple(self.known_inputs))

    def save(self, path: str) -> None:
        """Write graph and weights (and optimizer state) to one file; see graphdl.serialize."""
        from graphdl.serialize import save

        save(self, path)
