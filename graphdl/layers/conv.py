"""Convolution and pooling layers over NCHW input, with PyTorch argument names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.errors import GraphError
from graphdl.layers.base import Layer
from graphdl.tensor import Tensor


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    """An int for both axes or a pair of ints, each >= 1 (>= 0 for padding), else GraphError naming ``what``."""
    low = 0 if "padding" in what else 1
    pair = tuple(v) if isinstance(v, list | tuple) else (v, v)
    if len(pair) != 2 or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= low
                                 for d in pair):
        raise GraphError(f"{what} must be an int >= {low} or a pair of them, got {v!r:.40}")
    return (int(pair[0]), int(pair[1]))


def _padding(padding: int | Sequence[int] | str, kernel: tuple[int, int], dilation: tuple[int, int],
             stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from PyTorch's padding argument (int, pair, "valid" or "same")."""
    if isinstance(padding, str) and padding == "valid":  # (an array compared to a string is an array)
        return (0, 0, 0, 0)
    if isinstance(padding, str) and padding == "same":
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
        in_channels, out_channels = self._count("in_channels", in_channels), self._count("out_channels", out_channels)
        groups, bias = self._count("groups", groups), self._flag("bias", bias)
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
    """Largest value of each window (stride defaults to the kernel size; padding never wins);
    ``ceil_mode`` rounds the output size up as PyTorch does."""

    op = "max_pool2d"

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, name: str | None = None,
                 ceil_mode: bool = False) -> None:
        ceil_mode = self._flag("ceil_mode", ceil_mode)
        super().__init__(name)
        self.kernel = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel if stride is None else _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        ph, pw = _pair(padding, "padding")
        self.padding = (ph, ph, pw, pw)
        self.ceil_mode = bool(ceil_mode)

    def attrs(self) -> dict[str, Any]:
        extra = {"ceil_mode": True} if self.ceil_mode else {}  # defaults stay out of the attributes
        return {"kernel": self.kernel, "stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                **extra}


class AvgPool2D(MaxPool2D):
    """Mean of each window; zero padding counts in the mean unless ``count_include_pad`` is False, and
    ``ceil_mode`` rounds the output size up (PyTorch's arguments and divisors)."""

    op = "avg_pool2d"

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, name: str | None = None, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        count_include_pad = self._flag("count_include_pad", count_include_pad)
        super().__init__(kernel_size, stride, padding, 1, name=name, ceil_mode=ceil_mode)
        self.count_include_pad = count_include_pad

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), **({} if self.count_include_pad else {"count_include_pad": False})}


class GlobalAvgPool2D(Layer):
    """Mean over height and width: (N, C, H, W) -> (N, C)."""

    op = "mean"

    def attrs(self) -> dict[str, Any]:
        return {"axis": (2, 3), "keepdims": False}


class Upsample(Layer):
    """Resample NCHW input to ``size`` or by ``scale_factor``: PyTorch's Upsample (modes nearest,
    nearest-exact, bilinear; ``align_corners`` for bilinear). See ``gd.ops.interpolate``."""

    def __init__(self, size: int | Sequence[int] | None = None, scale_factor: float | Sequence[float] | None = None,
                 mode: str = "nearest", align_corners: bool | None = None, name: str | None = None) -> None:
        self.mode = self._choice("mode", mode, ("nearest", "nearest-exact", "bilinear"))
        if align_corners is not None:
            align_corners = self._flag("align_corners", align_corners)
        if (size is None) == (scale_factor is None):
            raise GraphError("Upsample takes either size or scale_factor (exactly one)")
        super().__init__(name)
        self.size, self.scale_factor, self.align_corners = size, scale_factor, align_corners

    def __call__(self, x: Tensor) -> Tensor:
        from graphdl.ops.structural import resize_attrs

        attrs = resize_attrs(x, self.size, self.scale_factor, self.mode, self.align_corners)
        return self._apply("resize2d", [x], attrs)
