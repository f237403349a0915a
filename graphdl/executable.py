"""A compiled model: the compiled IR, the arrays it reads, and one bound plan per feed-shape signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphdl.errors import FeedError
from graphdl.executor import BoundPlan
from graphdl.graph import Tensor, assign_state, assign_values, format_shape, is_optimizer_state, values_of_kind
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind

Feeds = Mapping["Tensor | str", Any]


def init_stored(node: Node) -> np.ndarray:
    """The initial value of a state node that a pass created (optimizer moments, step counters)."""
    init = node.attr.get("init")
    if init != "zeros" or None in node.shape:
        raise FeedError(f"no value for {node.describe()}; load the model's weights first")
    return np.zeros(node.shape, dtype=node.dtype)


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
    """

    def __init__(self, ir: IR, values: Mapping[str, np.ndarray], known_inputs: tuple[str, ...] = (),
                 objective: str | None = None) -> None:
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
        self._plans: dict[tuple, BoundPlan] = {}

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
            if not np.can_cast(arr.dtype, node.dtype, "same_kind"):
                raise FeedError(f"feed '{name}' has dtype {arr.dtype}, but placeholder {node.describe()} is "
                                f"{node.dtype}; convert it with .astype('{node.dtype}')")
        return resolved

    def bound_plan(self, feed_shapes: Mapping[str, tuple[int, ...]]) -> BoundPlan:
        """The plan for these feed shapes, built on first use and cached."""
        key = tuple(tuple(feed_shapes[i]) for i in self.inputs)
        bound = self._plans.get(key)
        if bound is None:
            from passes import specialize

            bound = BoundPlan(specialize(self.ir, feed_shapes), self.ir, self.values)
            self._plans[key] = bound
        return bound

    def run(self, feeds: Feeds | None = None, *, copy: bool = True) -> list[np.ndarray]:
        """Run the plan once; returns the outputs in order (copies unless ``copy=False``).

        A wrong or missing feed raises FeedError before anything runs or updates.
        """
        resolved = self.check_feeds(feeds or {})
        bound = self.bound_plan({k: v.shape for k, v in resolved.items()})
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
        return {i: tuple(batch_size if d is None else d for d in self.nodes[i].shape) for i in self.inputs}

    def source(self, batch_size: int = 1) -> str:
        """The generated Python that runs one step for ``batch_size``: one line per step, node name in
        a comment (``k<j>`` is step j's kernel, ``v<i>`` a bound array)."""
        return self.bound_plan(self._batch_shapes(batch_size)).source

    def memory_report(self, batch_size: int = 1) -> dict[str, int]:
        """Bytes of the plan for ``batch_size``: arena (with reuse, kernels' workspace included),
        naive (no reuse), lower bound (most bytes live at one step), workspace (the largest any one
        step uses), parameters and state."""
        from passes import specialize

        plan = specialize(self.ir, self._batch_shapes(batch_size))
        return {
            "arena_bytes": plan.arena_bytes,
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

        names = [o.name if isinstance(o, Tensor) else o for o in outputs] if outputs is not None else [
            o for o in self.outputs if o != self.objective]
        if not names:
            raise FeedError(f"'{self.name}' has no output besides its objective; name the outputs to predict, "
                            "e.g. model.inference(['logits'])")
        forward = {n.name for n in self.ir.nodes if n.kind is not NodeKind.UPDATE and n.kind is not NodeKind.GRADIENT}
        bad = [o for o in names if o not in forward]
        if bad:
            raise FeedError(f"'{self.name}' has no forward node {bad}; choose among its outputs {list(self.outputs)} "
                            "or other forward nodes (print(model) lists them)")
        ir = eliminate_dead_code(inference_of(self.ir, tuple(names)))
        ir = compile_graph(ir, CompileSpec(tuple(names), options={"training": False}))
        return Executable(ir, self.values, known_inputs=tuple(self.known_inputs))

    def save(self, path: str) -> None:
        """Write graph and weights (and optimizer state) to one file; see graphdl.serialize."""
        from graphdl.serialize import save

        save(self, path)
