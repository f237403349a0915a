"""Normalisation layers: BatchNorm1D/2D (running statistics as state), LayerNorm, GroupNorm and
InstanceNorm1D/2D (each sample's own statistics)."""

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


class GroupNorm(Layer):
    """Normalise each sample over groups of ``num_channels // num_groups`` channels (PyTorch's GroupNorm),
    then scale (gamma) and shift (beta) per channel. Input (N, C, ...) with C == num_channels."""

    op = "group_norm"

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 name: str | None = None) -> None:
        self.num_groups = self._count("num_groups", num_groups)
        self.num_channels = self._count("num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise GraphError(f"GroupNorm: num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.eps, affine = self._positive("eps", eps), self._flag("affine", affine)
        super().__init__(name)
        if affine:
            self.add_param("gamma", np.ones(self.num_channels))
            self.add_param("beta", np.zeros(self.num_channels))

    def attrs(self) -> dict[str, Any]:
        return {"groups": self.num_groups, "eps": self.eps}

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise GraphError(f"{type(self).__name__} '{self.name}' takes (N, {self.num_channels}, ...) input, got "
                             f"'{x.name}' {x.shape}")
        return super().__call__(x)


class _InstanceNorm(GroupNorm):
    ndim = 0

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False,
                 track_running_stats: bool = False, name: str | None = None) -> None:
        if self._flag("track_running_stats", track_running_stats):
            raise GraphError(f"{type(self).__name__}: track_running_stats=True (running statistics for inference) "
                             "is not supported; each sample is normalised by its own statistics")
        super().__init__(num_features, num_features, eps, affine, name)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != self.ndim:
            raise GraphError(f"{type(self).__name__} '{self.name}' takes {self.ndim}-d (N, C, ...) input, got "
                             f"'{x.name}' {x.shape}")
        return super().__call__(x)


class InstanceNorm1D(_InstanceNorm):
    """Normalise each sample's channels over its length (N, C, L), as PyTorch's InstanceNorm1d (no affine
    parameters unless ``affine=True``; no running statistics)."""

    ndim = 3


class InstanceNorm2D(_InstanceNorm):
    """Normalise each sample's channels over height and width (N, C, H, W), as PyTorch's InstanceNorm2d."""

    ndim = 4
