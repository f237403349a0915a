"""Layer: the base of all layers; owns parameter and state nodes, adds one node per call."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.errors import GraphError, choice, flag, real_number, whole_number
from graphdl.graph import Graph, current_graph
from graphdl.ir import NodeKind
from graphdl.tensor import Tensor


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
        self.buffers: dict[str, Tensor] = {}  # non-trainable state read after the params (running stats)
        self.calls = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @classmethod
    def _count(cls, what: str, value: object, low: int = 1) -> int:
        """A size argument (features, channels, heads) as an int >= ``low``, else GraphError naming it."""
        return whole_number(value, f"{cls.__name__}: {what}", low, GraphError)

    @classmethod
    def _fraction(cls, what: str, value: object, high: float = 1.0) -> float:
        """A probability or momentum argument as a float in [0, ``high``], else GraphError naming it."""
        import numbers

        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= high:
            raise GraphError(f"{cls.__name__}: {what} must be a number in [0, {high:g}], got {value!r}")
        return float(value)

    @classmethod
    def _number(cls, what: str, value: object) -> float:
        """A finite real number (a slope, a threshold), else GraphError naming it."""
        return real_number(value, f"{cls.__name__}: {what}", GraphError)

    @classmethod
    def _flag(cls, what: str, value: object) -> bool:
        """A True/False argument (bias, ceil_mode), else GraphError naming it."""
        return flag(value, f"{cls.__name__}: {what}", GraphError)

    @classmethod
    def _choice(cls, what: str, value: object, options: tuple[str, ...]) -> str:
        """One of the strings ``options`` (an activation's name), else GraphError listing them."""
        return choice(value, f"{cls.__name__}: {what}", options, GraphError)

    @classmethod
    def _positive(cls, what: str, value: object) -> float:
        """A strictly positive number (eps), else GraphError naming it."""
        import numbers

        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise GraphError(f"{cls.__name__}: {what} must be a number > 0, got {value!r}")
        return float(value)

    def add_param(self, key: str, value: np.ndarray) -> Tensor:
        t = self.graph.stored(f"{self.name}.{key}", value.astype(self.graph.dtype), NodeKind.PARAM)
        self.params[key] = t
        return t

    def add_state(self, key: str, value: np.ndarray) -> Tensor:
        """A non-trainable persistent array ``<layer>.<key>`` (kind state: saved, reloaded, not trained)."""
        t = self.graph.stored(f"{self.name}.{key}", value, NodeKind.STATE)
        self.buffers[key] = t
        return t

    @property
    def trainable(self) -> bool:
        """Whether training plans compiled from now on update this layer's parameters."""
        return not any(p.name in self.graph.frozen for p in self.params.values())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if value:
            self.graph.unfreeze_parameters(*self.params.values())
        else:
            self.graph.freeze_parameters(*self.params.values())

    def freeze(self) -> Layer:
        """Stop training this layer's parameters (in plans compiled afterwards); returns the layer."""
        self.trainable = False
        return self

    def unfreeze(self) -> Layer:
        """Train this layer's parameters again (in plans compiled afterwards); returns the layer."""
        self.trainable = True
        return self

    def attrs(self) -> dict[str, Any]:
        """Attributes of the node this layer adds (saved, drawn, passed to the kernel)."""
        return {}

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self._apply(self.op, [*inputs, *self.params.values(), *self.buffers.values()], self.attrs())

    def _apply(self, op: str, inputs: list[Tensor], attrs: dict[str, Any]) -> Tensor:
        name = self.name if self.calls == 0 else self.graph.fresh(self.name)
        self.graph.reserved.discard(self.name)
        self.calls += 1
        return self.graph.apply(op, inputs, attrs, name=name)
