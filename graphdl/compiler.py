"""The compile entry point: the one place graphdl calls into the ``passes`` package."""

from __future__ import annotations

from collections.abc import Sequence

from graphdl.distributed import MPI
from graphdl.errors import GraphError, flag
from graphdl.executable import Executable
from graphdl.graph import Graph, Tensor
from graphdl.ir import NodeKind
from graphdl.optim import Optimizer


def _one_graph(tensors: Sequence[Tensor], what: str) -> Graph:
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if not isinstance(tensors, list | tuple):
        raise GraphError(f"{what} takes a list of graph nodes, got {type(tensors).__name__} {tensors!r:.40}")
    if not tensors:
        raise GraphError(f"{what} needs at least one node")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise GraphError(f"{what} takes graph nodes, got {type(t).__name__}")
    graph = tensors[0].graph
    for t in tensors[1:]:
        if t.graph is not graph:
            raise GraphError(f"{what}: '{t.name}' is from graph '{t.graph.name}', '{tensors[0].name}' from "
                             f"'{graph.name}'; all nodes must come from one graph")
    if not isinstance(graph, Graph):
        raise GraphError(f"{what}: nodes must belong to a gd.Graph")
    return graph


def compile(outputs: Sequence[Tensor], optimizer: Optimizer | None = None, *, loss: Tensor | None = None,
            training: bool | None = None, check: bool = True, remat: str | int | None = None,
            distributed: MPI | None = None, check_numerics: bool = False) -> Executable:
    """Compile the graph that computes ``outputs``.

    With an ``optimizer``, the plan is a training step: it also computes the gradient of the objective
    with respect to every parameter it uses and applies the optimizer's update nodes. The objective is
    ``loss`` (one of ``outputs``), or without it the only scalar among ``outputs``; it is never guessed
    (several scalars and no ``loss=`` raise CompileError). The other outputs are monitors, computed in
    the same step.
    ``training`` selects how Dropout and BatchNorm behave (default: ``optimizer is not None``); a
    training plan also updates BatchNorm's running statistics. ``check`` verifies the IR after every pass.
    ``remat="sqrt"`` (or a segment length) recomputes activations in the backward pass instead of
    keeping them: O(sqrt(n)) activation memory for at most one extra forward pass (passes/remat.py).
    ``distributed=gd.distributed.MPI()`` makes a data-parallel training step: gradients are averaged over
    the MPI ranks inside the plan, and parameters and state are broadcast from rank 0 now.
    ``check_numerics=True`` makes every run name the first node producing NaN or inf, before any update
    (slower; ``run(check_numerics=...)`` decides per call).
    """
    from passes import CompileSpec, choose_objective, compile_graph

    if not isinstance(outputs, list | tuple):
        raise GraphError(f"gd.compile takes a list of output nodes, e.g. gd.compile([loss], optimizer=...), got "
                         f"{type(outputs).__name__} {outputs!r:.40}")
    outputs = list(outputs)
    graph = _one_graph(outputs, "gd.compile")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise GraphError(f"optimizer= takes a graphdl optimizer such as gd.optim.SGD(lr=0.1) or gd.optim.Adam(), "
                         f"got {type(optimizer).__name__} {optimizer!r:.60}")
    mode = optimizer is not None if training is None else flag(training, "gd.compile: training", GraphError)
    check = flag(check, "gd.compile: check", GraphError)
    if remat is not None and (isinstance(remat, bool) or not isinstance(remat, str | int)):
        raise GraphError(f"gd.compile: remat must be None, 'sqrt' or a positive segment length, got {remat!r:.40}")
    if loss is not None:
        _one_graph([*outputs, loss], "gd.compile")
    spec = CompileSpec(tuple(t.name for t in outputs), optimizer, {"training": mode, "remat": remat},
                       objective=None if loss is None else loss.name, frozen=frozenset(graph.frozen),
                       distributed=distributed)
    if distributed is not None:
        if optimizer is None:
            raise GraphError("distributed= makes a data-parallel training step; pass optimizer=... as well")
        distributed.setup()
    ir = compile_graph(graph.freeze(), spec, check=check)
    graph.mark_compiled()
    placeholders = tuple(n.name for n in graph.nodes.values() if n.kind is NodeKind.PLACEHOLDER)
    objective = None if optimizer is None else choose_objective(ir, spec)
    exe = Executable(ir, graph.values, known_inputs=placeholders, objective=objective,
                     check_numerics=check_numerics)
    if distributed is not None:
        distributed.broadcast(exe.values)
        exe.distributed = distributed
    return exe


def grad(objective: Tensor, wrt: Sequence[Tensor], *, unconnected: str = "error") -> list[Tensor]:
    """Symbolic gradients of ``objective`` (summed, if not a scalar) w.r.t. each of ``wrt``.

    The gradient nodes are added to the objective's graph, so they can be compiled, drawn or
    differentiated again.
    """
    from passes import build_gradients

    if not isinstance(wrt, list | tuple):
        raise GraphError(f"gd.grad takes a list of nodes as wrt, got {type(wrt).__name__} {wrt!r:.40}")
    graph = _one_graph([objective, *wrt], "gd.grad")
    ir, grads = build_gradients(graph.freeze(), objective.name, [w.name for w in wrt], unconnected=unconnected)
    for n in ir.nodes:
        if n.name not in graph.nodes:
            graph.add_node(n)
    return [Tensor(graph, grads[w.name]) for w in wrt]
