"""Conv1D and ConvTranspose2D layers, with PyTorch's arguments and default initialisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphdl.errors import GraphError, whole_number
from graphdl.layers.base import Layer
from graphdl.layers.conv import _pair


def _one(v: int | Sequence[int], what: str) -> int:
    """An int >= 1 (>= 0 for padding), else GraphError naming ``what``."""
    low = 0 if "padding" in what else 1
    t = tuple(v) if isinstance(v, list | tuple) else (v,)
    if len(t) != 1 or isinstance(t[0], bool) or not isinstance(t[0], int | np.integer) or t[0] < low:
        raise GraphError(f"{what} must be an int >= {low}, got {v!r:.40}")
    return int(t[0])


def _check_groups(layer: str, in_channels: int, out_channels: int, groups: int) -> None:
    for what, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        whole_number(value, f"{layer}: {what}", 1, GraphError)
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise GraphError(f"{layer}: in_channels {in_channels} and out_channels {out_channels} must both be "
                         f"divisible by groups {groups}")


class Conv1D(Layer):
    """1-d convolution over (N, C, L) input; W is (out_channels, in_channels/groups, k), b is (out_channels,).
    ``padding`` is an int, "valid" or "same" (stride 1), as in torch.nn.Conv1d."""

    op = "conv1d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 name: str | None = None) -> None:
        bias = self._flag("bias", bias)
        super().__init__(name)
        _check_groups("Conv1D", in_channels, out_channels, groups)
        self.kernel, self.stride = _one(kernel_size, "kernel_size"), _one(stride, "stride")
        self.dilation, self.groups = _one(dilation, "dilation"), groups
        if isinstance(padding, str) and padding == "valid":  # (an array compared to a string is an array)
            self.padding = (0, 0)
        elif isinstance(padding, str) and padding == "same":
            if self.stride != 1:
                raise GraphError(f"Conv1D: padding='same' needs stride 1, got {self.stride} (as in PyTorch)")
            total = self.dilation * (self.kernel - 1)
            self.padding = (total // 2, total - total // 2)
        elif isinstance(padding, str):
            raise GraphError(f"Conv1D: padding={padding!r}: use an int, 'valid' or 'same'")
        else:
            p = _one(padding, "padding")
            self.padding = (p, p)
        bound = 1.0 / math.sqrt(in_channels // groups * self.kernel)  # PyTorch's default
        rng = self.graph.rng
        self.add_param("W", rng.uniform(-bound, bound, (out_channels, in_channels // groups, self.kernel)))
        if bias:
            self.add_param("b", rng.uniform(-bound, bound, (out_channels,)))

    def attrs(self) -> dict[str, Any]:
        return {"kernel": (self.kernel,), "stride": (self.stride,), "padding": self.padding,
                "dilation": (self.dilation,), "groups": self.groups}


class ConvTranspose2D(Layer):
    """Transposed 2-d convolution over NCHW input (torch.nn.ConvTranspose2d's arguments); W is
    (in_channels, out_channels/groups, kh, kw), b is (out_channels,). Output size per axis:
    (H - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1."""

    op = "conv_transpose2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | Sequence[int] = 1, name: str | None = None) -> None:
        bias = self._flag("bias", bias)
        super().__init__(name)
        _check_groups("ConvTranspose2D", in_channels, out_channels, groups)
        self.kernel, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.dilation, self.groups = _pair(dilation, "dilation"), groups
        self.output_padding = _pair(output_padding, "output_padding")
        ph, pw = _pair(padding, "padding")
        self.padding = (ph, ph, pw, pw)
        # PyTorch computes the fan-in from weight.size(1): out_channels / groups * kh * kw
        bound = 1.0 / math.sqrt(out_channels // groups * self.kernel[0] * self.kernel[1])
        rng = self.graph.rng
        self.add_param("W", rng.uniform(-bound, bound, (in_channels, out_channels // groups, *self.kernel)))
        if bias:
            self.add_param("b", rng.uniform(-bound, bound, (out_channels,)))

    def attrs(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "dilation": self.dilation, "groups": self.groups}
