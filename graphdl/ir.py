"""The IR: nodes, the frozen graph value the compiler sees, and the builder that appends to it.

Node kinds (every node has exactly one):

- ``placeholder``: an input fed at run time; its shape may hold ``None`` for the batch dimension.
- ``param``: a trainable array owned by the graph (``fc1.W``); the optimizer updates it.
- ``state``: a non-trainable array that persists between runs (optimizer moments, running statistics).
- ``constant``: a fixed array or scalar; its value lives beside the parameters.
- ``op``: a forward computation (elementwise, matmul, a layer such as Linear).
- ``loss``: a forward computation whose value is a training objective.
- ``gradient``: a node built by the autodiff pass (or ``gd.grad``) while differentiating, or by an
  optimizer from the gradients (learning rate, gradient norm): ordinary pure computations.
- ``update``: a node whose op writes into a param or state in place (its ``effects.writes``) and
  outputs nothing: an optimizer step, a running-statistics update, a counter increment.

Kinds say what role a node plays for people (pictures, summaries, remat's forward/backward split).
What a pass may do with a node (merge, fold, drop, reorder, recompute) follows from its op's
declared ``effects`` (graphdl/registry.py), never from its kind or name.

Edges are node names, not object references, so graphs print, compare and serialise simply.

Several outputs. A node may compute several values (``split``, ``batch_norm`` with its batch statistics).
An input reference is a string: ``"node"`` reads output 0, ``"node:k"`` output k >= 1 (``:`` never
occurs in node names). The node records every output's shape and dtype: ``shape``/``dtype`` are output 0
(so single-output code is unchanged), ``extra`` holds (shape, dtype) of outputs 1..k. Why references and
not FX-style ``getitem`` nodes: a getitem node is a value with no kernel that aliases another buffer, so
every pass (buffers, executor, cse, remat, autodiff) would need a special case for it; with references
each consumer names the value it reads, and passes that work on values (liveness, buffers, shapes) key
them by reference while passes that work on nodes (dce, toposort) map a reference to its node with
``node_of``. Helpers: ``ref``, ``parse_ref``, ``node_of``, ``Node.refs``, ``value_info``.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphdl.errors import GraphError

Dim = int | None
Shape = tuple[Dim, ...]
Attrs = tuple[tuple[str, Any], ...]


class NodeKind(str, enum.Enum):
    """What role a node plays; see the module docstring."""

    PLACEHOLDER = "placeholder"
    PARAM = "param"
    STATE = "state"
    CONSTANT = "constant"
    OP = "op"
    LOSS = "loss"
    GRADIENT = "gradient"
    UPDATE = "update"


#: Kinds whose value is an array stored beside the graph rather than computed by a kernel.
STORED_KINDS = frozenset({NodeKind.PARAM, NodeKind.STATE, NodeKind.CONSTANT})
#: Kinds computed by a kernel.
COMPUTED_KINDS = frozenset({NodeKind.OP, NodeKind.LOSS, NodeKind.GRADIENT, NodeKind.UPDATE})


@dataclass(frozen=True, slots=True)
class Node:
    """One value in the graph. ``shape`` uses ``None`` for an unknown (batch) dimension."""

    name: str
    kind: NodeKind
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Attrs = ()
    shape: Shape = ()
    dtype: str = "float32"
    origin: str = "<unknown>"
    #: (shape, dtype) of outputs 1..k of a multi-output node; empty for a single-output node.
    extra: tuple[tuple[Shape, str], ...] = ()

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The shape of every output, in order."""
        if not self.extra:  # the common case, kept cheap: passes call this for every node
            return (self.shape,)
        return (self.shape, *(s for s, _ in self.extra))

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The dtype of every output, in order."""
        if not self.extra:
            return (self.dtype,)
        return (self.dtype, *(d for _, d in self.extra))

    @property
    def refs(self) -> tuple[str, ...]:
        """The references naming each output: ``name``, ``name:1``, ..."""
        if not self.extra:
            return (self.name,)
        return tuple(ref(self.name, k) for k in range(1 + len(self.extra)))

    @property
    def attr(self) -> dict[str, Any]:
        """The attributes as a dict (built on each call; hot paths keep their own copy)."""
        return dict(self.attrs)

    def describe(self) -> str:
        """Short human form used in error messages: ``'fc1' (linear, defined at x.py:12)``."""
        return f"'{self.name}' ({self.op}, defined at {self.origin})"


_node_values = operator.attrgetter(*(f.name for f in dataclasses.fields(Node)))
_FIELD_INDEX = {f.name: k for k, f in enumerate(dataclasses.fields(Node))}


def replace_node(node: Node, **changes: Any) -> Node:
    """``dataclasses.replace`` for a node, about twice as fast: passes copy thousands of nodes whose
    inputs were redirected, and the generic version spends most of its time finding the fields."""
    values = list(_node_values(node))
    for key, value in changes.items():
        values[_FIELD_INDEX[key]] = value
    return Node(*values)


#: Node names: letters, digits and ``_`` first, then also ``.``, ``-`` and ``/``; at most NAME_MAX_LEN
#: characters. ``:`` is reserved (``node:k`` names output k of a multi-output node). Names never
#: reach generated code as code, but a small, printable set keeps files, errors and pictures readable.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")
NAME_MAX_LEN = 200


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid node name, or None if it is."""
    if not isinstance(name, str):
        return f"a node name must be a string, got {type(name).__name__}"
    if not name:
        return "a node name must not be empty"
    if len(name) > NAME_MAX_LEN:
        return f"node name {name[:40]!r}... is {len(name)} characters long; the limit is {NAME_MAX_LEN}"
    if NAME_PATTERN.fullmatch(name):
        return None
    if ":" in name:
        return (f"node name {name!r} contains ':', which is reserved (`node:k` names output k of a "
                "multi-output node)")
    return (f"node name {name!r} has characters outside letters, digits and _ . - / (or starts with "
            ". - /)")


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid node name, else raise GraphError saying why and what is allowed."""
    problem = name_problem(name)
    if problem is not None:
        raise GraphError(f"{problem}; use letters, digits and _ . - / (first character a letter, digit or _), "
                         f"at most {NAME_MAX_LEN} characters")
    return name  # type: ignore[return-value]


def _freeze(v: Any) -> Any:
    """Lists as tuples and NumPy scalars as Python values, recursively (attribute values)."""
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def make_attrs(attrs: Mapping[str, Any]) -> Attrs:
    """Sorted, hashable key/value pairs; lists become tuples."""
    # ``_freeze`` lives at module level: a recursive closure refers to itself through its cell, so each
    # call would leave a reference cycle (function, cell, tuple) for the collector, which is paused while
    # compiling: 30k cycles of garbage spread among a 5000-layer training graph's live nodes.
    return tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))


@dataclass(frozen=True)
class IR:
    """The frozen graph a pass receives and returns: nodes in definition order plus outputs."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...] = ()

    def node_map(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def replace(self, **changes: Any) -> IR:
        return dataclasses.replace(self, **changes)

    def of_kind(self, *kinds: NodeKind) -> list[Node]:
        return [n for n in self.nodes if n.kind in kinds]


def ref(node: str, index: int = 0) -> str:
    """The reference to output ``index`` of ``node``: ``node`` for 0, ``node:k`` otherwise."""
    return node if index == 0 else f"{node}:{index}"


def parse_ref(value: str) -> tuple[str, int]:
    """``"node:k"`` -> ``("node", k)``; ``"node"`` -> ``("node", 0)``."""
    if ":" not in value:  # node names never contain ":", so this is output 0
        return value, 0
    node, sep, index = value.rpartition(":")
    if sep and index.isdigit():
        return node, int(index)
    return value, 0


def node_of(value: str) -> str:
    """The name of the node that computes the value ``value`` refers to."""
    return parse_ref(value)[0]


def value_info(nodes: Mapping[str, Node], value: str) -> tuple[Shape, str]:
    """(shape, dtype) of the value ``value`` refers to; KeyError/IndexError if there is none."""
    node, k = parse_ref(value)
    n = nodes[node]
    return (n.shape, n.dtype) if k == 0 else n.extra[k - 1]


def format_shape(shape: Shape) -> str:
    """``(None, 64)`` -> ``(batch?, 64)``: unknown stays distinct from 0."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


def ancestors(nodes: Mapping[str, Node], start: str) -> set[str]:
    """``start`` and every node it reads, transitively."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(node_of(i) for i in nodes[name].inputs)
    return seen


_PACKAGE_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
    for d in ("graphdl", "passes")
)


def user_origin() -> str:
    """file:line of the innermost stack frame outside the graphdl and passes packages."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_PACKAGE_DIRS):
            rel = os.path.relpath(path)
            # interned: the nodes built on one line share one string (an 80k-node graph kept 80k copies,
            # a quarter of its memory, which made every pass over it slower per node)
            return sys.intern(f"{path if rel.startswith('..') else rel}:{frame.f_lineno}")
        frame = frame.f_back
    return "<unknown>"
