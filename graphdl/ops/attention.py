"""Scaled dot-product attention as one op with its own forward and backward kernels (PyTorch semantics).

``attention(q, k, v[, mask])`` has two outputs: the attended values (..., L, Ev) and the log-sum-exp
of each query's scores (..., L). The backward kernel recomputes the probabilities from q, k and the
log-sum-exp, as FlashAttention does, so nothing of size L x S is kept between the passes; during
each kernel the L x S scores live in one scratch buffer. ``mask`` is boolean (True takes part, as in
``F.scaled_dot_product_attention``) or additive float; ``causal`` masks keys after the query. A
query whose keys are all masked gives NaN, as PyTorch's math kernel does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import Bool, Float
from graphdl.ops.common import broadcast
from graphdl.registry import GradContext, OpDef, fail, register

ATTENTION_ATTRS = {"causal": Bool(False), "scale": Float(None, nullable=True)}


def _check(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    q, k, v = shapes[:3]
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q):
        fail(f"q, k, v must have the same rank >= 2 ((..., L, E), (..., S, E), (..., S, Ev)); got {q}, {k}, {v}")
    lead = broadcast(q[:-2], k[:-2], v[:-2])
    if None not in (q[-1], k[-1]) and q[-1] != k[-1]:
        fail(f"queries have {q[-1]} features but keys {k[-1]}", "project q and k to the same size")
    if None not in (k[-2], v[-2]) and k[-2] != v[-2]:
        fail(f"{k[-2]} keys but {v[-2]} values", "give one value per key")
    if len(shapes) == 4:
        mask = shapes[3]
        if len(mask) > len(q):
            fail(f"mask {mask} has more dimensions than the scores (..., L, S)")
        broadcast(mask, (*lead, q[-2], k[-2]))
    return lead


def _shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    lead = _check(shapes, attrs)
    q, v = shapes[0], shapes[2]
    return ((*lead, q[-2], v[-1]), (*lead, q[-2]))


def _dtype(dtypes: tuple, attrs: dict[str, Any]) -> tuple:
    if len(set(dtypes[:3])) != 1 or dtypes[0] not in ("float32", "float64"):
        fail(f"q, k, v have dtypes {dtypes[:3]}; use one float dtype")
    if len(dtypes) == 4 and dtypes[3] not in ("bool", dtypes[0]):
        fail(f"the mask is {dtypes[3]}; use a bool mask (True takes part) or an additive {dtypes[0]} mask")
    return (dtypes[0], dtypes[0])


def _scale(attrs: dict[str, Any], e: int) -> float:
    s = attrs.get("scale")
    return 1.0 / math.sqrt(e) if s is None else float(s)


def _bias_fn(attrs: dict, in_shapes: tuple, dtype: np.dtype):
    """A function adding the mask (and the causal mask) to scores in place; None if there is none."""
    L, S = in_shapes[0][-2], in_shapes[1][-2]
    bias = None
    if attrs.get("causal"):
        bias = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(dtype)
    has_mask = len(in_shapes) == 4

    def add(scores: np.ndarray, mask: np.ndarray | None) -> None:
        if bias is not None:
            scores += bias
        if has_mask:
            if mask.dtype == np.bool_:
                np.copyto(scores, -np.inf, where=~mask)
            else:
                scores += mask

    return add if (bias is not None or has_mask) else None


def _lead(in_shapes: tuple) -> tuple:
    return tuple(np.broadcast_shapes(*(s[:-2] for s in in_shapes[:3])))


def _split(in_shapes: tuple, has_mask: bool) -> tuple[int, bool]:
    """(n, slice the mask): the kernels work on slices of the first axis (split over threads) when q, k
    and v share it (0: they broadcast, so one call on everything); the mask is sliced when it has that axis."""
    q, k, v = in_shapes[:3]
    n = q[0] if len(q) >= 3 and q[0] == k[0] == v[0] else 0
    if not threads.splits(math.prod(q[:-1]) * k[-2]):  # too little work to hand to threads
        n = 0
    mask = in_shapes[3] if has_mask else ()
    return n, bool(n) and len(mask) == len(q) and mask[0] == n


def _run(part: Callable[[slice], None], n: int) -> None:
    if n:
        threads.split_over_threads(part, n)
    else:
        part(slice(None))


def _forward_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    q_shape, k_shape = in_shapes[0], in_shapes[1]
    dtype = np.dtype(dtypes[0])
    scale = _scale(attrs, q_shape[-1])
    scores = np.empty((*_lead(in_shapes), q_shape[-2], k_shape[-2]), dtype=dtype)
    rowmax = np.empty((*scores.shape[:-1], 1), dtype=dtype)
    total = np.empty_like(rowmax)
    add_mask = _bias_fn(attrs, in_shapes, dtype)
    n, slice_mask = _split(in_shapes, len(in_shapes) == 4)

    def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *rest: np.ndarray) -> None:
        *mask, out, lse = rest

        def part(i: slice) -> None:
            s, m, t = scores[i], rowmax[i], total[i]
            # the same operations as the spelled-out form (exported to ONNX): equal to the last bit
            np.matmul(q[i], np.swapaxes(k[i], -1, -2), out=s)
            np.multiply(s, scale, out=s)
            if add_mask is not None:
                add_mask(s, (mask[0][i] if slice_mask else mask[0]) if mask else None)
            np.max(s, axis=-1, keepdims=True, out=m)
            with np.errstate(invalid="ignore"):
                np.subtract(s, m, out=s)
                np.exp(s, out=s)
            np.sum(s, axis=-1, keepdims=True, out=t)
            np.log(t[..., 0], out=lse[i])
            np.add(lse[i], m[..., 0], out=lse[i])
            np.divide(s, t, out=s)
            np.matmul(s, v[i], out=out[i])

        _run(part, n)

    return threads.splitting(attention, bool(n))


def _backward_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    q_shape, k_shape = in_shapes[0], in_shapes[1]
    dtype = np.dtype(dtypes[0])
    scale = _scale(attrs, q_shape[-1])
    has_mask = len(in_shapes) == 8
    lead = _lead(in_shapes)
    p = np.empty((*lead, q_shape[-2], k_shape[-2]), dtype=dtype)
    dp = np.empty_like(p)
    prod = np.empty((*lead, q_shape[-2], in_shapes[2][-1]), dtype=dtype)
    rowsum = np.empty((*lead, q_shape[-2], 1), dtype=dtype)
    add_mask = _bias_fn(attrs, in_shapes[:4] if has_mask else in_shapes[:3], dtype)
    n, slice_mask = _split(in_shapes, has_mask)

    def attention_grad(q: np.ndarray, k: np.ndarray, v: np.ndarray, *rest: np.ndarray) -> None:
        if has_mask:
            mask, out, lse, gout, glse, dq, dk, dv = rest
        else:
            (out, lse, gout, glse, dq, dk, dv), mask = rest, None

        def part(i: slice) -> None:
            pi, di, rs = p[i], dp[i], rowsum[i]
            np.matmul(q[i], np.swapaxes(k[i], -1, -2), out=pi)  # the probabilities, from the log-sum-exp
            np.multiply(pi, scale, out=pi)
            if add_mask is not None:
                add_mask(pi, mask[i] if slice_mask else mask)
            with np.errstate(invalid="ignore"):
                np.subtract(pi, lse[i][..., None], out=pi)
                np.exp(pi, out=pi)
            _matmul_into(np.swapaxes(pi, -1, -2), gout[i], dv[i])
            np.matmul(gout[i], np.swapaxes(v[i], -1, -2), out=di)
            np.multiply(gout[i], out[i], out=prod[i])
            np.sum(prod[i], axis=-1, keepdims=True, out=rs)
            np.subtract(rs, glse[i][..., None], out=rs)
            np.subtract(di, rs, out=di)  # D_i = sum_j dO_ij O_ij = sum_j P_ij dP_ij; d lse_i / d s_ij = P_ij
            np.multiply(di, pi, out=di)
            np.multiply(di, scale, out=di)
            _matmul_into(di, k[i], dq[i])
            _matmul_into(np.swapaxes(di, -1, -2), q[i], dk[i])

        _run(part, n)

    return threads.splitting(attention_grad, bool(n))


def _sum_to(full: np.ndarray, out: np.ndarray) -> None:
    """Write ``full`` into ``out``, summing over the leading dimensions that ``out`` was broadcast along."""
    extra = full.ndim - out.ndim
    axes = tuple(range(extra)) + tuple(i + extra for i, d in enumerate(out.shape)
                                       if d == 1 and full.shape[i + extra] != 1)
    np.copyto(out, full.sum(axis=axes, keepdims=True).reshape(out.shape) if axes else full)


def _matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a @ b, summed over broadcast dimensions; written in place when the shapes agree."""
    if np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) == out.shape[:-2]:
        np.matmul(a, b, out=out)
    else:
        _sum_to(np.matmul(a, b), out)


def _grad(c: GradContext) -> list:
    gout, glse = (g if g is not None else c.apply("expand_like", 0.0, o) for g, o in zip(c.gouts, c.outs))
    q, k, v, *mask = c.inputs
    dq, dk, dv = c.out.graph.apply_multi("attention_grad", [q, k, v, *mask, c.outs[0], c.outs[1], gout, glse],
                                         c.attrs)
    return [dq, dk, dv, *([None] if mask else [])]


register(OpDef(
    "attention", _shape, _forward_kernel, grad=_grad, dtype=_dtype, multi_output=True, nondiff=(3,),
    label_attrs=("causal",),
    doc="Scaled dot-product attention softmax(q k^T * scale + mask) v, and each query's log-sum-exp "
        "(torch.nn.functional.scaled_dot_product_attention).", attr_schema=ATTENTION_ATTRS,
))


def _grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return tuple(shapes[:3])


register(OpDef(
    "attention_grad", _grad_shape, _backward_kernel, dtype=lambda d, a: (d[0], d[0], d[0]), multi_output=True,
    doc="Gradients of attention w.r.t. q, k and v from the output, the log-sum-exp and the gradients of both "
        "(probabilities recomputed from the log-sum-exp, not stored).", attr_schema=ATTENTION_ATTRS,
))


def scaled_dot_product_attention(q: Any, k: Any, v: Any, attn_mask: Any = None, is_causal: bool = False,
                                 dropout_p: float = 0.0, scale: float | None = None) -> Any:
    """``torch.nn.functional.scaled_dot_product_attention``: softmax(q k^T * scale + mask) v over the last two
    dimensions ((..., L, E), (..., S, E), (..., S, Ev) -> (..., L, Ev)). ``attn_mask`` is boolean (True takes
    part) or an additive float array/node broadcastable to (..., L, S); ``scale`` defaults to 1/sqrt(E).
    ``dropout_p`` drops attention weights in training plans (then the weights are built from ops, not
    the fused kernel); as in PyTorch, ``attn_mask`` and ``is_causal`` are exclusive."""
    from graphdl.errors import GraphError
    from graphdl.graph import constant
    from graphdl.ops.api import _node

    what = "scaled_dot_product_attention"
    q, k, v = _node(q, f"{what}: q"), _node(k, f"{what}: k"), _node(v, f"{what}: v")
    if not isinstance(is_causal, bool | np.bool_):
        raise GraphError(f"{what}: is_causal must be True or False, got {is_causal!r:.40}")
    if attn_mask is not None and is_causal:
        raise GraphError(f"{what}: pass attn_mask or is_causal=True, not both (as in PyTorch)")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, int | float | np.number) or not 0.0 <= dropout_p < 1.0:
        raise GraphError(f"{what}: dropout_p must be a number in [0, 1), got {dropout_p!r:.40}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float | np.number)):
        raise GraphError(f"{what}: scale must be a number or None, got {scale!r:.40}")
    if attn_mask is not None and not hasattr(attn_mask, "graph"):
        mask = np.asarray(attn_mask)
        if mask.dtype != np.bool_ and not np.issubdtype(mask.dtype, np.number):
            raise GraphError(f"{what}: attn_mask must be a boolean or numeric array or a node, got {mask.dtype} "
                             f"{attn_mask!r:.40}")
        attn_mask = constant(mask if mask.dtype == np.bool_ else mask.astype(q.dtype))
    attrs = {"causal": bool(is_causal), "scale": None if scale is None else float(scale)}
    if dropout_p == 0.0:
        inputs = [q, k, v] + ([attn_mask] if attn_mask is not None else [])
        return q.graph.apply_multi("attention", inputs, attrs)[0]
    from graphdl.layers.dropout import Dropout
    from graphdl.ops import matmul, softmax, where

    s = matmul(q, k, transpose_b=True) * _scale(attrs, q.shape[-1])
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        attn_mask = constant(np.tril(np.ones((L, S), dtype=bool)))
    if attn_mask is not None:
        s = where(attn_mask, s, -np.inf) if attn_mask.dtype == "bool" else s + attn_mask
    return matmul(Dropout(dropout_p)(softmax(s, axis=-1)), v)
