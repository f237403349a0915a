"""The user's Graph: a Builder opened with ``with``, owning the live parameter, state and constant arrays.

``placeholder`` and ``constant`` add leaves to the innermost open graph. (``Builder``, ``Tensor`` and
``format_shape`` live in graphdl/builder.py, graphdl/tensor.py and graphdl/ir.py; they are re-exported here
for convenience.)
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from graphdl.attrs import DTYPES
from graphdl.builder import FLOAT_DTYPES, Builder
from graphdl.errors import DTypeError, FeedError, GraphError, ShapeError, flag
from graphdl.ir import Node, NodeKind, format_shape, user_origin
from graphdl.tensor import Tensor


class GraphGrowthWarning(UserWarning):
    """A compiled graph keeps growing: usually nodes built inside a training loop."""


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
        #: Parameters that training plans compiled from now on leave alone (see ``freeze_parameters``).
        self.frozen: set[str] = set()

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
        try:
            resolved = str(np.dtype(self.dtype if dtype is None else dtype))
        except TypeError:
            resolved = None
        if resolved not in DTYPES:
            raise DTypeError(f"placeholder '{name}': dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        dtype = resolved
        if not isinstance(shape, list | tuple) or any(
                d is not None and (isinstance(d, bool) or not isinstance(d, int | np.integer)) for d in shape):
            raise ShapeError(f"placeholder '{name}': shape must be a tuple of ints and None (unknown), e.g. "
                             f"(None, 784), got {shape!r:.60}")
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

    def load_state(self, values: Mapping[str, np.ndarray], strict: bool = True) -> list[str]:
        """Copy state arrays (running statistics) by name, e.g. what an Executable's ``state()`` returns;
        names this graph has no state for are skipped and returned. See ``assign_state``."""
        return assign_state(self.values, self.nodes, values, strict=strict, what=f"graph '{self.name}'")

    # -- freezing -------------------------------------------------------------------------
    def _param_names(self, params: Sequence[Tensor | str]) -> list[str]:
        names = [p.name if isinstance(p, Tensor) else p for p in params]
        for n in names:
            node = self.nodes.get(n) if isinstance(n, str) else None
            if node is None or node.kind is not NodeKind.PARAM:
                what = f"{node.describe()} is a {node.kind.value}" if node is not None else f"{n!r} is not a node"
                raise GraphError(f"graph '{self.name}': only parameters can be frozen; {what}")
        return names

    def freeze_parameters(self, *params: Tensor | str) -> None:
        """Mark parameters as not trainable: training plans compiled afterwards build no gradient, no
        optimizer state and no update for them, and keep their values (PyTorch's ``requires_grad=False``).
        Plans compiled before are unchanged."""
        self.frozen.update(self._param_names(params))

    def unfreeze_parameters(self, *params: Tensor | str) -> None:
        """Make frozen parameters trainable again (for plans compiled afterwards)."""
        self.frozen.difference_update(self._param_names(params))

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        """The parameters that a training plan compiled now would update."""
        return {k: v for k, v in self.parameters().items() if k not in self.frozen}


def values_of_kind(values: Mapping[str, np.ndarray], nodes: Mapping[str, Node],
                   kind: NodeKind) -> dict[str, np.ndarray]:
    """The live arrays of the nodes of one kind, by name."""
    return {n: v for n, v in values.items() if nodes[n].kind is kind}


def is_optimizer_state(node: Node) -> bool:
    """State a compiler pass created and initialises itself (optimizer moments and step counter), as
    opposed to a model's own state (running statistics, dropout counters)."""
    return node.kind is NodeKind.STATE and "init" in dict(node.attrs)


def _check_mapping(new: object, what: str) -> None:
    if not isinstance(new, Mapping) or not all(isinstance(k, str) for k in new):
        raise FeedError(f"{what}: values are a dict of name -> array (what parameters() or state() returns), "
                        f"got {type(new).__name__} {new!r:.40}")


def assign_state(live: dict[str, np.ndarray], nodes: Mapping[str, Node], new: Mapping[str, np.ndarray], *,
                 strict: bool, what: str) -> list[str]:
    """Copy the state arrays of ``new`` that this model has; return the names it does not have (optimizer
    state of a training model loaded into an inference model, say). With ``strict``, every state of the
    model itself must be given, so running statistics are never silently left at their initial values."""
    _check_mapping(new, what)
    strict = flag(strict, f"{what}: strict", FeedError)
    own = {n for n in live if nodes[n].kind is NodeKind.STATE}
    if strict:
        missing = sorted(n for n in own if n not in new and not is_optimizer_state(nodes[n]))
        if missing:
            raise FeedError(f"{what}: no value for its state {missing}; pass strict=False to keep their "
                            "current values")
    assign_values(live, nodes, {k: v for k, v in new.items() if k in own}, strict=False, what=what)
    return sorted(k for k in new if k not in own)


def assign_values(
    live: dict[str, np.ndarray],
    nodes: Mapping[str, Node],
    new: Mapping[str, np.ndarray],
    *,
    strict: bool,
    what: str,
) -> None:
    """Check all of ``new`` against ``live`` first, then copy in place (so plans stay bound)."""
    _check_mapping(new, what)
    strict = flag(strict, f"{what}: strict", FeedError)
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


def placeholder(name: str, shape: Sequence[int | None], dtype: str | None = None) -> Tensor:
    """An input of the current graph; ``None`` marks the batch (unknown) dimension."""
    return current_graph().placeholder(name, shape, dtype)


def constant(value: np.ndarray | float, name: str | None = None) -> Tensor:
    """A constant array of the current graph (stored with the weights)."""
    g = current_graph()
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = arr.astype(g.dtype)
    return g.stored(g.fresh("const") if name is None else name, arr, NodeKind.CONSTANT)


__all__ = ["FLOAT_DTYPES", "Builder", "Graph", "GraphGrowthWarning", "Tensor", "assign_state", "assign_values",
           "constant", "current_graph", "format_shape", "is_optimizer_state", "placeholder", "values_of_kind"]
