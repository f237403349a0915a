"""OpDef and the op table: each op's shape rule, NumPy kernel and gradient rule, side by side.

The table is the only global in graphdl: filled when ``graphdl.ops`` is imported, read-only afterwards.
"""

from __future__ import annotations

import math
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
#: For a ``multi_output`` op the output shape and dtype are tuples, one entry per output, and the
#: kernel is called with one ``out`` array per output after its inputs.
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


def fail(message: str, hint: str = "") -> None:
    """Reject the inputs of a shape rule with a message and a hint saying what to do."""
    raise RuleError(message, hint)


@dataclass(frozen=True)
class GradContext:
    """What a gradient rule sees: handles to the node's inputs, its output and the incoming gradient.

    For a multi-output node, ``outs`` and ``gouts`` hold every output and one incoming gradient per
    output (``None`` where nothing differentiates that output); ``out``/``gout`` are output 0.
    """

    node: Node
    inputs: tuple[Tensor, ...]
    out: Tensor
    gout: Tensor | None
    attrs: dict[str, Any]
    outs: tuple[Tensor, ...] = ()
    gouts: tuple[Tensor | None, ...] = ()

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
    ``multi_output``: the shape rule returns a tuple of shapes and the dtype rule a tuple of dtypes,
    one per output (their number may depend on attributes, as for ``split``); see ``infer``.
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
    multi_output: bool = False


def scratch(given: list[np.ndarray] | None, declared: list[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
    """The workspace arrays a kernel factory uses: the planner's byte views of the arena when given
    (viewed as the declared shapes and dtypes), else its own allocation (a kernel built outside a
    plan, e.g. in tests)."""
    if given is None:
        return [np.empty(shape, dtype) for shape, dtype in declared]
    if len(given) != len(declared):
        raise GraphError(f"kernel expected {len(declared)} workspace buffers, got {len(given)}")
    out = []
    for g, (shape, dtype) in zip(given, declared):
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        out.append(g.view(np.uint8)[:nbytes].view(dtype).reshape(shape))
    return out


def infer(op: OpDef, shapes: tuple[Shape, ...], dtypes: tuple[str, ...],
          attrs: dict[str, Any]) -> tuple[tuple[Shape, ...], tuple[str, ...]]:
    """Every output's (shape, dtype) by the op's rules: one of each, or one per output of a multi-output op.

    Raises RuleError when the rules reject the inputs.
    """
    shape, dtype = op.shape(shapes, attrs), op.dtype(dtypes, attrs)
    if not op.multi_output:
        return (tuple(shape),), (dtype,)
    out_shapes, out_dtypes = tuple(tuple(s) for s in shape), tuple(dtype)
    if len(out_shapes) != len(out_dtypes) or not out_shapes:
        raise RuleError(f"op '{op.name}' gives {len(out_shapes)} output shapes but {len(out_dtypes)} dtypes")
    return out_shapes, out_dtypes


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
