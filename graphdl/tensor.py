"""Tensor: the user's handle on one node of a graph, with NumPy-style operators that add nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graphdl.errors import GraphError
from graphdl.ir import Node, Shape, format_shape, parse_ref

if TYPE_CHECKING:
    from graphdl.builder import Builder


class Tensor:
    """A handle on one value of a graph; supports NumPy-style operators that add nodes.

    ``name`` is the value's reference: the node's name, or ``node:k`` for output k of a multi-output node.

    Arithmetic promotes mixed dtypes as PyTorch does (graphdl.dtypes); ``/`` is true division (integers
    give floats), ``//`` and ``%`` follow Python (the remainder has the divisor's sign). ``<``, ``<=``,
    ``>``, ``>=`` give bool values; ``&``, ``|``, ``^``, ``~`` work on bool and integer values.
    ``==`` and ``!=`` compare the handles themselves, as in TF1, so tensors can be dict keys and set
    members: elementwise equality is ``gd.ops.equal`` / ``gd.ops.not_equal``. Indexing follows NumPy
    (see graphdl/getitem.py).
    """

    __slots__ = ("graph", "name")
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor

    def __init__(self, graph: Builder, name: str) -> None:
        self.graph = graph
        self.name = name

    @property
    def node(self) -> Node:
        return self.graph.nodes[parse_ref(self.name)[0]]

    @property
    def index(self) -> int:
        """Which output of its node this value is (0 for single-output nodes)."""
        return parse_ref(self.name)[1]

    @property
    def shape(self) -> Shape:
        return self.node.shapes[self.index]

    @property
    def dtype(self) -> str:
        return self.node.dtypes[self.index]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<Tensor '{self.name}' {self.node.op} {format_shape(self.shape)} {self.dtype}>"

    def __hash__(self) -> int:
        return hash((id(self.graph), self.name))

    def __eq__(self, other: object) -> bool:  # identity, as in TF1: elementwise equality is gd.ops.equal
        return isinstance(other, Tensor) and other.graph is self.graph and other.name == self.name

    def __bool__(self) -> bool:
        raise GraphError(f"the truth value of symbolic node '{self.name}' is unknown until it runs")

    def _op(self, op: str, *inputs: Tensor | float, **attrs: Any) -> Tensor:
        return self.graph.apply(op, inputs, attrs)

    def __iter__(self) -> Any:
        raise GraphError(f"cannot iterate over symbolic node '{self.name}' {format_shape(self.shape)}; "
                         "index it (x[i]) or use gd.ops functions")

    # -- arithmetic (NumPy/PyTorch type promotion; see graphdl.dtypes) ---------------------------
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
        """True division: integer operands give floats, as in PyTorch."""
        return _api().div(self, o)

    def __rtruediv__(self, o: float) -> Tensor:
        return _api().div(o, self)

    def __floordiv__(self, o: Tensor | float) -> Tensor:
        """floor(self / o), as Python and PyTorch."""
        return self._op("floor_divide", self, o)

    def __rfloordiv__(self, o: float) -> Tensor:
        return self._op("floor_divide", o, self)

    def __mod__(self, o: Tensor | float) -> Tensor:
        """Remainder with the sign of the divisor, as Python and PyTorch."""
        return self._op("remainder", self, o)

    def __rmod__(self, o: float) -> Tensor:
        return self._op("remainder", o, self)

    def __pow__(self, o: Tensor | float) -> Tensor:
        return self._op("pow", self, o)

    def __rpow__(self, o: float) -> Tensor:
        return self._op("pow", o, self)

    def __neg__(self) -> Tensor:
        return self._op("neg", self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self._op("abs", self)

    def __matmul__(self, o: Tensor) -> Tensor:
        return self._op("matmul", self, o)

    def __rmatmul__(self, o: Tensor) -> Tensor:
        return self._op("matmul", o, self)

    # -- comparisons and logic: bool results, no gradient. ``==`` and ``!=`` stay identity (TF1), so
    # tensors can be dict keys; elementwise equality is gd.ops.equal / gd.ops.not_equal.
    def __lt__(self, o: Tensor | float) -> Tensor:
        return self._op("less", self, o)

    def __le__(self, o: Tensor | float) -> Tensor:
        return self._op("less_equal", self, o)

    def __gt__(self, o: Tensor | float) -> Tensor:
        return self._op("greater", self, o)

    def __ge__(self, o: Tensor | float) -> Tensor:
        return self._op("greater_equal", self, o)

    def __and__(self, o: Tensor | bool) -> Tensor:
        return self._op("bitwise_and", self, o)

    def __rand__(self, o: bool) -> Tensor:
        return self._op("bitwise_and", o, self)

    def __or__(self, o: Tensor | bool) -> Tensor:
        return self._op("bitwise_or", self, o)

    def __ror__(self, o: bool) -> Tensor:
        return self._op("bitwise_or", o, self)

    def __xor__(self, o: Tensor | bool) -> Tensor:
        return self._op("bitwise_xor", self, o)

    def __rxor__(self, o: bool) -> Tensor:
        return self._op("bitwise_xor", o, self)

    def __invert__(self) -> Tensor:
        return self._op("bitwise_not", self)

    # -- indexing ---------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Tensor:
        """NumPy indexing: slices (steps, negative bounds), ints, ``...``, ``None``, one integer array
        (a Tensor, list or NumPy array: a gather) or one boolean NumPy mask; each differentiable."""
        from graphdl.getitem import getitem

        return getitem(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise GraphError(f"graph values are immutable: cannot assign into '{self.name}'; build the new value with "
                         "gd.ops.where(mask, new, x) or gd.ops.scatter")

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise GraphError(f"len() of '{self.name}' {format_shape(self.shape)} is unknown: its first dimension is "
                             "not fixed; use x.shape")
        return self.shape[0]

    # -- methods ----------------------------------------------------------------------------
    @property
    def T(self) -> Tensor:
        """The axes reversed (NumPy's .T)."""
        return self._op("transpose", self, axes=None)

    def transpose(self, *axes: int) -> Tensor:
        """Permute the axes (reverse them when none are given)."""
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = tuple(axes[0])
        return self._op("transpose", self, axes=tuple(axes) or None)

    def astype(self, dtype: str) -> Tensor:
        """This value converted to ``dtype`` (e.g. 'float32', 'int64', 'bool')."""
        return self._op("astype", self, dtype=str(dtype))

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().sum(self, axis, keepdims, **kw)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().mean(self, axis, keepdims, **kw)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().max(self, axis, keepdims, **kw)

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().min(self, axis, keepdims, **kw)

    def prod(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().prod(self, axis, keepdims, **kw)

    def var(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().var(self, axis, keepdims, **kw)

    def std(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().std(self, axis, keepdims, **kw)

    def argmax(self, axis: int | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().argmax(self, axis, keepdims, **kw)

    def argmin(self, axis: int | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().argmin(self, axis, keepdims, **kw)

    def any(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().any(self, axis, keepdims, **kw)

    def all(self, axis: int | Sequence[int] | None = None, keepdims: bool = False, **kw: Any) -> Tensor:
        return _api().all(self, axis, keepdims, **kw)

    def abs(self) -> Tensor:
        return self._op("abs", self)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return self._op("reshape", self, shape=tuple(shape))


def _api() -> Any:
    from graphdl.ops import api  # the functional API imports this module

    return api
