"""OpDef and the op table: each op's shape rule, NumPy kernel and gradient rule, side by side.

The table is the only global in graphdl: filled when ``graphdl.ops`` is imported, read-only afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from graphdl.errors import GraphError

if TYPE_CHECKING:
    from graphdl.ir import Node, Shape
    from graphdl.tensor import Tensor

#: A kernel reads its inputs and writes into ``out`` (``None`` for update ops); it must not allocate
#: arrays in steady state beyond what its factory preallocated.
Kernel = Callable[..., None]
#: Builds a kernel for concrete shapes: (attrs, input shapes, output shape, output dtype) -> Kernel.
KernelFactory = Callable[[dict[str, Any], tuple[tuple[int, ...], ...], tuple[int, ...], np.dtype], Kernel]
ShapeRule = Callable[[tuple["Shape", ...], dict[str, Any]], "Shape"]
#: Scratch buffers a kernel needs while it runs, for concrete shapes:
#: (attrs, input shapes, output shape, dtype) -> [(shape, dtype), ...]. The planner places them in
#: the arena, live during that step only, and the factory receives them as ``workspace=[arrays]``.
WorkspaceRule = Callable[[dict[str, Any], tuple[tuple[int, ...], ...], tuple[int, ...], np.dtype],
                         list[tuple[tuple[int, ...], Any]]]
DTypeRule = Callable[[tuple[str, ...], dict[str, Any]], str]


class RuleError(Exception):
    """Raised by a shape or dtype rule; the builder turns it into a ShapeError/DTypeError with context."""

    def __init__(self, message: str, hint: str = "", kind: str = "shape") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind


class InputValueError(Exception):
    """Raised by a kernel when input number ``index`` holds a value it cannot use (a label or index out
    of range). Forward kernels check before any update runs (passes/schedule.py), so the step is refused
    whole; the executor raises ExecutionError naming the node, op, input and value."""

    def __init__(self, index: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.message = message
        self.hint = hint


def fail(message: str, hint: str = "") -> None:
    """Reject the inputs of a shape rule with a message and a hint saying what to do."""
    raise RuleError(message, hint)


@dataclass(frozen=True)
class GradContext:
    """What a gradient rule sees: handles to the node's inputs, its output and the incoming gradient."""

    node: Node
    inputs: tuple[Tensor, ...]
    out: Tensor
    gout: Tensor
    attrs: dict[str, Any]

    def apply(self, op: str, *inputs: Tensor | float, **attrs: Any) -> Tensor:
        """Add a gradient node computing ``op`` of ``inputs``."""
        return self.out.graph.apply(op, inputs, attrs)


GradRule = Callable[[GradContext], Sequence["Tensor | None"]]


def same_float_dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Default dtype rule: all inputs share one dtype, which the output takes."""
    first = dtypes[0]
    for d in dtypes[1:]:
        if d != first:
            raise RuleError(
                f"inputs have dtypes {', '.join(dtypes)}",
                "make both operands the same dtype (build the graph with one dtype, "
                "e.g. gd.Graph(..., dtype='float64'))",
                kind="dtype",
            )
    return first


@dataclass(frozen=True)
class OpDef:
    """One op: how its shape follows from its inputs, how it computes, how it differentiates.

    ``workspace`` declares scratch buffers the planner places in the arena for the step's duration.
    ``inplace`` lists inputs the output may overwrite when that input dies at this node (the kernel
    must then be alias-safe). ``writes`` lists inputs an update kernel mutates. ``nondiff`` lists
    inputs that never receive a gradient (labels, indices). ``shape_only`` lists inputs whose
    values the kernel never reads (only their shape, fixed when the kernel is built), so reading
    them does not keep their buffers alive. ``grad`` is ``None`` when the op has no
    gradient rule; autodiff then names it when a gradient must flow through it.
    """

    name: str
    shape: ShapeRule
    kernel: KernelFactory
    grad: GradRule | None = None
    dtype: DTypeRule = same_float_dtype
    arity: int | None = None
    inplace: tuple[int, ...] = ()
    writes: tuple[int, ...] = ()
    nondiff: tuple[int, ...] = ()
    shape_only: tuple[int, ...] = ()
    doc: str = ""
    label_attrs: tuple[str, ...] = field(default=())
    #: Mode-dependent ops (Dropout, BatchNorm): the ``set_mode`` pass gives each node a ``training``
    #: attribute, and in a training plan calls ``training_updates(builder, node)`` to add the UPDATE
    #: nodes that advance its state (running statistics, random-number counters).
    modal: bool = False
    training_updates: Callable[[Any, Node], None] | None = None
    #: Scratch buffers the kernel declares (see WorkspaceRule); its factory then takes ``workspace=``.
    workspace: WorkspaceRule | None = None


def scratch(given: list[np.ndarray] | None, declared: list[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
    """The workspace arrays a kernel factory uses: the planner's views when given (reshaped to the
    declared shapes), else its own allocation (a kernel built outside a plan, e.g. in tests)."""
    if given is None:
        return [np.empty(shape, dtype) for shape, dtype in declared]
    if len(given) != len(declared):
        raise GraphError(f"kernel expected {len(declared)} workspace buffers, got {len(given)}")
    return [g.reshape(shape) for g, (shape, _) in zip(given, declared)]


_OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op to the table; names are unique."""
    if op.name in _OPS:
        raise GraphError(f"op '{op.name}' is registered twice")
    _OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """Look up an op by name; unknown names raise GraphError listing close matches."""
    try:
        return _OPS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_OPS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise GraphError(f"unknown op '{name}'{hint}") from None


def all_ops() -> dict[str, OpDef]:
    """A copy of the op table (name -> OpDef)."""
    return dict(_OPS)
