"""The functional API (``gd.ops.relu(x)``) over the op table; importing it registers every op.

Layers (``graphdl.layers``) are the way to get convolution, pooling, normalisation and dropout, which own
parameters or state; the functions here cover the stateless ops.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphdl.ops import (  # noqa: F401  (register ops)
    activations,
    contract,
    conv,
    dims,
    elementwise,
    gather,
    index,
    layout,
    linalg,
    losses,
    nn,
    norm,
    pool,
    reduce,
    remap,
    updates,
)
from graphdl.ops.structural import *  # noqa: F403  (stack, pad, einsum, gather, ...: the structural ops)
from graphdl.tensor import Tensor


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


def sqrt(a: Tensor) -> Tensor:
    return _apply("sqrt", a)


def pow(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("pow", a, b)


def abs(a: Tensor) -> Tensor:
    return _apply("abs", a)


def sign(a: Tensor) -> Tensor:
    return _apply("sign", a)


def clip(a: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    return _apply("clip", a, min=min, max=max)


def maximum(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("maximum", a, b)


def minimum(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("minimum", a, b)


def greater(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("greater", a, b)


def greater_equal(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("greater_equal", a, b)


def less(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("less", a, b)


def less_equal(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("less_equal", a, b)


def equal(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("equal", a, b)


def where(cond: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """a where cond (a boolean node, e.g. from greater) is true, else b; a and b share one float dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("where needs a or b to be a graph node")
    like = a if isinstance(a, Tensor) else b
    return like.graph.apply("where", [cond, a, b], {})


def erf(a: Tensor) -> Tensor:
    return _apply("erf", a)


def leaky_relu(a: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _apply("leaky_relu", a, negative_slope=negative_slope)


def elu(a: Tensor, alpha: float = 1.0) -> Tensor:
    return _apply("elu", a, alpha=alpha)


def gelu(a: Tensor, approximate: str = "none") -> Tensor:
    return _apply("gelu", a, approximate=approximate)


def silu(a: Tensor) -> Tensor:
    return _apply("silu", a)


def softplus(a: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return _apply("softplus", a, beta=beta, threshold=threshold)


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    return _apply("log_softmax", a, axis=axis)


def max(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    return _apply("max", a, axis=axis, keepdims=keepdims)


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    return _apply("transpose", a, axes=None if axes is None else tuple(axes))


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    return _apply("concat", *tensors, axis=axis)


# Fused ops the compiler substitutes (passes/fuse.py), registered after the ops they fuse.
from graphdl.ops import fused  # noqa: E402,F401
