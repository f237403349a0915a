"""group_norm: normalise each sample's channels in ``groups`` groups (PyTorch's GroupNorm; InstanceNorm is
one channel per group), then scale and shift per channel. Statistics are the sample's own, in training and
inference alike, so the op has no state and no mode. The gradient is written with differentiable graph ops
(reshape, mean, pow), as layer_norm's, so it has a gradient itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Float, Int
from graphdl.registry import GradContext, OpDef, fail, register


def _group_norm_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, groups = shapes[0], attrs["groups"]
    if len(x) < 2 or None in x[1:]:
        fail(f"group_norm needs (batch, channels, ...) with every size past the batch known, got {x}")
    if x[1] % groups:
        fail(f"group_norm: {x[1]} channels do not split into {groups} groups", "make channels a multiple of groups")
    for p in shapes[1:]:
        if tuple(p) != (x[1],):
            fail(f"group_norm scale and shift must have shape ({x[1]},), one value per channel, got {p}")
    if len(shapes) == 2:
        fail("group_norm takes x alone or x, scale and shift")
    return x


def _grouped(shape: tuple, groups: int) -> tuple[int, ...]:
    return (shape[0], groups, math.prod(shape[1:]) // groups)


def _group_norm_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    eps, groups = attrs.get("eps", 1e-5), attrs["groups"]
    grouped = _grouped(out_shape, groups)
    stats = (grouped[0], groups, 1)
    mean, inv = np.empty(stats, dtype=dtype), np.empty(stats, dtype=dtype)
    col = (1, out_shape[1], *([1] * (len(out_shape) - 2)))

    def group_norm(x: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        xs, o = x.reshape(grouped), out.reshape(grouped)
        np.mean(xs, axis=2, keepdims=True, out=mean)
        np.subtract(xs, mean, out=o)
        np.einsum("ngk,ngk->ng", o, o, out=inv[..., 0])
        np.multiply(inv, 1.0 / grouped[2], out=inv)
        np.add(inv, eps, out=inv)
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        np.multiply(o, inv, out=o)
        if len(rest) == 3:
            np.multiply(out, rest[0].reshape(col), out=out)
            np.add(out, rest[1].reshape(col), out=out)

    return group_norm


def _group_norm_grad(c: GradContext) -> list:
    from graphdl.ops.norm import _normalise

    x, g, groups = c.inputs[0], c.gout, c.attrs["groups"]
    shape = (-1, *x.shape[1:])  # the batch may be unknown
    grouped = (-1, groups, math.prod(x.shape[1:]) // groups)
    xhat_g, inv = _normalise(c, c.apply("reshape", x, shape=grouped), (2,), c.attrs.get("eps", 1e-5))
    col = (1, x.shape[1], *([1] * (len(x.shape) - 2)))
    gh = g * c.apply("reshape", c.inputs[1], shape=col) if len(c.inputs) == 3 else g
    gh_g = c.apply("reshape", gh, shape=grouped)
    dx_g = inv * (gh_g - gh_g.mean(axis=2, keepdims=True) - xhat_g * (gh_g * xhat_g).mean(axis=2, keepdims=True))
    dx = c.apply("reshape", dx_g, shape=shape)
    if len(c.inputs) == 1:
        return [dx]
    xhat = c.apply("reshape", xhat_g, shape=shape)
    axes = (0, *range(2, len(x.shape)))
    return [dx, (g * xhat).sum(axis=axes), g.sum(axis=axes)]


register(OpDef(
    "group_norm", _group_norm_shape, _group_norm_kernel, grad=_group_norm_grad, label_attrs=("groups",),
    doc="Normalise each sample over each group of `groups` consecutive channels (and every position), then "
        "(optionally) scale and shift per channel: PyTorch's GroupNorm; one channel per group is InstanceNorm.",
    attr_schema={"groups": Int(low=1), "eps": Float(1e-5, low=0.0)},
))
