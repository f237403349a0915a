"""Normalisation ops: batch_norm (training and inference modes, running statistics) and layer_norm.

batch_norm has three outputs (y, batch mean, batch variance); its gradient is one dedicated (modal,
first-order) node reading those statistics instead of recomputing them; layer_norm's is written with
differentiable graph ops (mean, pow, mul), so it has a gradient itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import Bool, Float, Int, Str
from graphdl.errors import GradientError
from graphdl.registry import GradContext, OpDef, fail, register

BATCH_NORM_ATTRS = {"eps": Float(1e-5, low=0.0), "momentum": Float(0.1), "training": Bool(False)}



def _norm_check(x: tuple, params: tuple, expected: tuple, what: str) -> None:
    for p in params:
        if tuple(p) != expected:
            fail(f"{what} parameter or statistic has shape {p}, expected {expected}")


def _batch_norm_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x = shapes[0]
    if len(x) not in (2, 3, 4) or x[1] is None:
        fail(f"batch_norm needs (batch, channels[, length | height, width]) with known channels, got {x}")
    _norm_check(x, shapes[1:], (x[1],), "batch_norm")
    per_channel = math.prod(x) // x[1] if None not in x and x[1] else None
    if attrs.get("training", False) and per_channel == 1:  # PyTorch refuses this too
        fail(f"batch_norm in training mode needs more than one value per channel for its batch statistics, got "
             f"input {x}: the output would be beta whatever the input, and the running variance would learn 0",
             "train on batches of at least 2 samples (gd.data.DataLoader(..., drop_last=True) drops a last batch "
             "of 1), or run this batch through the inference plan")
    return x, (x[1],), (x[1],)


def _bn_axes(ndim: int) -> tuple[int, ...]:
    return (0, *range(2, ndim))


def _channel_mean(x: np.ndarray, out: np.ndarray, scale: bool = True) -> None:
    """Mean (or sum) over every axis but 1, into ``out`` of C elements (einsum: ~3x np.mean over axes)."""
    n, c = x.shape[:2]
    flat = out.reshape(c)
    np.einsum("ncl->c", x.reshape(n, c, -1), out=flat)
    if scale:
        np.multiply(flat, c / x.size, out=flat)


def _batch_norm_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    eps, training = attrs.get("eps", 1e-5), attrs.get("training", False)
    shape, dtype = out_shapes[0], dtypes[0]
    col = (1, shape[1], *([1] * (len(shape) - 2)))
    scale = np.empty(col, dtype=dtype)
    shift = np.empty(col, dtype=dtype)
    sq = np.empty(shape, dtype=dtype) if training else None

    def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, rm: np.ndarray, rv: np.ndarray,
                   out: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        # Outputs 1 and 2 are the statistics used (batch ones in training, running ones in inference),
        # read by the gradient and the running-statistics update instead of being recomputed.
        if training:
            _channel_mean(x, mean)
            np.subtract(x, mean.reshape(col), out=sq)
            np.multiply(sq, sq, out=sq)
            _channel_mean(sq, var)  # biased batch variance
        else:
            np.copyto(mean, rm)
            np.copyto(var, rv)
        np.add(var.reshape(col), eps, out=scale)
        np.sqrt(scale, out=scale)
        np.divide(gamma.reshape(col), scale, out=scale)
        np.multiply(mean.reshape(col), scale, out=shift)
        np.subtract(beta.reshape(col), shift, out=shift)
        np.multiply(x, scale, out=out)
        np.add(out, shift, out=out)

    return batch_norm


def _normalise(c: GradContext, x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any]:
    """(x - mean) / sqrt(var + eps) and 1 / sqrt(var + eps) over axes, as differentiable nodes."""
    xc = x - x.mean(axis=axes, keepdims=True)
    inv = c.apply("pow", (xc * xc).mean(axis=axes, keepdims=True) + eps, -0.5)
    return xc * inv, inv


def _batch_norm_grad(c: GradContext) -> list:
    # One modal node for all three gradients, reading the statistics the forward node output: the
    # mode may be fixed only later, by set_mode (gradients built with gd.grad before compiling).
    if any(g is not None for g in c.gouts[1:]):
        raise GradientError(f"the batch statistics of {c.node.describe()} (outputs :1 and :2) are not "
                            "differentiable; differentiate its first output only")
    x, gamma = c.inputs[0], c.inputs[1]
    dx, dgamma, dbeta = c.apply_multi("batch_norm_backward", c.gout, x, gamma, c.outs[1], c.outs[2], **c.attrs)
    return [dx, dgamma, dbeta, None, None]


def _batch_norm_backward_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes[0], shapes[1]
    _batch_norm_shape(shapes[1:], attrs)
    if len(g) != len(x):
        fail(f"gradient {g} does not match the input {x}")
    return x, shapes[2], shapes[2]


def _batch_norm_backward_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    eps, training = attrs.get("eps", 1e-5), attrs.get("training", False)
    x_shape, dtype = in_shapes[1], dtypes[0]
    col = (1, x_shape[1], *([1] * (len(x_shape) - 2)))
    inv, a, b = (np.empty(col, dtype=dtype) for _ in range(3))
    xhat, tmp = np.empty(x_shape, dtype=dtype), np.empty(x_shape, dtype=dtype)
    count = math.prod(x_shape) // x_shape[1]

    def batch_norm_backward(g: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, var: np.ndarray,
                            dx: np.ndarray, dgamma: np.ndarray, dbeta: np.ndarray) -> None:
        np.add(var.reshape(col), eps, out=inv)
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        np.subtract(x, mean.reshape(col), out=xhat)
        np.multiply(xhat, inv, out=xhat)  # the normalised input
        _channel_mean(g, dbeta, scale=False)
        np.multiply(g, xhat, out=tmp)
        _channel_mean(tmp, dgamma, scale=False)
        np.multiply(inv, gamma.reshape(col), out=inv)  # gamma / std
        if not training:
            np.multiply(g, inv, out=dx)
            return
        # dx = gamma / std * (g - mean(g) - xhat * mean(g * xhat)), the means from dbeta and dgamma
        np.multiply(dbeta.reshape(col), 1.0 / count, out=a)
        np.multiply(dgamma.reshape(col), 1.0 / count, out=b)
        np.multiply(xhat, b, out=tmp)
        np.subtract(g, tmp, out=tmp)
        np.subtract(tmp, a, out=tmp)
        np.multiply(tmp, inv, out=dx)

    return batch_norm_backward


def _batch_norm_update_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    x_shape = in_shapes[0]
    momentum = attrs.get("momentum", 0.1)
    n = math.prod(x_shape) // x_shape[1]
    unbias = n / (n - 1) if n > 1 else 1.0
    tmp = np.empty(in_shapes[1], dtype=dtype)

    def batch_norm_update(x: np.ndarray, mean: np.ndarray, var: np.ndarray, rm: np.ndarray, rv: np.ndarray) -> None:
        # running = (1 - momentum) running + momentum batch, with the unbiased variance (PyTorch)
        np.multiply(rm, 1.0 - momentum, out=rm)
        np.multiply(mean, momentum, out=tmp)
        np.add(rm, tmp, out=rm)
        np.multiply(rv, 1.0 - momentum, out=rv)
        np.multiply(var, momentum * unbias, out=tmp)
        np.add(rv, tmp, out=rv)

    return batch_norm_update


def _batch_norm_updates(b: Any, node: Any) -> None:
    x, _, _, rm, rv = (b.tensor(i) for i in node.inputs)
    mean, var = b.tensor(f"{node.name}:1"), b.tensor(f"{node.name}:2")
    b.apply("batch_norm_update", [x, mean, var, rm, rv], {"momentum": dict(node.attrs).get("momentum", 0.1)},
            name=b.fresh(f"update/{node.name}"))


register(OpDef(
    "batch_norm", _batch_norm_shape, _batch_norm_kernel, arity=5, nondiff=(3, 4), grad=_batch_norm_grad,
    modal=True, training_updates=_batch_norm_updates, label_attrs=("eps", "momentum", "training"),
    multi_output=True, dtype=lambda d, a: (d[0], d[0], d[0]),
    doc="Normalise each channel (axis 1) by batch statistics in training plans, by the running statistics "
        "in inference plans; then scale by gamma and shift by beta. Outputs: y, and the per-channel mean and "
        "(biased) variance used, which the gradient and the running-statistics update read.",
    attr_schema=BATCH_NORM_ATTRS,
))
register(OpDef(
    "batch_norm_backward", _batch_norm_backward_shape, _batch_norm_backward_kernel, arity=5, modal=True,
    nondiff=(1, 2, 3, 4), multi_output=True, dtype=lambda d, a: (d[0], d[0], d[0]), label_attrs=("training",),
    doc="Gradients of batch_norm for x, gamma and beta in one node, from its saved statistics: inputs "
        "(gradient of y, x, gamma, mean, var).", attr_schema=BATCH_NORM_ATTRS,
))
register(OpDef(
    "batch_norm_update", lambda s, a: (), _batch_norm_update_kernel, arity=5, writes=(3, 4), nondiff=(0, 1, 2, 3, 4),
    shape_only=(0,), dtype=lambda d, a: d[0], label_attrs=("momentum",),
    doc="Update BatchNorm's running mean and (unbiased) variance in place from the batch statistics batch_norm "
        "output: inputs (x, only for its shape; mean; var; running mean; running var).",
    attr_schema={"momentum": Float(0.1)},
))


# -- Format-v1 training files: the gradient and statistics ops before batch_norm had several outputs. They
# recompute the batch statistics from x; new graphs never use them.
def _legacy_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes[0], shapes[1]
    _batch_norm_shape(shapes[1:], attrs)  # the checks only
    if len(g) != len(x):
        fail(f"gradient {g} does not match the input {x}")
    return x if attrs["wrt"] == "x" else shapes[2]


def _legacy_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    eps, training, wrt = attrs.get("eps", 1e-5), attrs.get("training", False), attrs["wrt"]
    x_shape = in_shapes[1]
    col = (1, x_shape[1], *([1] * (len(x_shape) - 2)))
    mean, inv, a, b = (np.empty(col, dtype=dtype) for _ in range(4))
    xhat, tmp = np.empty(x_shape, dtype=dtype), np.empty(x_shape, dtype=dtype)

    def batch_norm_grad(g: np.ndarray, x: np.ndarray, gamma: np.ndarray, rm: np.ndarray, rv: np.ndarray,
                        out: np.ndarray) -> None:
        if training:
            _channel_mean(x, mean)
            np.subtract(x, mean, out=xhat)
            np.multiply(xhat, xhat, out=tmp)
            _channel_mean(tmp, inv)
        else:
            np.copyto(mean, rm.reshape(col))
            np.copyto(inv, rv.reshape(col))
            np.subtract(x, mean, out=xhat)
        np.add(inv, eps, out=inv)
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        np.multiply(xhat, inv, out=xhat)  # the normalised input
        if wrt == "gamma":
            np.multiply(g, xhat, out=tmp)
            _channel_mean(tmp, out, scale=False)
            return
        np.multiply(inv, gamma.reshape(col), out=inv)  # gamma / std
        if not training:
            np.multiply(g, inv, out=out)
            return
        # dx = gamma / std * (g - mean(g) - xhat * mean(g * xhat))
        _channel_mean(g, a)
        np.multiply(g, xhat, out=tmp)
        _channel_mean(tmp, b)
        np.multiply(xhat, b, out=tmp)
        np.subtract(g, tmp, out=tmp)
        np.subtract(tmp, a, out=tmp)
        np.multiply(tmp, inv, out=out)

    return batch_norm_grad


def _legacy_stats_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    x_shape = in_shapes[0]
    momentum = attrs.get("momentum", 0.1)
    n = math.prod(x_shape) // x_shape[1]
    unbias = n / (n - 1) if n > 1 else 1.0
    col = (1, x_shape[1], *([1] * (len(x_shape) - 2)))
    mean = np.empty(col, dtype=dtype)
    var = np.empty(col, dtype=dtype)
    sq = np.empty(x_shape, dtype=dtype)

    def batch_norm_stats(x: np.ndarray, rm: np.ndarray, rv: np.ndarray) -> None:
        _channel_mean(x, mean)
        np.subtract(x, mean, out=sq)
        np.multiply(sq, sq, out=sq)
        _channel_mean(sq, var)
        # running = (1 - momentum) running + momentum batch, with the unbiased variance (PyTorch)
        np.multiply(rm, 1.0 - momentum, out=rm)
        np.add(rm, momentum * mean.reshape(-1), out=rm)
        np.multiply(rv, 1.0 - momentum, out=rv)
        np.add(rv, (momentum * unbias) * var.reshape(-1), out=rv)

    return batch_norm_stats


register(OpDef(
    "batch_norm_grad", _legacy_grad_shape, _legacy_grad_kernel, arity=5, nondiff=(1, 2, 3, 4), modal=True,
    label_attrs=("wrt", "training"), attr_schema={**BATCH_NORM_ATTRS, "wrt": Str("x", "gamma")},
    doc="Format-v1 files only: gradient of batch_norm for x (wrt='x') or gamma (wrt='gamma'), statistics recomputed.",
))
register(OpDef(
    "batch_norm_stats", lambda s, a: (), _legacy_stats_kernel, arity=3, writes=(1, 2), nondiff=(0, 1, 2),
    dtype=lambda d, a: d[0], label_attrs=("momentum",), attr_schema={"momentum": Float(0.1)},
    doc="Format-v1 files only: update BatchNorm's running statistics in place, recomputing them from x.",
))


def _layer_norm_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, k = shapes[0], attrs["ndim"]
    if len(x) < k or None in x[len(x) - k:]:
        fail(f"layer_norm over the last {k} dimensions needs them known, got {x}")
    _norm_check(x, shapes[1:], tuple(x[len(x) - k:]), "layer_norm")
    return x


def _layer_norm_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    eps, k = attrs.get("eps", 1e-5), attrs["ndim"]
    nd = len(out_shape)
    axes = tuple(range(nd - k, nd))
    red = tuple(1 if i in axes else d for i, d in enumerate(out_shape))
    mean = np.empty(red, dtype=dtype)
    inv = np.empty(red, dtype=dtype)
    # One feature axis: the sum of squares is one einsum pass (no squared copy); else a scratch square.
    sq = np.empty(out_shape, dtype=dtype) if k > 1 else None
    count = math.prod(out_shape[nd - k:])
    n = out_shape[0] if nd > k and threads.splits(math.prod(out_shape)) else 0  # leading rows split over threads

    def layer_norm(x: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]

        def part(i: slice) -> None:
            o, m, v = out[i], mean[i], inv[i]
            np.mean(x[i], axis=axes, keepdims=True, out=m)
            np.subtract(x[i], m, out=o)
            if sq is None:
                np.einsum("...j,...j->...", o, o, out=v[..., 0])
            else:
                np.multiply(o, o, out=sq[i])
                np.sum(sq[i], axis=axes, keepdims=True, out=v)
            np.multiply(v, 1.0 / count, out=v)
            np.add(v, eps, out=v)
            np.sqrt(v, out=v)
            np.divide(1.0, v, out=v)
            np.multiply(o, v, out=o)
            if len(rest) == 3:
                np.multiply(o, rest[0], out=o)
                np.add(o, rest[1], out=o)

        if n:
            threads.split_over_threads(part, n)
        else:
            part(slice(None))

    return threads.splitting(layer_norm, bool(n))


def _layer_norm_grad(c: GradContext) -> list:
    x, g, k = c.inputs[0], c.gout, c.attrs["ndim"]
    nd = len(x.shape)
    axes = tuple(range(nd - k, nd))
    xhat, inv = _normalise(c, x, axes, c.attrs.get("eps", 1e-5))
    gh = g * c.inputs[1] if len(c.inputs) == 3 else g
    dx = inv * (gh - gh.mean(axis=axes, keepdims=True) - xhat * (gh * xhat).mean(axis=axes, keepdims=True))
    if len(c.inputs) == 1:
        return [dx]
    lead = tuple(range(nd - k))
    return [dx, (g * xhat).sum(axis=lead), g.sum(axis=lead)]


register(OpDef("layer_norm", _layer_norm_shape, _layer_norm_kernel, grad=_layer_norm_grad, label_attrs=("ndim",),
               doc="Normalise over the last `ndim` dimensions, then (optionally) scale and shift.",
               attr_schema={"ndim": Int(low=1), "eps": Float(1e-5, low=0.0)}))
