"""Normalisation layers: BatchNorm1D/2D (running statistics as state) and LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.errors import GraphError
from graphdl.layers.base import Layer
from graphdl.tensor import Tensor


class _BatchNorm(Layer):
    op = "batch_norm"
    ndims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, name: str | None = None) -> None:
        num_features = self._count("num_features", num_features)
        self.eps, self.momentum = self._positive("eps", eps), self._fraction("momentum", momentum)
        super().__init__(name)
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
        shape = normalized_shape if isinstance(normalized_shape, list | tuple) else (normalized_shape,)
        self.normalized_shape = tuple(self._count("normalized_shape", d) for d in shape)
        self.eps = self._positive("eps", eps)
        elementwise_affine = self._flag("elementwise_affine", elementwise_affine)
        super().__init__(name)
        if elementwise_affine:
            self.add_param("gamma", np.ones(self.normalized_shape))
            self.add_param("beta", np.zeros(self.normalized_shape))

    def attrs(self) -> dict[str, Any]:
        return {"ndim": len(self.normalized_shape), "eps": self.eps}
