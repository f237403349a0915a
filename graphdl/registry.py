"""OpDef and the op table: each op's shape rule, NumPy kernel and gradient rule, side by side.

The table is the only global in graphdl: filled when ``graphdl.ops`` is imported, read-only afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from graphdl.attrs import ABSENT, AttrSpec
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
    #: The autodiff pass itself, for rules that differentiate a sub-graph (scan):
    #: ``vjp(ir, cotangents, wrt) -> (ir, {wrt: gradient value})`` (see passes/autodiff.py).
    vjp: Callable[..., Any] | None = None
    #: Per input, whether the autodiff pass uses its gradient (empty: all); a rule may skip the others.
    needed: tuple[bool, ...] = ()

    def apply(self, op: str, *inputs: Tensor | float, **attrs: Any) -> Tensor:
        """Add a gradient node computing ``op`` of ``inputs``."""
        return self.out.graph.apply(op, inputs, attrs)

    def apply_multi(self, op: str, *inputs: Tensor | float, **attrs: Any) -> list[Tensor]:
        """Add one gradient node computing the multi-output ``op``; a handle on each output."""
        return self.out.graph.apply_multi(op, inputs, attrs)


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
class Effects:
    """What an op does besides computing its outputs from its inputs. Passes ask this, never a node's kind
    or name (compare JAX's effects and the mutated-argument marks of FX's operator schemas).

    ``writes``: inputs the kernel mutates in place (optimizer updates, running statistics, counters). Such a
    node has no output buffer, is a root for dead-code elimination, is never merged, folded or recomputed,
    and runs after every other reader of what it writes. ``random``: outputs drawn from a random-number
    stream, so two nodes with equal inputs are not interchangeable: never merged, folded or recomputed.
    ``advances``: inputs holding random-number state (a counter) that a training plan must advance once
    per step; ``set_mode`` adds one ``increment`` per such state unless a node already writes it.
    ``communicates``: the kernel exchanges data with other processes (an MPI all-reduce): every rank must run
    it exactly once per step in the same order, so it is never merged, folded or recomputed.
    """

    writes: tuple[int, ...] = ()
    random: bool = False
    advances: tuple[int, ...] = ()
    communicates: bool = False

    @property
    def pure(self) -> bool:
        """Whether the outputs depend only on the inputs and attributes (safe to merge, fold, drop, recompute)."""
        return not self.writes and not self.random and not self.communicates


PURE = Effects()


@dataclass(frozen=True)
class OpDef:
    """One op: how its shape follows from its inputs, how it computes, how it differentiates.

    ``workspace`` declares scratch buffers the planner places in the arena for the step's duration.
    ``inplace`` lists inputs the output may overwrite when that input dies at this node (the kernel
    must then be alias-safe). ``effects`` declares side effects (see Effects); ``writes`` is a shorthand
    for ``effects.writes`` (both always agree). ``nondiff`` lists
    inputs that never receive a gradient (labels, indices). ``shape_only`` lists inputs whose
    values the kernel never reads (only their shape, fixed when the kernel is built), so reading
    them does not keep their buffers alive; where that depends on the node, it is a function of
    the node's attributes and number of inputs returning that list. ``grad`` is ``None`` when the op has no
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
    shape_only: tuple[int, ...] | Callable[[dict[str, Any], int], tuple[int, ...]] = ()
    doc: str = ""
    label_attrs: tuple[str, ...] = field(default=())
    #: The type of every attribute the op accepts (name -> AttrSpec); others are refused. Checked by
    #: the builder and by the model-file loader (``check_attrs``). Every op declares one, even if empty.
    attr_schema: Mapping[str, AttrSpec] | None = None
    #: Mode-dependent ops (Dropout, BatchNorm): the ``set_mode`` pass gives each node a ``training``
    #: attribute, and in a training plan calls ``training_updates(builder, node)`` to add the UPDATE
    #: nodes that advance its state (running statistics, random-number counters).
    modal: bool = False
    training_updates: Callable[[Any, Node], None] | None = None
    multi_output: bool = False
    #: Scratch buffers the kernel declares (see WorkspaceRule); its factory then takes ``workspace=``.
    workspace: WorkspaceRule | None = None
    effects: Effects = PURE
    #: Attributes holding sub-graphs (``IR``, e.g. a scan's body). The kernel factory then takes
    #: ``binder=``: (IR, feed shapes) -> a bound plan of that sub-graph (graphdl/executor.py); the file
    #: format, printing and drawing recurse into them.
    bodies: tuple[str, ...] = ()
    #: With ``bodies``: (attributes, concrete input shapes) -> each (sub-graph, its feed shapes) the kernel
    #: binds, so memory accounting can plan the bodies without building the kernel.
    body_feeds: Callable[[dict[str, Any], tuple[tuple[int, ...], ...]],
                         list[tuple[Any, dict[str, tuple[int, ...]]]]] | None = None
    #: (input k, m): the output is zeros plus every value of input k added, unscaled, at one position with
    #: the same index along the first m axes (a gradient routed to each window's saved maximum). Summing
    #: the output over all its other axes then equals summing input k over all of its own, which
    #: ``simplify_algebra`` uses (a convolution's bias gradient behind a max pooling reads the pooled
    #: gradient, a quarter of the size for 2x2 windows). Where that depends on the node, a function of
    #: its attributes returning the pair or None.
    routes: tuple[int, int] | Callable[[dict[str, Any]], tuple[int, int] | None] | None = None

    def __post_init__(self) -> None:
        writes = tuple(sorted({*self.writes, *self.effects.writes}))
        if writes != self.effects.writes or writes != self.writes:
            object.__setattr__(self, "writes", writes)
            object.__setattr__(self, "effects", dataclasses.replace(self.effects, writes=writes))


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


_OPS: dict[str, OpDef] = {}


def attr_problems(op: OpDef, attrs: Mapping[str, Any], *, complete: bool = False) -> list[str]:
    """What is wrong with ``attrs`` for ``op``: unknown names, missing required ones, wrong types.
    With ``complete`` every attribute of the schema must be present (format-v2 model files)."""
    schema = op.attr_schema
    if schema is None:  # tests/test_model_file_schema.py fails for it; files using it are refused
        return [] if not complete else [f"op '{op.name}' declares no attribute schema, so it cannot be loaded"]
    problems = []
    for key in attrs:
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            problems.append(f"unknown attribute '{key}' (op '{op.name}' takes: {known})")
    for key, spec in schema.items():
        if key not in attrs:
            if spec.required or (complete and spec.default is not ABSENT):
                problems.append(f"attribute '{key}' is missing ({spec.describe()})")
            continue
        problem = spec.problem(attrs[key])
        if problem is not None:
            problems.append(f"attribute '{key}' {problem}")
    return problems


def with_defaults(op: OpDef, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` plus the default of every optional attribute not given (what a v1 file meant)."""
    full = dict(attrs)
    for key, spec in (op.attr_schema or {}).items():
        if key not in full and not spec.required and spec.default is not ABSENT:
            full[key] = spec.default
    return full


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
