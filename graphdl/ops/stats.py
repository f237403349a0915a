"""Statistical reductions and scans: prod, var, std, logsumexp, cumsum and cumprod (PyTorch semantics).

``prod`` and ``cumprod`` have exact gradients where inputs are zero (each entry's gradient is the
product of the other entries, computed without dividing); ``std``'s gradient is 0 where the
deviation is 0, as in PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Bool, Float, Int
from graphdl.dtypes import floating, is_float
from graphdl.ops.common import norm_axes, reduced_shape
from graphdl.ops.elementwise import where
from graphdl.ops.reduce import REDUCE_ATTRS
from graphdl.registry import GradContext, OpDef, fail, register


def _reduce_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return reduced_shape(shapes[0], attrs.get("axis"), attrs.get("keepdims", False))


def _spread(attrs: dict[str, Any]) -> dict[str, Any]:
    return {"axis": attrs.get("axis"), "keepdims": attrs.get("keepdims", False)}


# -- prod ----------------------------------------------------------------------------------------
def _prod_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axes, keepdims = norm_axes(attrs.get("axis"), len(in_shapes[0])), attrs.get("keepdims", False)

    def prod(x: np.ndarray, out: np.ndarray) -> None:
        np.prod(x, axis=axes, keepdims=keepdims, out=out)

    return prod


def _prod_grad(c: GradContext) -> list:
    x = c.inputs[0]
    return [c.apply("prod_grad", c.apply("broadcast_like", c.gout, x, **_spread(c.attrs)), x, **_spread(c.attrs))]


register(OpDef("prod", _reduce_shape, _prod_kernel, arity=1, label_attrs=("axis",), grad=_prod_grad,
               dtype=lambda d, a: d[0] if is_float(d[0]) else "int64",
               doc="Product over axis (all axes when None); exact gradient at zeros.", attr_schema=REDUCE_ATTRS))


def _others_product(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """For each entry, the product of the other entries of its reduction group (no division)."""
    keep = tuple(i for i in range(x.ndim) if i not in axes)
    xt = np.transpose(x, keep + axes)
    flat = xt.reshape((*xt.shape[:len(keep)], -1))
    left = np.ones_like(flat)
    right = np.ones_like(flat)
    if flat.shape[-1] > 1:
        np.cumprod(flat[..., :-1], axis=-1, out=left[..., 1:])
        right[..., :-1] = np.cumprod(flat[..., :0:-1], axis=-1)[..., ::-1]
    return np.transpose((left * right).reshape(xt.shape), np.argsort(keep + axes))


def _prod_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axes = norm_axes(attrs.get("axis"), len(out_shape))

    def prod_grad(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        np.multiply(g, _others_product(x, axes), out=out)

    return prod_grad


register(OpDef("prod_grad", lambda s, a: s[1], _prod_grad_kernel, arity=2, nondiff=(1,), label_attrs=("axis",),
               doc="g times the product of the other entries of x's reduction group (the gradient of prod).",
               attr_schema=REDUCE_ATTRS))


# -- var and std -----------------------------------------------------------------------------------
def _correction(attrs: dict[str, Any]) -> float:
    return float(attrs.get("correction", 1))


def _moment_kernel(fn: Any):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        axes, keepdims, ddof = norm_axes(attrs.get("axis"), len(in_shapes[0])), attrs.get("keepdims", False), \
            _correction(attrs)

        def moment(x: np.ndarray, out: np.ndarray) -> None:
            with np.errstate(invalid="ignore", divide="ignore"):  # too few entries: inf or nan, as in PyTorch
                fn(x, axis=axes, ddof=ddof, keepdims=keepdims, out=out)

        return moment

    return factory


def _var_grad_of(c: GradContext, g: Any) -> Any:
    """d var / dx times g (g of the reduced shape): 2 (x - mean) g / (N - correction)."""
    x, spread = c.inputs[0], _spread(c.attrs)
    axes = norm_axes(spread["axis"], len(x.shape))
    centred = x - c.apply("mean", x, axis=spread["axis"], keepdims=True)
    gx = c.apply("broadcast_like", g, x, mean=True, **spread)  # g / N
    dims = [x.shape[i] for i in axes]
    corr = _correction(c.attrs)
    if None not in dims:
        n = math.prod(dims)
        ratio: Any = n / (n - corr) if n != corr else math.inf
    else:  # N is known only at run time: count it
        count = c.apply("sum", c.apply("expand_like", 1.0, x), axis=spread["axis"], keepdims=True)
        ratio = count / (count - corr)
    return centred * gx * ratio * 2.0


register(OpDef("var", _reduce_shape, _moment_kernel(np.var), arity=1, dtype=floating,
               label_attrs=("axis", "correction"), grad=lambda c: [_var_grad_of(c, c.gout)],
               doc="Variance over axis with N - correction in the denominator (correction=1: unbiased, "
                   "PyTorch's default).", attr_schema={**REDUCE_ATTRS, "correction": Float(1.0)}))


def _std_grad(c: GradContext) -> list:
    # d std = d var / (2 std); PyTorch takes it as 0 where std == 0
    zero = c.apply("equal", c.out, 0.0)
    return [_var_grad_of(c, where(c, zero, 0.0, c.gout / (where(c, zero, 1.0, c.out) * 2.0)))]


register(OpDef("std", _reduce_shape, _moment_kernel(np.std), arity=1, dtype=floating,
               label_attrs=("axis", "correction"), grad=_std_grad,
               doc="Standard deviation over axis (sqrt of var with the same correction); gradient 0 where it is 0.",
               attr_schema={**REDUCE_ATTRS, "correction": Float(1.0)}))


# -- logsumexp ---------------------------------------------------------------------------------------
def _logsumexp_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axes = norm_axes(attrs.get("axis"), len(in_shapes[0]))

    def logsumexp(x: np.ndarray, out: np.ndarray) -> None:
        m = np.max(x, axis=axes, keepdims=True) if x.size else np.zeros([1] * x.ndim, x.dtype)
        m = np.where(np.isfinite(m), m, 0)  # all -inf stays -inf; an inf gives inf
        with np.errstate(divide="ignore"):
            total = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        np.copyto(out, total.reshape(out.shape))

    return logsumexp


def _logsumexp_grad(c: GradContext) -> list:
    x, spread = c.inputs[0], _spread(c.attrs)
    weights = c.apply("exp", x - c.apply("broadcast_like", c.out, x, **spread))  # softmax over the axes
    return [c.apply("broadcast_like", c.gout, x, **spread) * weights]


register(OpDef("logsumexp", _reduce_shape, _logsumexp_kernel, arity=1, dtype=floating, label_attrs=("axis",),
               grad=_logsumexp_grad, doc="log(sum(exp(x))) over axis, computed without overflow.",
               attr_schema=REDUCE_ATTRS))


# -- scans --------------------------------------------------------------------------------------------
def _scan_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,), axis = shapes, attrs.get("axis")
    if not isinstance(axis, int) or not -len(x) <= axis < len(x):
        fail(f"a scan needs one axis in range for {x}, got {axis}")
    return x


def _cumsum_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis, reverse = attrs["axis"] % max(len(out_shape), 1), attrs.get("reverse", False)

    def cumsum(x: np.ndarray, out: np.ndarray) -> None:
        if reverse:
            np.copyto(out, np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis))
        else:
            np.cumsum(x, axis=axis, out=out)

    return cumsum


register(OpDef(
    "cumsum", _scan_shape, _cumsum_kernel, arity=1, label_attrs=("axis", "reverse"),
    dtype=lambda d, a: d[0] if is_float(d[0]) else "int64",
    grad=lambda c: [c.apply("cumsum", c.gout, axis=c.attrs["axis"], reverse=not c.attrs.get("reverse", False))],
    doc="Running sum along axis (from the end when reverse=True).", attr_schema={"axis": Int(), "reverse": Bool(False)},
))


def _cumprod_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = attrs["axis"] % max(len(out_shape), 1)

    def cumprod(x: np.ndarray, out: np.ndarray) -> None:
        np.cumprod(x, axis=axis, out=out)

    return cumprod


def _cumprod_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    axis = attrs["axis"] % max(len(out_shape), 1)

    def cumprod_grad(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        # grad_i = E_i * S_i with E_i = prod_{k<i} x_k and S_i = g_i + x_{i+1} S_{i+1}: no division, so
        # exact at zeros.
        gm, xm, om = (np.moveaxis(a, axis, 0) for a in (g, x, out))
        n = xm.shape[0]
        if n == 0:
            return
        s = np.array(gm[n - 1], dtype=dtype)
        om[n - 1] = s
        for i in range(n - 2, -1, -1):
            s = gm[i] + xm[i + 1] * s
            om[i] = s
        exclusive = np.ones_like(xm[0])
        for i in range(n):
            om[i] *= exclusive
            exclusive = exclusive * xm[i]

    return cumprod_grad


register(OpDef("cumprod", _scan_shape, _cumprod_kernel, arity=1, label_attrs=("axis",),
               dtype=lambda d, a: d[0] if is_float(d[0]) else "int64",
               grad=lambda c: [c.apply("cumprod_grad", c.gout, c.inputs[0], axis=c.attrs["axis"])],
               doc="Running product along axis; exact gradient at zeros.", attr_schema={"axis": Int()}))
register(OpDef("cumprod_grad", lambda s, a: s[1], _cumprod_grad_kernel, arity=2, nondiff=(1,), label_attrs=("axis",),
               doc="The gradient of cumprod along axis for incoming gradient g (no division by x).",
               attr_schema={"axis": Int()}))
