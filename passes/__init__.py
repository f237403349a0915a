"""The compiler: an ordered pipeline of graph passes, then specialisation to concrete shapes.

``compile_graph`` runs ``PIPELINE`` in order (verifying after each pass when asked) and names the
failing pass and those before it. ``specialize`` turns the compiled IR into a ``Plan`` for one set
of concrete feed shapes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphdl.builder import Tensor, check_graph_dtype
from graphdl.errors import CompileError, GraphDLError
from graphdl.gctools import paused_gc
from graphdl.ir import IR, Node, NodeKind, node_of, value_info
from graphdl.ir import ancestors as ancestors_of
from graphdl.plan import Plan
from passes.autodiff import build_gradients, gradient_builder
from passes.bodies import optimize_bodies
from passes.buffers import plan_buffers
from passes.constant_fold import fold_constants
from passes.cse import eliminate_common_subexpressions
from passes.dce import eliminate_dead_code
from passes.distribute import allreduce_gradients, schedule_collectives
from passes.fuse import fuse_sgd_matmul
from passes.layout import channel_major, user_layout_outputs
from passes.mode import set_mode
from passes.pool_blocks import pool_blocks
from passes.remat import rematerialize
from passes.reorder import pool_before_relu
from passes.scan_history import merge_scan_history, prune_scan_outputs
from passes.schedule import schedule_updates_early
from passes.shapes import concrete_shapes, infer_shapes
from passes.simplify import simplify_algebra
from passes.toposort import toposort
from passes.verify import verify


@dataclass(frozen=True)
class CompileSpec:
    """What to compile: the requested outputs and, for a training plan, the optimizer."""

    outputs: tuple[str, ...]
    optimizer: Any = None  # graphdl.optim.Optimizer; kept untyped so passes need not import it
    options: dict[str, Any] = field(default_factory=dict)
    #: The output a training plan minimises (``loss=``); None: the only scalar output.
    objective: str | None = None
    #: Parameters the training plan must not update (no gradient, no optimizer state).
    frozen: frozenset[str] = frozenset()
    #: Data parallelism (graphdl.distributed.MPI) or None; untyped so passes need not import it.
    distributed: Any = None


def select_outputs(ir: IR, spec: CompileSpec) -> IR:
    """Record the requested outputs on the IR."""
    return ir.replace(outputs=spec.outputs)


def choose_objective(ir: IR, spec: CompileSpec, by_name: Mapping[str, Node] | None = None) -> str:
    """The one scalar a training plan minimises: ``spec.objective`` if given, else the only scalar output.

    Never guessed: several scalar outputs and no ``loss=`` is an error listing the candidates.
    ``by_name``: ``ir.node_map()`` if the caller has it.
    """
    by_name = ir.node_map() if by_name is None else by_name
    if spec.objective is not None:
        if spec.objective not in ir.outputs:
            raise CompileError(f"loss='{spec.objective}' is not among the requested outputs {list(ir.outputs)}; "
                               "add it to the outputs so each step reports its value")
        shape = value_info(by_name, spec.objective)[0]
        if shape != ():
            raise CompileError(f"the training objective '{spec.objective}' "
                               f"({by_name[node_of(spec.objective)].describe()}) has shape "
                               f"{shape}; it must be a scalar: reduce it with "
                               "gd.ops.mean or use a loss layer")
        return spec.objective
    scalars = [o for o in ir.outputs if value_info(by_name, o)[0] == ()]
    if len(scalars) == 1:
        return scalars[0]
    if not scalars:
        raise CompileError("a training compile needs one scalar objective (the loss must be a scalar), but none "
                           f"of the outputs {list(ir.outputs)} is a scalar; reduce the loss with gd.ops.mean or "
                           "use a loss layer")
    raise CompileError(f"the outputs hold {len(scalars)} scalars ({', '.join(repr(s) for s in scalars)}) and no "
                       f"loss= says which one to minimise; pass e.g. gd.compile(outputs, loss={scalars[0]}, "
                       "optimizer=...) and the others are reported as monitors (to minimise a sum, build the sum "
                       "as a node and pass it as loss=)")


def add_training(ir: IR, spec: CompileSpec) -> IR:
    """For a training plan: gradients of the objective w.r.t. every parameter it uses, then updates."""
    if spec.optimizer is None:
        if spec.objective is not None:
            raise CompileError(f"loss='{spec.objective}' names the objective of a training plan; "
                               "pass optimizer=... as well (or drop loss= to compile an inference plan)")
        return ir
    by_name = ir.node_map()
    objective = choose_objective(ir, spec, by_name)
    node = by_name[node_of(objective)]
    ancestors = ancestors_of(by_name, node.name)
    used = [n.name for n in ir.nodes if n.kind is NodeKind.PARAM and n.name in ancestors]
    params = [p for p in used if p not in spec.frozen]
    if not params:
        why = f"all {len(used)} parameters it uses are frozen" if used else "it depends on no parameters"
        raise CompileError(f"the objective {node.describe()} cannot be trained: {why}; nothing to train")
    b, grads = gradient_builder(ir, objective, params)  # the optimizer appends to the same builder
    b.scope, b.dtype = "", check_graph_dtype(node.dtype)
    b.default_origin = node.origin
    pairs = [(Tensor(b, p), Tensor(b, grads[p])) for p in params]
    if spec.distributed is not None:
        b.default_kind = NodeKind.GRADIENT
        pairs = allreduce_gradients(b, pairs, list(b.nodes), bucket_bytes=spec.distributed.bucket_bytes,
                                    timeout=spec.distributed.timeout)
    b.default_kind = NodeKind.UPDATE
    spec.optimizer.build(b, pairs)
    return b.freeze(ir.outputs)


def _remat(ir: IR, policy: str | int | None) -> IR:
    """Apply the rematerialisation policy: None (keep everything), "sqrt", or a segment length."""
    if policy is None:
        return ir
    if policy != "sqrt" and not (isinstance(policy, int) and not isinstance(policy, bool) and policy > 0):
        raise CompileError(f"remat must be None, 'sqrt' or a positive segment length, got {policy!r}")
    return rematerialize(ir, None if policy == "sqrt" else policy)


Pass = Callable[[IR, CompileSpec], IR]

#: The compile pipeline, in order. The rewrites run after autodiff, which makes most of what they
#: remove (scalar products of the seed, duplicate subexpressions, weight gradients only an SGD update
#: reads); dead code goes after them; scheduling and rematerialisation need the final order, so they
#: follow the sort.
PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("select_outputs", select_outputs),
    ("set_mode", lambda ir, spec: set_mode(ir, spec.options.get("training"))),
    ("pool_before_relu", lambda ir, spec: pool_before_relu(ir)),
    ("channel_major", lambda ir, spec: channel_major(ir)),
    ("pool_blocks", lambda ir, spec: pool_blocks(ir, spec.options.get("training"))),
    # a compiled plan compiled again (inference, export: option from_plan) may ask for values in its chains
    ("user_layout_outputs", lambda ir, spec: user_layout_outputs(ir) if spec.options.get("from_plan") else ir),
    ("add_training", add_training),
    ("fold_constants", lambda ir, spec: fold_constants(ir)),
    ("simplify_algebra", lambda ir, spec: simplify_algebra(ir)),
    ("eliminate_common_subexpressions", lambda ir, spec: eliminate_common_subexpressions(ir)),
    ("fuse_sgd_matmul", lambda ir, spec: fuse_sgd_matmul(ir)),
    ("eliminate_dead_code", lambda ir, spec: eliminate_dead_code(ir)),
    ("merge_scan_history", lambda ir, spec: merge_scan_history(ir)),
    ("prune_scan_outputs", lambda ir, spec: prune_scan_outputs(ir)),
    ("optimize_bodies", lambda ir, spec: optimize_bodies(ir)),
    ("toposort", lambda ir, spec: toposort(ir)),
    ("schedule_updates_early", lambda ir, spec: schedule_updates_early(ir)),
    ("rematerialize", lambda ir, spec: _remat(ir, spec.options.get("remat"))),
    ("schedule_collectives", lambda ir, spec: schedule_collectives(ir)),
    ("infer_shapes", lambda ir, spec: infer_shapes(ir)),
)


def compile_graph(ir: IR, spec: CompileSpec, *, check: bool = True,
                  pipeline: tuple[tuple[str, Pass], ...] = PIPELINE) -> IR:
    """Run the pipeline; a failure names the failing pass and the passes that ran before it."""
    with paused_gc():
        return _run_pipeline(ir, spec, check, pipeline)


def _unchanged(ir: IR, checked: IR | None) -> bool:
    """Whether ``ir`` holds the very nodes (same objects, same order) and outputs of the IR last verified
    (``verify`` reads nothing else), so verifying it again could not fail: a pass that changed nothing."""
    if checked is None or ir.outputs != checked.outputs or len(ir.nodes) != len(checked.nodes):
        return False
    return ir.nodes is checked.nodes or all(map(operator.is_, ir.nodes, checked.nodes))


def _run_pipeline(ir: IR, spec: CompileSpec, check: bool, pipeline: tuple[tuple[str, Pass], ...]) -> IR:
    done: list[str] = []
    checked: IR | None = None  # the last IR verify accepted
    for name, fn in pipeline:
        try:
            ir = fn(ir, spec)
            if check and not _unchanged(ir, checked):
                checked = verify(ir)
        except GraphDLError as e:
            e.add_note(f"raised in compiler pass '{name}' (after: {', '.join(done) or 'none'})")
            raise
        done.append(name)
    return ir


def specialize(ir: IR, feed_shapes: Mapping[str, tuple[int, ...]], *, reuse: bool = True) -> Plan:
    """A plan for concrete feed shapes: concrete shape inference, then buffer planning."""
    with paused_gc():
        return plan_buffers(ir, concrete_shapes(ir, feed_shapes), reuse=reuse)


__all__ = ["PIPELINE", "CompileSpec", "build_gradients", "choose_objective", "compile_graph", "specialize"]
