"""The Builder: an append-only list of nodes that checks each new node against its op's rules.

Passes and gradient rules edit a Builder; the user's ``Graph`` (graphdl/graph.py) is a Builder that also
owns the live arrays. ``freeze()`` yields the immutable ``IR`` the compiler works on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from graphdl.dtypes import scalar_dtype
from graphdl.errors import DTypeError, GraphError, ShapeError
from graphdl.ir import (
    IR,
    Attrs,
    Node,
    NodeKind,
    Shape,
    _freeze,
    format_shape,
    make_attrs,
    node_of,
    user_origin,
    validate_name,
    value_info,
)
from graphdl.registry import RuleError, attr_problems, get_op, infer
from graphdl.tensor import Tensor

FLOAT_DTYPES = ("float32", "float64")


def check_graph_dtype(dtype: str) -> str:
    """``dtype`` if a graph may compute in it (its default float dtype), else GraphError."""
    if dtype not in FLOAT_DTYPES:
        raise GraphError(f"graph dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    return dtype


class Builder:
    """An append-only list of nodes with eager shape and dtype inference."""

    def __init__(self, name: str, dtype: str = "float32", nodes: Iterable[Node] = ()) -> None:
        self.name = name
        self.dtype = check_graph_dtype(dtype)
        self.nodes: dict[str, Node] = {n.name: n for n in nodes}
        self._counts: dict[str, int] = {}
        self.reserved: set[str] = set()  # names promised to layers that have not been called yet
        self.scope = ""
        self.default_kind = NodeKind.OP
        self.default_origin: str | None = None
        #: While a scan body is traced (graphdl/subgraph.py), the body's builder: nodes built on this
        #: builder go there instead, so outer tensors used in the body become its captured inputs.
        self.redirect: Builder | None = None
        #: (op, attribute items with their exact types) -> the node's frozen attrs, for attributes
        #: already checked against the op's schema; the frozen tuples are shared between nodes.
        self._checked_attrs: dict[tuple, Attrs] = {}
        #: One tuple per distinct shape: gradient graphs repeat a few shapes over thousands of nodes.
        self._shapes: dict[Shape, Shape] = {}

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
        target = self.redirect or self
        return target.build(op, inputs, attrs, name=name, kind=kind)

    def build(
        self,
        op: str,
        inputs: Sequence[Tensor | float | int],
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        kind: NodeKind | None = None,
    ) -> Tensor:
        """``apply`` on this very builder, ignoring ``redirect``."""
        if not isinstance(op, str):
            raise GraphError(f"the op is named by a string such as 'relu', got {op!r:.40}")
        if not isinstance(inputs, list | tuple):
            raise GraphError(f"{op}: inputs are a list of nodes and numbers, got {type(inputs).__name__} "
                             f"{inputs!r:.40}")
        if attrs is not None and (not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs)):
            raise GraphError(f"{op}: attributes are a dict of name -> value, got {attrs!r:.40}")
        opdef = get_op(op)
        # NumPy scalars (an axis from np.argmax, np.float32 hyperparameters) as the Python values they hold
        attrs = {k: _freeze(v) for k, v in (attrs or {}).items()}
        key = _attrs_key(op, attrs)
        frozen = self._checked_attrs.get(key) if key is not None else None
        if frozen is None:
            problems = attr_problems(opdef, attrs)
            if problems:
                origin = self.default_origin or user_origin()
                raise GraphError(f"{op} at node '{name or op}' (defined at {origin}): {'; '.join(problems)}")
            frozen = make_attrs(attrs)
            if key is not None:
                self._checked_attrs[key] = frozen
        like = next((t for t in inputs if isinstance(t, Tensor)), None)
        handles = [self._as_tensor(t, like) for t in inputs]
        if opdef.arity is not None and len(handles) != opdef.arity:
            raise GraphError(f"op '{op}' takes {opdef.arity} inputs, got {len(handles)}")
        infos = [(h.name, *value_info(self.nodes, h.name)) for h in handles]
        origin = self.default_origin or user_origin()
        node_name = name if name is not None else self.fresh(op)
        try:
            shapes, dtypes = infer(opdef, tuple(i[1] for i in infos), tuple(i[2] for i in infos), attrs)
        except RuleError as e:
            raise self.rule_error(e, node_name, op, infos, origin) from None
        node = Node(
            name=node_name,
            kind=kind or (NodeKind.UPDATE if opdef.effects.writes else self.default_kind),
            op=op,
            inputs=tuple(i[0] for i in infos),
            attrs=frozen,
            shape=self._shapes.setdefault(shapes[0], shapes[0]),
            dtype=dtypes[0],
            origin=origin,
            extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)),
        )
        return self.add_node(node)

    def apply_multi(
        self,
        op: str,
        inputs: Sequence[Tensor | float | int],
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        kind: NodeKind | None = None,
    ) -> list[Tensor]:
        """Add one node computing ``op`` of ``inputs``; a handle on each of its outputs."""
        t = self.apply(op, inputs, attrs, name=name, kind=kind)
        return [Tensor(t.graph, r) for r in t.node.refs]

    @staticmethod
    def rule_error(
        e: RuleError, name: str, op: str, inputs: Sequence[tuple[str, Shape, str]], origin: str
    ) -> ShapeError | DTypeError:
        """The error a user sees when a shape/dtype rule rejects a node, with all context.

        ``inputs`` holds (reference, shape, dtype) of each input value.
        """
        seen = ", ".join(f"'{r}' {format_shape(s)} {d}" for r, s, d in inputs)
        msg = f"{op} at node '{name}' (defined at {origin}): {e.message}; inputs: {seen}"
        if e.hint:
            msg += f". Hint: {e.hint}"
        return (DTypeError if e.kind == "dtype" else ShapeError)(msg)

    def scalar(self, value: float, dtype: str) -> Tensor:
        """A 0-d constant whose value lives in the node's attributes."""
        return self.build("scalar", [], {"value": float(value), "dtype": dtype}, kind=NodeKind.CONSTANT)

    def _as_tensor(self, t: Tensor | float | int, like: Tensor | None) -> Tensor:
        if isinstance(t, Tensor):
            if t.graph is not self and node_of(t.name) not in self.nodes:
                raise GraphError(
                    f"node '{t.name}' belongs to graph '{t.graph.name}', not '{self.name}'; "
                    "build every node of a model inside the same `with gd.Graph()` block"
                )
            return t if t.graph is self else Tensor(self, t.name)
        if isinstance(t, int | float | np.number | np.bool_):
            # weak scalars: a Python number takes the dtype of the tensor it meets (graphdl.dtypes)
            return self.scalar(float(t), scalar_dtype(t, like.dtype if like is not None else None, self.dtype))
        raise GraphError(
            f"cannot use {type(t).__name__} as a graph input; wrap arrays with gd.constant()"
        )

    def tensor(self, name: str) -> Tensor:
        """The handle of an existing node."""
        if node_of(name) not in self.nodes:
            raise GraphError(f"graph '{self.name}' has no node '{name}'")
        return Tensor(self, name)

    def freeze(self, outputs: Sequence[str] = ()) -> IR:
        """The immutable IR of everything built so far."""
        return IR(self.name, tuple(self.nodes.values()), tuple(outputs))


_PLAIN = frozenset({bool, int, float, str, type(None)})


def _attrs_key(op: str, attrs: Mapping[str, Any]) -> tuple | None:
    """A key equal only for attributes of the same values *and types* (``1``, ``True`` and
    ``np.int64(1)`` are equal in Python but not to a schema; ``0.0`` and ``-0.0`` too, so float
    zeros get no key), or None when a value is not a plain scalar or a flat tuple of them: such
    attributes are checked in full every time."""
    items = []
    for k, v in attrs.items():
        t = type(v)
        if t is tuple:
            types = tuple(map(type, v))
            if not _PLAIN.issuperset(types) or (float in types and 0 in v):
                return None
            items.append((k, v, types))
        elif t is float and v == 0:
            return None
        elif t in _PLAIN:
            items.append((k, v, t))
        else:
            return None
    return (op, *items)


__all__ = ["FLOAT_DTYPES", "Builder", "Tensor", "format_shape"]
