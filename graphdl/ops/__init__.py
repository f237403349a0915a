"""The functional API (``gd.ops.relu(x)``) over the op table; importing it registers every op."""

from __future__ import annotations

from collections.abc import Sequence

from graphdl.graph import Tensor
from graphdl.ops import (  # noqa: F401  (register ops)
    activations,
    conv,
    elementwise,
    gather,
    layout,
    linalg,
    losses,
    nn,
    norm,
    pool,
    reduce,
    updates,
)


def _apply(op: str, *inputs: Tensor | float, **attrs: object) -> Tensor:
    t = next(i for i in inputs if isinstance(i, Tensor))
    return t.graph.apply(op, inputs, attrs)


def add(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("add", a, b)


def sub(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("sub", a, b)


def mul(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("mul", a, b)


def div(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("div", a, b)


def neg(a: Tensor) -> Tensor:
    return _apply("neg", a)


def exp(a: Tensor) -> Tensor:
    return _apply("exp", a)


def log(a: Tensor) -> Tensor:
    return _apply("log", a)


def matmul(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    return _apply("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def relu(a: Tensor) -> Tensor:
    return _apply("relu", a)


def sigmoid(a: Tensor) -> Tensor:
    return _apply("sigmoid", a)


def tanh(a: Tensor) -> Tensor:
    return _apply("tanh", a)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    return _apply("softmax", a, axis=axis)


def sum(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    return _apply("sum", a, axis=axis, keepdims=keepdims)


def mean(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    return _apply("mean", a, axis=axis, keepdims=keepdims)


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    return _apply("reshape", a, shape=tuple(shape))
