"""Attention layers: MultiheadAttention (PyTorch's arguments and weight layout) and positional embeddings.

These are compositions: one call adds a handful of nodes (projections, the fused attention op, the
output projection), named under the layer's name (``mha/...``) so pictures can group them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from graphdl.errors import GraphError, ShapeError
from graphdl.graph import constant
from graphdl.layers.base import Layer
from graphdl.layers.dropout import Dropout
from graphdl.tensor import Tensor


@contextmanager
def scoped(layer: Layer) -> Iterator[None]:
    """Name the nodes a composite layer adds ``<layer>/<op>``."""
    g = layer.graph
    saved = g.scope
    g.scope = f"{saved}{layer.name}/"
    try:
        yield
    finally:
        g.scope = saved


def _mask_value(layer: Layer, mask: Any, what: str, disallow_when_true: bool = True) -> Tensor | None:
    """A float additive mask (0 or -inf) from a bool mask (True = not allowed, PyTorch's MHA convention) or
    an additive float mask, given as an array or a graph node."""
    if mask is None:
        return None
    g = layer.graph
    if not isinstance(mask, Tensor):
        arr = np.asarray(mask)
        if arr.dtype == np.bool_:
            arr = np.where(arr if disallow_when_true else ~arr, -np.inf, 0.0)
        return constant(arr.astype(g.dtype))
    if mask.dtype == "bool":
        return g.apply("where", [mask, -math.inf, 0.0])
    if mask.dtype != g.dtype:
        raise GraphError(f"{type(layer).__name__} '{layer.name}': {what} is {mask.dtype}; use bool or {g.dtype}")
    return mask


class MultiheadAttention(Layer):
    """Multi-head attention as ``torch.nn.MultiheadAttention``: same arguments, parameter names and layouts
    (``in_proj_weight`` (3E, E) or ``q/k/v_proj_weight`` when kdim/vdim differ, ``in_proj_bias`` (3E,),
    ``out_proj.weight`` (E, E), ``out_proj.bias`` (E,)), initialised as PyTorch does.

    ``layer(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(output, weights or None)``. Bool masks mean
    True = not allowed (PyTorch's convention here); float masks are added to the scores. With
    ``need_weights=False`` the fused attention op runs (no L x S weights kept).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = False,
                 name: str | None = None) -> None:
        embed_dim, num_heads = self._count("embed_dim", embed_dim), self._count("num_heads", num_heads)
        dropout, bias = self._fraction("dropout", dropout), self._flag("bias", bias)
        batch_first = self._flag("batch_first", batch_first)
        super().__init__(name)
        if embed_dim % num_heads:
            raise GraphError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else self._count("kdim", kdim)
        self.vdim = embed_dim if vdim is None else self._count("vdim", vdim)
        self.batch_first, self.dropout = batch_first, float(dropout)
        rng = self.graph.rng
        E = embed_dim

        def xavier(rows: int, cols: int, fan: tuple[int, int]) -> np.ndarray:
            bound = math.sqrt(6.0 / (fan[0] + fan[1]))
            return rng.uniform(-bound, bound, (rows, cols))

        self.same_dim = self.kdim == E and self.vdim == E
        if self.same_dim:
            self.add_param("in_proj_weight", xavier(3 * E, E, (3 * E, E)))
        else:
            self.add_param("q_proj_weight", xavier(E, E, (E, E)))
            self.add_param("k_proj_weight", xavier(E, self.kdim, (E, self.kdim)))
            self.add_param("v_proj_weight", xavier(E, self.vdim, (E, self.vdim)))
        if bias:
            self.add_param("in_proj_bias", np.zeros(3 * E))
        bound = 1.0 / math.sqrt(E)
        self.add_param("out_proj.weight", rng.uniform(-bound, bound, (E, E)))
        if bias:
            self.add_param("out_proj.bias", np.zeros(E))
        self.attn_dropout = Dropout(self.dropout, name=f"{self.name}.attn_dropout") if self.dropout else None

    def _project(self, x: Tensor, which: int) -> Tensor:
        g, E = self.graph, self.embed_dim
        rows = {"axis": 0, "start": which * E, "stop": (which + 1) * E}
        if self.same_dim:
            w = g.apply("slice", [self.params["in_proj_weight"]], rows)
        else:
            w = self.params[("q_proj_weight", "k_proj_weight", "v_proj_weight")[which]]
        y = g.apply("matmul", [x, w], {"transpose_b": True})
        if "in_proj_bias" in self.params:
            b = g.apply("slice", [self.params["in_proj_bias"]], rows)
            y = y + b
        return y

    def _heads(self, x: Tensor) -> Tensor:
        """(N, T, E) -> (N, H, T, Dh)."""
        n, t = x.shape[0], x.shape[1]
        x = self.graph.apply("reshape", [x], {"shape": (-1 if n is None else n, t, self.num_heads, self.head_dim)})
        return self.graph.apply("transpose", [x], {"axes": (0, 2, 1, 3)})

    def __call__(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Any = None,
                 need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                 is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        g = self.graph
        for what, t, d in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.ndim != 3 or t.shape[-1] != d:
                layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
                raise ShapeError(f"MultiheadAttention '{self.name}': {what} must be {layout} with E = {d}, got "
                                 f"{t.shape}")
        self.graph.reserved.discard(self.name)
        self.calls += 1
        with scoped(self):
            if not self.batch_first:  # (L, N, E) -> (N, L, E)
                query, key, value = (g.apply("transpose", [t], {"axes": (1, 0, 2)}) for t in (query, key, value))
            L, S = query.shape[1], key.shape[1]
            q, k, v = (self._heads(self._project(t, i)) for i, t in enumerate((query, key, value)))
            mask = _mask_value(self, attn_mask, "attn_mask")
            if mask is None and is_causal:
                if L is None or S is None:
                    raise ShapeError(f"MultiheadAttention '{self.name}': is_causal needs known sequence lengths")
                mask = constant(np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(g.dtype))
            if mask is not None and mask.ndim == 3:  # (N*H, L, S) -> (N, H, L, S)
                mask = g.apply("reshape", [mask], {"shape": (-1, self.num_heads, L, S)})
            kpm = _mask_value(self, key_padding_mask, "key_padding_mask")
            if kpm is not None:  # (N, S) -> (N, 1, 1, S)
                kpm = g.apply("reshape", [kpm], {"shape": (-1, 1, 1, S)})
                mask = kpm if mask is None else mask + kpm
            weights = None
            if need_weights or (self.attn_dropout is not None):
                scale = 1.0 / math.sqrt(self.head_dim)
                s = g.apply("matmul", [q, k], {"transpose_b": True}) * scale
                if mask is not None:
                    s = s + mask
                p = g.apply("softmax", [s], {"axis": -1})
                if need_weights:
                    weights = g.apply("mean", [p], {"axis": 1, "keepdims": False}) if average_attn_weights else p
                if self.attn_dropout is not None:
                    p = self.attn_dropout(p)
                o = g.apply("matmul", [p, v])
            else:
                o = g.apply_multi("attention", [q, k, v, *([mask] if mask is not None else [])],
                                  {"causal": False, "scale": None})[0]
            n = o.shape[0]
            o = g.apply("transpose", [o], {"axes": (0, 2, 1, 3)})
            o = g.apply("reshape", [o], {"shape": (-1 if n is None else n, L, self.embed_dim)})
            out = g.apply("matmul", [o, self.params["out_proj.weight"]], {"transpose_b": True})
            if "out_proj.bias" in self.params:
                out = out + self.params["out_proj.bias"]
            if not self.batch_first:
                out = g.apply("transpose", [out], {"axes": (1, 0, 2)})
        return out, weights


class PositionalEmbedding(Layer):
    """Adds a learned position vector to each step of a (N, T, d) sequence: ``W`` (max_len, d) ~ N(0, 1)."""

    def __init__(self, max_len: int, embedding_dim: int, name: str | None = None) -> None:
        max_len, embedding_dim = self._count("max_len", max_len), self._count("embedding_dim", embedding_dim)
        super().__init__(name)
        self.max_len, self.dim = max_len, embedding_dim
        self.add_param("W", self.graph.rng.standard_normal((max_len, embedding_dim)))

    def _table(self) -> Tensor:
        return self.params["W"]

    def __call__(self, x: Tensor) -> Tensor:
        t = x.shape[-2] if x.ndim >= 2 else None
        if x.ndim < 2 or x.shape[-1] != self.dim or t is None or t > self.max_len:
            raise ShapeError(f"{type(self).__name__} '{self.name}': input must be (..., T, {self.dim}) with a known "
                             f"T <= max_len {self.max_len}; got {x.shape}")
        self.graph.reserved.discard(self.name)
        self.calls += 1
        with scoped(self):
            rows = self.graph.apply("slice", [self._table()], {"axis": 0, "start": 0, "stop": t})
            return x + rows


class SinusoidalPositionalEncoding(PositionalEmbedding):
    """Adds the fixed sin/cos position table of "Attention Is All You Need" (a constant, not trained)."""

    def __init__(self, max_len: int, embedding_dim: int, name: str | None = None) -> None:
        max_len, embedding_dim = self._count("max_len", max_len), self._count("embedding_dim", embedding_dim)
        Layer.__init__(self, name)
        self.max_len, self.dim = max_len, embedding_dim
        pos = np.arange(max_len)[:, None]
        div = np.exp(np.arange(0, embedding_dim, 2) * (-math.log(10000.0) / embedding_dim))
        table = np.zeros((max_len, embedding_dim))
        table[:, 0::2] = np.sin(pos * div)
        table[:, 1::2] = np.cos(pos * div)[:, : embedding_dim // 2]
        self.table = constant(table.astype(self.graph.dtype), name=f"{self.name}.table")

    def _table(self) -> Tensor:
        return self.table


