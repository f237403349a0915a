"""Layers: callables that own their parameter nodes and add one node to the graph per call.

A layer is built inside ``with gd.Graph():``; its parameters (``<name>.W``, ``<name>.b``) become
param nodes at construction, initialised from the graph's seeded generator as PyTorch does, and
``layer(x)`` adds one node (named after the layer) that reads ``x`` and the parameters.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.errors import GraphError
from graphdl.graph import Graph, Tensor, current_graph
from graphdl.ir import NodeKind


class Layer:
    """Base of all layers: a name, parameter handles in ``params``, and one op per call."""

    op: str = ""

    def __init__(self, name: str | None = None) -> None:
        self.graph: Graph = current_graph()
        base = name or type(self).__name__.lower()
        self.name = self.graph.fresh(base) if name is None else name
        if name is not None and (name in self.graph.nodes or name in self.graph.reserved):
            raise GraphError(f"a node or layer named '{name}' already exists in graph '{self.graph.name}'")
        self.graph.reserved.add(self.name)
        self.params: dict[str, Tensor] = {}
        self.calls = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def add_param(self, key: str, value: np.ndarray) -> Tensor:
        t = self.graph.stored(f"{self.name}.{key}", value.astype(self.graph.dtype), NodeKind.PARAM)
        self.params[key] = t
        return t

    def attrs(self) -> dict[str, Any]:
        """Attributes of the node this layer adds (saved, drawn, passed to the kernel)."""
        return {}

    def __call__(self, *inputs: Tensor) -> Tensor:
        name = self.name if self.calls == 0 else self.graph.fresh(self.name)
        self.graph.reserved.discard(self.name)
        self.calls += 1
        return self.graph.apply(self.op, [*inputs, *self.params.values()], self.attrs(), name=name)


class Linear(Layer):
    """y = x @ W + b with W of shape (in_features, out_features), as in the seed design."""

    op = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)  # PyTorch's default (kaiming_uniform with a=sqrt(5))
        rng = self.graph.rng
        self.add_param("W", rng.uniform(-bound, bound, (in_features, out_features)))
        if bias:
            self.add_param("b", rng.uniform(-bound, bound, (out_features,)))


class _Activation(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)


class ReLU(_Activation):
    """max(x, 0)."""

    op = "relu"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    op = "sigmoid"


class Tanh(_Activation):
    """Hyperbolic tangent."""

    op = "tanh"


class Softmax(Layer):
    """exp(x) / sum(exp(x)) along ``dim`` (default the last axis)."""

    op = "softmax"

    def __init__(self, dim: int = -1, name: str | None = None) -> None:
        super().__init__(name)
        self.dim = dim

    def attrs(self) -> dict[str, Any]:
        return {"axis": self.dim}


class Reshape(Layer):
    """Reshape each batch to ``shape``; use -1 for the batch dimension."""

    op = "reshape"

    def __init__(self, *shape: int, name: str | None = None) -> None:
        super().__init__(name)
        self.shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape

    def attrs(self) -> dict[str, Any]:
        return {"shape": self.shape}
