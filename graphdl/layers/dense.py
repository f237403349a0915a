"""Dense and structural layers: Linear, Embedding, Reshape, Flatten, Concat."""

from __future__ import annotations

import math
from typing import Any

from graphdl.errors import GraphError
from graphdl.layers.base import Layer
from graphdl.tensor import Tensor


class Linear(Layer):
    """y = x @ W + b with W of shape (in_features, out_features), as in the seed design."""

    op = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, name: str | None = None) -> None:
        in_features, out_features = self._count("in_features", in_features), self._count("out_features", out_features)
        bias = self._flag("bias", bias)
        super().__init__(name)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)  # PyTorch's default (kaiming_uniform with a=sqrt(5))
        rng = self.graph.rng
        self.add_param("W", rng.uniform(-bound, bound, (in_features, out_features)))
        if bias:
            self.add_param("b", rng.uniform(-bound, bound, (out_features,)))


class Reshape(Layer):
    """Reshape each batch to ``shape``; use -1 for the batch dimension."""

    op = "reshape"

    def __init__(self, *shape: int, name: str | None = None) -> None:
        super().__init__(name)
        self.shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape

    def attrs(self) -> dict[str, Any]:
        return {"shape": self.shape}


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
        if x.shape[:self.start_dim].count(None) > 1:  # reshape's one -1 cannot keep them: flatten keeps them
            return self._apply("flatten", [x], {"start_dim": self.start_dim})
        head = tuple(-1 if d is None else d for d in x.shape[:self.start_dim])
        return self._apply("reshape", [x], {"shape": (*head, math.prod(tail))})


class Concat(Layer):
    """Join inputs along ``dim`` (default 1, the channels of NCHW or the features of (N, F)); call it with
    the tensors, or with one list of them as torch.cat takes: ``Concat(dim=1)([a, b])``."""

    op = "concat"

    def __init__(self, dim: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.dim = dim

    def __call__(self, *inputs: Tensor | list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        if len(inputs) == 1 and isinstance(inputs[0], list | tuple):
            inputs = tuple(inputs[0])
        return super().__call__(*inputs)

    def attrs(self) -> dict[str, Any]:
        return {"axis": self.dim}


class Embedding(Layer):
    """Rows of W (num_embeddings, embedding_dim) looked up by integer ids; W ~ N(0, 1) as in PyTorch."""

    op = "embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, name: str | None = None) -> None:
        num_embeddings = self._count("num_embeddings", num_embeddings)
        embedding_dim = self._count("embedding_dim", embedding_dim)
        super().__init__(name)
        self.add_param("W", self.graph.rng.standard_normal((num_embeddings, embedding_dim)))
