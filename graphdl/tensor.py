"""Tensor: the user's handle on one node of a graph, with NumPy-style operators that add nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graphdl.errors import GraphError
from graphdl.ir import Node, Shape, format_shape

if TYPE_CHECKING:
    from graphdl.builder import Builder


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
