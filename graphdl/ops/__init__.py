"""The functional API (``gd.ops.relu(x)``) over the op table; importing it registers every op.

Layers (``graphdl.layers``) are the way to get convolution, pooling, normalisation and dropout, which own
parameters or state; the functions here cover the stateless ops.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from graphdl.errors import GraphError, ShapeError
from graphdl.ops import (  # noqa: F401  (register ops)
    activations,
    attention,
    collective,
    contract,
    conv,
    conv_more,
    conv_pool,
    dims,
    elementwise,
    gather,
    group_norm,
    index,
    indexing,
    layout,
    linalg,
    losses,
    math,
    nn,
    norm,
    partition,
    pool,
    pool_avg,
    pool_blocks,
    reduce,
    remap,
    resize,
    stats,
    updates,
)
from graphdl.ops.activations import (  # noqa: F401
    celu,
    hardsigmoid,
    hardswish,
    logsigmoid,
    mish,
    relu6,
    selu,
    softsign,
)
from graphdl.ops.api import *  # noqa: F403  (arithmetic, reductions and scans: div, var, argmax, ...)
from graphdl.ops.api import _apply, _int, _node, _seq
from graphdl.ops.attention import scaled_dot_product_attention  # noqa: F401
from graphdl.ops.conv_more import conv1d, conv_transpose2d  # noqa: F401
from graphdl.ops.math_functions import *  # noqa: F403  (the elementwise math functions: exp, sin, round, ...)
from graphdl.ops.scan import scan  # noqa: F401  (gd.ops.scan; the module registers the op)
from graphdl.ops.structural import *  # noqa: F403  (stack, pad, einsum, gather, ...: the structural ops)
from graphdl.tensor import Tensor


def add(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("add", a, b)


def sub(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("sub", a, b)


def mul(a: Tensor | float, b: Tensor | float) -> Tensor:
    return _apply("mul", a, b)


def neg(a: Tensor) -> Tensor:
    return _apply("neg", a)


def matmul(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    return _apply("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def relu(a: Tensor) -> Tensor:
    return _apply("relu", a)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    return _apply("softmax", a, axis=axis)


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    return _apply("reshape", a, shape=_seq(shape))


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


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    return _apply("transpose", a, axes=_seq(axes))


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    if not isinstance(tensors, list | tuple):
        raise GraphError(f"concat takes a list of tensors, got {type(tensors).__name__} {tensors!r:.40}")
    return _apply("concat", *tensors, axis=axis)


def _split_sizes(x: Tensor, axis: int, what: str) -> int:
    x, axis = _node(x, f"{what}: x"), _int(axis, f"{what}: axis")
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"{what}: axis {axis} is out of range for '{x.name}' of shape {x.shape}")
    size = x.shape[axis]
    if size is None:
        raise ShapeError(f"{what}: axis {axis} of '{x.name}' {x.shape} has unknown size; split a known axis")
    return size


def split(x: Tensor, split_size_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split ``x`` along ``axis`` as ``torch.split``: an int gives pieces of that size (the last may be
    smaller), a list gives the size of each piece. One node with one output per piece."""
    size = _split_sizes(x, axis, "split")
    if not isinstance(split_size_or_sections, list | tuple):
        step = _int(split_size_or_sections, "split: split_size_or_sections")
        if step <= 0:
            raise GraphError(f"split size must be positive, got {step}")
        sizes = [builtins.min(step, size - s) for s in range(0, size, step)] or [0]  # gd.ops.min shadows it
    else:
        sizes = [_int(s, "split: each section") for s in split_size_or_sections]
    return x.graph.apply_multi("split", [x], {"sizes": tuple(sizes), "axis": axis})


def chunk(x: Tensor, chunks: int, axis: int = 0) -> list[Tensor]:
    """Split ``x`` into ``chunks`` pieces along ``axis`` as ``torch.chunk``: each of size
    ceil(size / chunks), so there may be fewer than ``chunks`` pieces. One node."""
    if _int(chunks, "chunk: chunks") <= 0:
        raise GraphError(f"chunk needs a positive number of chunks, got {chunks}")
    size = _split_sizes(x, axis, "chunk")
    return split(x, -(-size // chunks) or 1, axis)


# Fused ops the compiler substitutes (passes/fuse.py), registered after the ops they fuse.
from graphdl.ops import fused  # noqa: E402,F401
