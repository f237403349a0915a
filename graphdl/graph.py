"""Building graphs: the Builder that appends shape-checked nodes, Tensor handles, and the user's Graph.

A ``Builder`` is a mutable list of nodes that checks each new node against its op's shape and
dtype rules as it is added, so a mistake is reported at the user's line. ``freeze()`` yields the
immutable ``IR`` the compiler works on. ``Graph`` is the Builder a user opens with ``with``; it also
owns the live parameter and state arrays.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from graphdl.errors import DTypeError, FeedError, GraphError, ShapeError
from graphdl.ir import IR, Node, NodeKind, Shape, make_attrs, user_origin, validate_name
from graphdl.registry import RuleError, attr_problems, get_op

FLOAT_DTYPES = ("float32", "float64")


class GraphGrowthWarning(UserWarning):
    """A compiled graph keeps growing: usually nodes built inside a training loop."""


def format_shape(shape: Shape) -> str:
    """``(None, 64)`` -> ``(batch?, 64)``: unknown stays distinct from 0."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


class Builder:
    """An append-only list of nodes with eager shape and dtype inference."""

    def __init__(self, name: str, dtype: str = "float32", nodes: Iterable[Node] = ()) -> None:
        if dtype not in FLOAT_DTYPES:
            raise GraphError(f"graph dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
        self.name = name
        self.dtype = dtype
        self.nodes: dict[str, Node] = {n.name: n for n in nodes}
        self._counts: dict[str, int] = {}
        self.reserved: set[str] = set()  # names promised to layers that have not been called yet
        self.scope = ""
        self.default_kind = NodeKind.OP
        self.default_origin: str | None = None

    # -- naming ---------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A node name not yet used: ``base``, else ``base_1``, ``base_2``, ..."""
        base = self.scope + base
        if base not in self.nodes and base not in self.reserved:
            return base
        k = self._counts.get(base, 0)
        while True:
            k += 1
            candidate = f"{base}_{k}"
            if candidate not in self.nodes and candidate not in self.reserved:
                self._counts[base] = k
                return candidate

    # -- adding nodes ---------------------------------------------------------------------
    def add_node(self, node: Node) -> Tensor:
        validate_name(node.name)
        if node.name in self.nodes:
            raise GraphError(
                f"node name '{node.name}' is already used in graph '{self.name}' "
                f"(by {self.nodes[node.name].describe()}); pick another name"
            )
        self.nodes[node.name] = node
        return Tensor(self, node.name)

    def apply(
        self,
        op: str,
        inputs: Sequence[Tensor | float | int],
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        kind: NodeKind | None = None,
    ) -> Tensor:
        """Add one node computing ``op`` of ``inputs``; Python numbers become scalar constants."""
        opdef = get_op(op)
        attrs = dict(attrs or {})
        origin = self.default_origin or user_origin()
        problems = attr_problems(opdef, attrs)
        if problems:
            raise GraphError(f"{op} at node '{name or op}' (defined at {origin}): {'; '.join(problems)}")
        like = next((t for t in inputs if isinstance(t, Tensor)), None)
        handles = [self._as_tensor(t, like) for t in inputs]
        if opdef.arity is not None and len(handles) != opdef.arity:
            raise GraphError(f"op '{op}' takes {opdef.arity} inputs, got {len(handles)}")
        nodes = [self.nodes[h.name] for h in handles]
        node_name = name if name is not None else self.fresh(op)
        try:
            shape = opdef.shape(tuple(n.shape for n in nodes), attrs)
            dtype = opdef.dtype(tuple(n.dtype for n in nodes), attrs)
        except RuleError as e:
            raise self.rule_error(e, node_name, op, nodes, origin) from None
        node = Node(
            name=node_name,
            kind=kind or self.default_kind,
            op=op,
            inputs=tuple(n.name for n in nodes),
            attrs=make_attrs(attrs),
            shape=tuple(shape),
            dtype=dtype,
            origin=origin,
        )
        return self.add_node(node)

    @staticmethod
    def rule_error(
        e: RuleError, name: str, op: str, inputs: Sequence[Node], origin: str
    ) -> ShapeError | DTypeError:
        """The error a user sees when a shape/dtype rule rejects a node, with all context."""
        seen = ", ".join(
            f"'{n.name}' {format_shape(n.shape)} {n.dtype}" for n in inputs
        )
        msg = f"{op} at node '{name}' (defined at {origin}): {e.message}; inputs: {seen}"
        if e.hint:
            msg += f". Hint: {e.hint}"
        return (DTypeError if e.kind == "dtype" else ShapeError)(msg)

    def scalar(self, value: float, dtype: str) -> Tensor:
        """A 0-d constant whose value lives in the node's attributes."""
        return self.apply("scalar", [], {"value": float(value), "dtype": dtype}, kind=NodeKind.CONSTANT)

    def _as_tensor(self, t: Tensor | float | int, like: Tensor | None) -> Tensor:
        if isinstance(t, Tensor):
            if t.graph is not self and t.name not in self.nodes:
                raise GraphError(
                    f"node '{t.name}' belongs to graph '{t.graph.name}', not '{self.name}'; "
                    "build every node of a model inside the same `with gd.Graph()` block"
                )
            return t if t.graph is self else Tensor(self, t.name)
        if isinstance(t, int | float | np.number):
            dtype = like.dtype if like is not None and like.dtype in FLOAT_DTYPES else self.dtype
            return self.scalar(float(t), dtype)
        raise GraphError(
            f"cannot use {type(t).__name__} as a graph input; wrap arrays with gd.constant()"
        )

    def tensor(self, name: str) -> Tensor:
        """The handle of an existing node."""
        if name not in self.nodes:
            raise GraphError(f"graph '{self.name}' has no node '{name}'")
        return Tensor(self, name)

    def freeze(self, outputs: Sequence[str] = ()) -> IR:
        """The immutable IR of everything built so far."""
        return IR(self.name, tuple(self.nodes.values()), tuple(outputs))


_CURRENT: contextvars.ContextVar[Graph | None] = contextvars.ContextVar("graphdl_graph", default=None)


def current_graph() -> Graph:
    """The graph of the innermost ``with gd.Graph(...)`` block."""
    g = _CURRENT.get()
    if g is None:
        raise GraphError(
            "no graph is open; build nodes inside `with gd.Graph('name') as g:`"
        )
    return g


class Graph(Builder):
    """A user's model definition: nodes plus the live parameter, state and constant arrays.

    Use as a context manager; placeholders, layers and ops created inside the block join it.
    ``seed`` makes parameter initialisation reproducible (default 0).
    """

    def __init__(self, name: str = "graph", dtype: str = "float32", seed: int | None = 0) -> None:
        super().__init__(name, dtype)
        self.values: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)
        self._tokens: list[contextvars.Token[Graph | None]] = []
        self._size_at_compile: int | None = None
        self._warned_growth = False

    #: After a compile, this many new nodes trigger a GraphGrowthWarning (nodes built in a loop).
    GROWTH_WARNING = 10_000

    def mark_compiled(self) -> None:
        """Remember the size at the first compile, to warn if the graph keeps growing afterwards."""
        if self._size_at_compile is None:
            self._size_at_compile = len(self.nodes)

    def add_node(self, node: Node) -> Tensor:
        t = super().add_node(node)
        if (self._size_at_compile is not None and not self._warned_growth
                and len(self.nodes) - self._size_at_compile > self.GROWTH_WARNING):
            self._warned_growth = True
            warnings.warn(
                f"graph '{self.name}' has grown by {len(self.nodes) - self._size_at_compile:,} nodes since it "
                f"was first compiled (latest: {node.describe()}); are nodes being built inside a training "
                "loop? Build the graph once and run the compiled plan many times.",
                GraphGrowthWarning, stacklevel=3)
        return t

    def __enter__(self) -> Graph:
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._tokens.pop())

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, dtype={self.dtype})"

    def summary(self) -> str:
        """A table of the forward nodes with output shapes and parameter counts."""
        from graphdl.printing import summary

        return summary(self.freeze())

    # -- leaves ---------------------------------------------------------------------------
    def placeholder(self, name: str, shape: Sequence[int | None], dtype: str | None = None) -> Tensor:
        dtype = str(np.dtype(dtype or self.dtype))
        shape = tuple(None if d is None else int(d) for d in shape)
        if any(d is not None and d < 0 for d in shape):
            raise ShapeError(f"placeholder '{name}': negative dimension in {shape}; use None for unknown")
        return self.add_node(
            Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=shape, dtype=dtype, origin=user_origin())
        )

    def stored(self, name: str, value: np.ndarray, kind: NodeKind = NodeKind.PARAM) -> Tensor:
        """Add a param, state or constant node whose live array is ``value``."""
        value = np.require(value, requirements="C")  # keeps 0-d arrays 0-d (ascontiguousarray would not)
        op = {NodeKind.PARAM: "param", NodeKind.STATE: "state", NodeKind.CONSTANT: "constant"}[kind]
        t = self.add_node(
            Node(name, kind, op, shape=value.shape, dtype=str(value.dtype), origin=user_origin())
        )
        self.values[name] = value
        return t

    # -- parameters -----------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable parameters by name: the live arrays every compiled plan reads."""
        return values_of_kind(self.values, self.nodes, NodeKind.PARAM)

    def state(self) -> dict[str, np.ndarray]:
        """Non-trainable persistent arrays (running statistics) by name."""
        return values_of_kind(self.values, self.nodes, NodeKind.STATE)

    def load_parameters(self, values: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the live parameters in place, after checking every name, shape and dtype."""
        assign_values(self.values, self.nodes, values, strict=strict, what=f"graph '{self.name}'")


def values_of_kind(values: Mapping[str, np.ndarray], nodes: Mapping[str, Node],
                   kind: NodeKind) -> dict[str, np.ndarray]:
    """The live arrays of the nodes of one kind, by name."""
    return {n: v for n, v in values.items() if nodes[n].kind is kind}


def assign_values(
    live: dict[str, np.ndarray],
    nodes: Mapping[str, Node],
    new: Mapping[str, np.ndarray],
    *,
    strict: bool,
    what: str,
) -> None:
    """Check all of ``new`` against ``live`` first, then copy in place (so plans stay bound)."""
    unknown = sorted(set(new) - set(live))
    if unknown:
        raise FeedError(f"{what} has no parameters named {unknown}; it has {sorted(live)}")
    trainable = {n for n in live if nodes[n].kind is NodeKind.PARAM}
    missing = sorted(trainable - set(new))
    if strict and missing:
        raise FeedError(f"{what}: values missing for {missing}; pass strict=False to keep their current values")
    checked = {}
    for name, value in new.items():
        arr = np.asarray(value)
        cur = live[name]
        if arr.shape != cur.shape:
            raise ShapeError(
                f"{what}: parameter '{name}' has shape {cur.shape}, the new value {arr.shape}"
            )
        if not np.can_cast(arr.dtype, cur.dtype, "same_kind"):
            raise DTypeError(f"{what}: parameter '{name}' is {cur.dtype}, the new value {arr.dtype}")
        checked[name] = arr
    for name, arr in checked.items():
        np.copyto(live[name], arr, casting="same_kind")


class Tensor:
    """A handle on one node of a graph; supports NumPy-style operators that add nodes."""

    __slots__ = ("graph", "name")
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor

    def __init__(self, graph: Builder, name: str) -> None:
        self.graph = graph
        self.name = name

    @property
    def node(self) -> Node:
        return self.graph.nodes[self.name]

    @property
    def shape(self) -> Shape:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def __repr__(self) -> str:
        n = self.node
        return f"<Tensor '{n.name}' {n.op} {format_shape(n.shape)} {n.dtype}>"

    def __hash__(self) -> int:
        return hash((id(self.graph), self.name))

    def __eq__(self, other: object) -> bool:  # identity, as in TF1: elementwise equality is gd.ops.equal
        return isinstance(other, Tensor) and other.graph is self.graph and other.name == self.name

    def __bool__(self) -> bool:
        raise GraphError(f"the truth value of symbolic node '{self.name}' is unknown until it runs")

    def _op(self, op: str, *inputs: Tensor | float, **attrs: Any) -> Tensor:
        return self.graph.apply(op, inputs, attrs)

    def __add__(self, o: Tensor | float) -> Tensor:
        return self._op("add", self, o)

    def __radd__(self, o: float) -> Tensor:
        return self._op("add", o, self)

    def __sub__(self, o: Tensor | float) -> Tensor:
        return self._op("sub", self, o)

    def __rsub__(self, o: float) -> Tensor:
        return self._op("sub", o, self)

    def __mul__(self, o: Tensor | float) -> Tensor:
        return self._op("mul", self, o)

    def __rmul__(self, o: float) -> Tensor:
        return self._op("mul", o, self)

    def __truediv__(self, o: Tensor | float) -> Tensor:
        return self._op("div", self, o)

    def __rtruediv__(self, o: float) -> Tensor:
        return self._op("div", o, self)

    def __neg__(self) -> Tensor:
        return self._op("neg", self)

    def __matmul__(self, o: Tensor) -> Tensor:
        return self._op("matmul", self, o)

    def __rmatmul__(self, o: Tensor) -> Tensor:
        return self._op("matmul", o, self)

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._op("sum", self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._op("mean", self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return self._op("reshape", self, shape=tuple(shape))


def placeholder(name: str, shape: Sequence[int | None], dtype: str | None = None) -> Tensor:
    """An input of the current graph; ``None`` marks the batch (unknown) dimension."""
    return current_graph().placeholder(name, shape, dtype)


def constant(value: np.ndarray | float, name: str | None = None) -> Tensor:
    """A constant array of the current graph (stored with the weights)."""
    g = current_graph()
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = arr.astype(g.dtype)
    return g.stored(name or g.fresh("const"), arr, NodeKind.CONSTANT)
