"""Layers: callables that own their parameter nodes and add one node to the graph per call.

A layer is built inside ``with gd.Graph():``; its parameters (``<name>.W``, ``<name>.b``) become
param nodes at construction, initialised from the graph's seeded generator as PyTorch does, and
``layer(x)`` adds one node (named after the layer) that reads ``x`` and the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
        self.buffers: dict[str, Tensor] = {}  # non-trainable state read after the params (running stats)
        self.calls = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def add_param(self, key: str, value: np.ndarray) -> Tensor:
        t = self.graph.stored(f"{self.name}.{key}", value.astype(self.graph.dtype), NodeKind.PARAM)
        self.params[key] = t
        return t

    def add_state(self, key: str, value: np.ndarray) -> Tensor:
        """A non-trainable persistent array ``<layer>.<key>`` (kind state: saved, reloaded, not trained)."""
        t = self.graph.stored(f"{self.name}.{key}", value, NodeKind.STATE)
        self.buffers[key] = t
        return t

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


class LeakyReLU(Layer):
    """x where x > 0, else negative_slope * x."""

    op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        self.negative_slope = float(negative_slope)

    def attrs(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class ELU(Layer):
    """x where x > 0, else alpha * (exp(x) - 1)."""

    op = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = float(alpha)

    def attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class GELU(Layer):
    """x * Phi(x); ``approximate="tanh"`` uses the tanh approximation."""

    op = "gelu"

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name)
        if approximate not in ("none", "tanh"):
            raise GraphError(f"GELU(approximate={approximate!r}): use 'none' or 'tanh'")
        self.approximate = approximate

    def attrs(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class SiLU(_Activation):
    """x * sigmoid(x)."""

    op = "silu"


class Softplus(Layer):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold."""

    op = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, name: str | None = None) -> None:
        super().__init__(name)
        self.beta, self.threshold = float(beta), float(threshold)

    def attrs(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


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


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim``, without overflow at any magnitude."""

    op = "log_softmax"


class Reshape(Layer):
    """Reshape each batch to ``shape``; use -1 for the batch dimension."""

    op = "reshape"

    def __init__(self, *shape: int, name: str | None = None) -> None:
        super().__init__(name)
        self.shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape

    def attrs(self) -> dict[str, Any]:
        return {"shape": self.shape}


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or not all(isinstance(d, int) for d in pair):
        raise GraphError(f"{what} must be an int or a pair of ints, got {v!r}")
    return pair  # type: ignore[return-value]


def _padding(padding: int | Sequence[int] | str, kernel: tuple[int, int], dilation: tuple[int, int],
             stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from PyTorch's padding argument (int, pair, "valid" or "same")."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise GraphError(f"padding='same' needs stride 1, got stride {stride} (as in PyTorch)")
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    if isinstance(padding, str):
        raise GraphError(f"padding={padding!r}: use an int, a pair, 'valid' or 'same'")
    ph, pw = _pair(padding, "padding")
    return (ph, ph, pw, pw)


class Conv2D(Layer):
    """2-d convolution over NCHW input; W is (out_channels, in_channels/groups, kh, kw), b is (out_channels,)."""

    op = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise GraphError(f"Conv2D: in_channels {in_channels} and out_channels {out_channels} must both "
                             f"be divisible by groups {groups}")
        self.kernel = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        self.padding = _padding(padding, self.kernel, self.dilation, self.stride)
        self.groups = groups
        fan_in = in_channels // groups * self.kernel[0] * self.kernel[1]
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default (kaiming_uniform with a=sqrt(5))
        rng = self.graph.rng
        self.add_param("W", rng.uniform(-bound, bound, (out_channels, in_channels // groups, *self.kernel)))
        if bias:
            self.add_param("b", rng.uniform(-bound, bound, (out_channels,)))

    def attrs(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups}


class MaxPool2D(Layer):
    """Largest value of each window (stride defaults to the kernel size; padding never wins)."""

    op = "max_pool2d"

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.kernel = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel if stride is None else _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        ph, pw = _pair(padding, "padding")
        self.padding = (ph, ph, pw, pw)

    def attrs(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "stride": self.stride, "padding": self.padding, "dilation": self.dilation}


class AvgPool2D(MaxPool2D):
    """Mean of each window; zero padding counts in the mean (PyTorch's count_include_pad=True)."""

    op = "avg_pool2d"

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, name: str | None = None) -> None:
        super().__init__(kernel_size, stride, padding, 1, name=name)


class GlobalAvgPool2D(Layer):
    """Mean over height and width: (N, C, H, W) -> (N, C)."""

    op = "mean"

    def attrs(self) -> dict[str, Any]:
        return {"axis": (2, 3), "keepdims": False}


class Flatten(Layer):
    """Flatten dimensions ``start_dim`` and after into one (the batch dimension stays)."""

    op = "reshape"

    def __init__(self, start_dim: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.start_dim = start_dim

    def __call__(self, x: Tensor) -> Tensor:
        tail = x.shape[self.start_dim:]
        if None in tail:
            raise GraphError(f"Flatten '{self.name}': dimensions {self.start_dim}.. of {x.shape} must be known")
        head = tuple(-1 if d is None else d for d in x.shape[:self.start_dim])
        return self._apply("reshape", [x], {"shape": (*head, math.prod(tail))})


class Concat(Layer):
    """Join inputs along ``dim`` (default 1, the channels of NCHW or the features of (N, F))."""

    op = "concat"

    def __init__(self, dim: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.dim = dim

    def attrs(self) -> dict[str, Any]:
        return {"axis": self.dim}


class Dropout(Layer):
    """Inverted dropout: in training plans zero each entry with probability ``p`` and scale the rest by
    1/(1-p); identity in inference plans. Masks come from (seed, a step counter kept as state), so runs
    are reproducible and a reloaded training model continues the same sequence."""

    op = "dropout"

    def __init__(self, p: float = 0.5, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= p <= 1.0:
            raise GraphError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.seed = int(self.graph.rng.integers(2**31)) if seed is None else int(seed)
        self.add_state("counter", np.zeros(1, dtype=np.int64))  # (1,): Graph.stored keeps arrays at least 1-d

    def __call__(self, x: Tensor) -> Tensor:
        # each call of the same layer draws its own masks
        return self._apply(self.op, [x, self.buffers["counter"]], {"p": self.p, "seed": self.seed + self.calls})


class _BatchNorm(Layer):
    op = "batch_norm"
    ndims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, name: str | None = None) -> None:
        super().__init__(name)
        self.eps, self.momentum = float(eps), float(momentum)
        self.add_param("gamma", np.ones(num_features))
        self.add_param("beta", np.zeros(num_features))
        self.add_state("running_mean", np.zeros(num_features, dtype=self.graph.dtype))
        self.add_state("running_var", np.ones(num_features, dtype=self.graph.dtype))

    def attrs(self) -> dict[str, Any]:
        return {"eps": self.eps, "momentum": self.momentum}

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim not in self.ndims:
            raise GraphError(f"{type(self).__name__} '{self.name}' takes {' or '.join(map(str, self.ndims))}-d "
                             f"input, got {x.ndim}-d {x.shape}")
        return super().__call__(x)


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L): batch statistics in training plans, running
    statistics (``<layer>.running_mean``/``running_var``, state) in inference plans."""

    ndims = (2, 3)


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of NCHW input per channel; see BatchNorm1D."""

    ndims = (4,)


class LayerNorm(Layer):
    """Normalise over the trailing ``normalized_shape`` dimensions, then scale (gamma) and shift (beta)."""

    op = "layer_norm"

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = float(eps)
        if elementwise_affine:
            self.add_param("gamma", np.ones(self.normalized_shape))
            self.add_param("beta", np.zeros(self.normalized_shape))

    def attrs(self) -> dict[str, Any]:
        return {"ndim": len(self.normalized_shape), "eps": self.eps}


class Embedding(Layer):
    """Rows of W (num_embeddings, embedding_dim) looked up by integer ids; W ~ N(0, 1) as in PyTorch."""

    op = "embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, name: str | None = None) -> None:
        super().__init__(name)
        self.add_param("W", self.graph.rng.standard_normal((num_embeddings, embedding_dim)))
