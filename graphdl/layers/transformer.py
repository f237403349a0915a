"""Transformer encoder and decoder layers as ``torch.nn.TransformerEncoderLayer``/``DecoderLayer``.

Same arguments and sub-layer names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
``norm1``..``norm3``); graphdl's Linear stores W as (in, out), the transpose of PyTorch's weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphdl.errors import GraphError
from graphdl.layers.attention import MultiheadAttention, scoped
from graphdl.layers.base import Layer
from graphdl.layers.dense import Linear
from graphdl.layers.dropout import Dropout
from graphdl.layers.norm import LayerNorm
from graphdl.tensor import Tensor


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    from graphdl import ops

    if callable(activation):
        return activation
    if activation == "relu":
        return ops.relu
    if activation == "gelu":
        return ops.gelu
    raise GraphError(f"activation must be 'relu', 'gelu' or a function of a tensor, got {activation!r}")


class _Block(Layer):
    """What both layers share: PyTorch's constructor arguments, self-attention, the feed-forward block and
    the first two norms; ``_extra`` adds what a subclass has more."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 name: str | None = None) -> None:
        if not callable(activation):
            activation = self._choice("activation", activation, ("relu", "gelu"))
        batch_first, bias = self._flag("batch_first", batch_first), self._flag("bias", bias)
        norm_first = self._flag("norm_first", norm_first)
        super().__init__(name)
        self.norm_first = norm_first
        self._common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, bias)
        self.ff_dropout = self.dropout2  # the feed-forward block's residual dropout
        self._extra(d_model, nhead, dropout, layer_norm_eps, batch_first, bias)

    def _extra(self, d_model: int, nhead: int, dropout: float, layer_norm_eps: float, batch_first: bool,
               bias: bool) -> None:
        """Sub-layers beyond the encoder's (none here)."""

    def _sub(self, kind: type, *args: Any, suffix: str, **kw: Any) -> Any:
        return kind(*args, name=f"{self.name}.{suffix}", **kw)

    def _ff(self, x: Tensor) -> Tensor:
        return self.ff_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _drop(self, p: float, suffix: str) -> Callable[[Tensor], Tensor]:
        return self._sub(Dropout, p, suffix=suffix) if p else (lambda t: t)

    def _common(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
                activation: str | Callable[[Tensor], Tensor], layer_norm_eps: float, batch_first: bool,
                bias: bool) -> None:
        self.batch_first = batch_first
        self.self_attn = self._sub(MultiheadAttention, d_model, nhead, dropout=dropout, bias=bias,
                                   batch_first=batch_first, suffix="self_attn")
        self.linear1 = self._sub(Linear, d_model, dim_feedforward, bias=bias, suffix="linear1")
        self.linear2 = self._sub(Linear, dim_feedforward, d_model, bias=bias, suffix="linear2")
        self.norm1 = self._sub(LayerNorm, d_model, eps=layer_norm_eps, suffix="norm1")
        self.norm2 = self._sub(LayerNorm, d_model, eps=layer_norm_eps, suffix="norm2")
        self.dropout = self._drop(dropout, "dropout")
        self.dropout1 = self._drop(dropout, "dropout1")
        self.dropout2 = self._drop(dropout, "dropout2")
        self.activation = _activation(activation)

    def _sa(self, x: Tensor, mask: Any, kpm: Any, causal: bool) -> Tensor:
        out, _ = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=False, is_causal=causal)
        return self.dropout1(out)


class TransformerEncoderLayer(_Block):
    """Self-attention then a feed-forward block, each with a residual connection and LayerNorm
    (after each block, or before it with ``norm_first=True``). ``layer(src, src_mask=None,
    src_key_padding_mask=None, is_causal=False)``."""

    def __call__(self, src: Tensor, src_mask: Any = None, src_key_padding_mask: Any = None,
                 is_causal: bool = False) -> Tensor:
        self.graph.reserved.discard(self.name)
        self.calls += 1
        with scoped(self):
            x = src
            if self.norm_first:
                x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
                return x + self._ff(self.norm2(x))
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
            return self.norm2(x + self._ff(x))


class TransformerDecoderLayer(_Block):
    """Self-attention, attention over ``memory`` (the encoder's output), then a feed-forward block, each with
    a residual connection and LayerNorm. ``layer(tgt, memory, tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``."""

    def _extra(self, d_model: int, nhead: int, dropout: float, layer_norm_eps: float, batch_first: bool,
               bias: bool) -> None:
        self.multihead_attn = self._sub(MultiheadAttention, d_model, nhead, dropout=dropout, bias=bias,
                                        batch_first=batch_first, suffix="multihead_attn")
        self.norm3 = self._sub(LayerNorm, d_model, eps=layer_norm_eps, suffix="norm3")
        self.dropout3 = self._drop(dropout, "dropout3")
        self.ff_dropout = self.dropout3

    def _mha(self, x: Tensor, memory: Tensor, mask: Any, kpm: Any, causal: bool) -> Tensor:
        out, _ = self.multihead_attn(x, memory, memory, attn_mask=mask, key_padding_mask=kpm, need_weights=False,
                                     is_causal=causal)
        return self.dropout2(out)

    def __call__(self, tgt: Tensor, memory: Tensor, tgt_mask: Any = None, memory_mask: Any = None,
                 tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                 tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Tensor:
        self.graph.reserved.discard(self.name)
        self.calls += 1
        with scoped(self):
            x = tgt
            if self.norm_first:
                x = x + self._sa(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
                x = x + self._mha(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
                return x + self._ff(self.norm3(x))
            x = self.norm1(x + self._sa(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            return self.norm3(x + self._ff(x))
