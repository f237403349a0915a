"""Recurrent layers: RNN, LSTM and GRU with PyTorch's arguments, parameter names, layouts and gate order.

Each layer and direction is one ``gd.ops.scan`` node. The input projection ``x @ W_ih^T + b`` of all time
steps is one GEMM before the scan (as cuDNN and PyTorch do), so the loop body only multiplies the hidden
state by ``W_hh^T`` and applies the gates. Time-major inside: ``batch_first`` inputs are transposed once.
"""

from __future__ import annotations

import math
from typing import Any

from graphdl import ops
from graphdl.errors import GraphError, ShapeError
from graphdl.ir import format_shape
from graphdl.layers.attention import scoped
from graphdl.layers.base import Layer
from graphdl.layers.dropout import Dropout
from graphdl.tensor import Tensor


class _Recurrent(Layer):
    """Shared by RNN, LSTM and GRU: parameters, input checks, stacking of layers and directions."""

    gates = 1
    states = 1  # tensors carried per layer and direction: h (RNN, GRU) or (h, c) (LSTM)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 name: str | None = None) -> None:
        kind = type(self).__name__
        for what, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise GraphError(f"{kind}: {what} must be a positive int, got {v!r}")
        dropout = self._fraction("dropout", dropout)
        bias, batch_first = self._flag("bias", bias), self._flag("batch_first", batch_first)
        bidirectional = self._flag("bidirectional", bidirectional)
        super().__init__(name)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.directions = 2 if bidirectional else 1
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch: every weight and bias ~ U(-1/sqrt(h), 1/sqrt(h))
        rng, rows = self.graph.rng, self.gates * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.directions
            for sfx in self._suffixes(layer):
                self.add_param(f"weight_ih{sfx}", rng.uniform(-bound, bound, (rows, width)))
                self.add_param(f"weight_hh{sfx}", rng.uniform(-bound, bound, (rows, hidden_size)))
                if bias:
                    self.add_param(f"bias_ih{sfx}", rng.uniform(-bound, bound, (rows,)))
                    self.add_param(f"bias_hh{sfx}", rng.uniform(-bound, bound, (rows,)))
        self.drop = Dropout(dropout, name=f"{self.name}.dropout") if dropout and num_layers > 1 else None

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.directions]

    def _fail(self, what: str, fix: str) -> ShapeError:
        return ShapeError(f"{type(self).__name__} '{self.name}': {what}; {fix}")

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise GraphError(f"{type(self).__name__} '{self.name}' takes a graph node as input, got "
                             f"{type(x).__name__}")
        layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
        if x.ndim not in (2, 3):
            raise self._fail(f"input '{x.name}' has shape {format_shape(x.shape)}, expected 3-d {layout} or 2-d "
                             "(T, input_size) unbatched", "reshape the input to that layout")
        if x.shape[-1] is not None and x.shape[-1] != self.input_size:
            raise self._fail(f"input '{x.name}' {format_shape(x.shape)} has {x.shape[-1]} features, expected "
                             f"input_size={self.input_size}", f"feed {layout} with {self.input_size} features or "
                             f"build the layer with input_size={x.shape[-1]}")

    def _check_state(self, h: Any, what: str, batch: int | None, unbatched: bool) -> None:
        if not isinstance(h, Tensor):
            raise GraphError(f"{type(self).__name__} '{self.name}': {what} must be a graph node, got "
                             f"{type(h).__name__}")
        want = (self.directions * self.num_layers, *(() if unbatched else (batch,)), self.hidden_size)
        ok = h.ndim == len(want) and all(a is None or b is None or a == b for a, b in zip(h.shape, want))
        if not ok:
            raise self._fail(f"{what} '{h.name}' has shape {format_shape(h.shape)}, expected "
                             f"{format_shape(want)} (num_layers * num_directions, batch, hidden_size)",
                             f"pass {what} of shape {format_shape(want)} or None for zeros")

    def _cell(self, sfx: str) -> Any:
        """The scan body for one layer and direction: (state, projected x_t) -> (new state, h)."""
        raise NotImplementedError

    def _input_bias(self, sfx: str) -> Tensor | None:
        """The bias added to the hoisted input projection (both biases where they simply add)."""
        return self.params[f"bias_ih{sfx}"] + self.params[f"bias_hh{sfx}"] if self.bias else None

    def _hidden_bias(self, sfx: str) -> Tensor | None:
        """The bias added to h W_hh^T inside the loop (none where it went into the input projection)."""
        return None

    def _project(self, sfx: str, h: Tensor) -> Tensor:
        """h W_hh^T (+ the hidden bias): the loop's one GEMM."""
        p = ops.matmul(h, self.params[f"weight_hh{sfx}"], transpose_b=True)
        b = self._hidden_bias(sfx)
        return p if b is None else p + b

    def _direction(self, x: Tensor, sfx: str, init: list[Tensor | None], reverse: bool) -> tuple[Any, Tensor]:
        """One layer in one direction over time-major x: the hoisted input projection, then one scan;
        returns (final carry, stacked h)."""
        g = self.graph
        xp = g.apply("matmul", [x, self.params[f"weight_ih{sfx}"]], {"transpose_b": True})
        b = self._input_bias(sfx)
        if b is not None:
            xp = xp + b
        if any(s is None for s in init):  # zeros of shape (N, H), N known only at run time
            zero = g.apply("expand_like", [0.0, xp[0, :, : self.hidden_size]])
            init = [zero if s is None else s for s in init]
        return ops.scan(self._cell(sfx), init[0] if self.states == 1 else tuple(init), xp, reverse=reverse)

    def __call__(self, x: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        self._check_input(x)
        unbatched = x.ndim == 2
        batch = None if unbatched else x.shape[0 if self.batch_first else 1]
        parts = (hx,) if self.states == 1 else (hx if hx is not None else (None,) * self.states)
        if self.states > 1 and (not isinstance(parts, tuple | list) or len(parts) != self.states):
            raise GraphError(f"{type(self).__name__} '{self.name}': the initial state must be a tuple (h0, c0) "
                             f"or None, got {type(hx).__name__}")
        names = ("h0", "c0")[: self.states]
        for p, what in zip(parts, names):
            if p is not None:
                self._check_state(p, what, batch, unbatched)
        self.graph.reserved.discard(self.name)
        self.calls += 1
        g = self.graph
        with scoped(self):
            if unbatched:
                x = ops.expand_dims(x, 1)
                parts = tuple(None if p is None else ops.expand_dims(p, 1) for p in parts)
            elif self.batch_first:
                x = g.apply("transpose", [x], {"axes": (1, 0, 2)})
            count = self.directions * self.num_layers
            given = [None if p is None else g.apply_multi("split", [p], {"sizes": (1,) * count, "axis": 0})
                     for p in parts]
            finals: list[list[Tensor]] = [[] for _ in parts]
            for layer in range(self.num_layers):
                if layer and self.drop is not None:
                    x = self.drop(x)
                outs = []
                for d, sfx in enumerate(self._suffixes(layer)):
                    k = layer * self.directions + d
                    carry, ys = self._direction(x, sfx, [None if gv is None else ops.squeeze(gv[k], 0)
                                                         for gv in given], reverse=d == 1)
                    for f, c in zip(finals, (carry,) if self.states == 1 else carry, strict=True):
                        f.append(c)
                    outs.append(ys)
                x = outs[0] if len(outs) == 1 else ops.concat(outs, axis=-1)
            states = [ops.stack(f, 0) for f in finals]
            if unbatched:
                x, states = ops.squeeze(x, 1), [ops.squeeze(s, 1) for s in states]
            elif self.batch_first:
                x = g.apply("transpose", [x], {"axes": (1, 0, 2)})
        return x, states[0] if self.states == 1 else tuple(states)


class RNN(_Recurrent):
    """Elman RNN as ``torch.nn.RNN``: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.

    ``out, h_n = rnn(x, h0=None)`` with x (T, N, input_size) ((N, T, ...) when ``batch_first``, or unbatched
    (T, input_size)), h0 and h_n (num_layers * num_directions, N, hidden_size); out stacks the last layer's h
    (both directions concatenated). Dropout (``dropout`` > 0) acts between layers in training plans only.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 name: str | None = None) -> None:
        self.nonlinearity = self._choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, name)

    def _cell(self, sfx: str) -> Any:
        act = ops.tanh if self.nonlinearity == "tanh" else ops.relu

        def rnn_cell(h: Tensor, xp: Tensor) -> tuple[Tensor, Tensor]:
            h = act(xp + self._project(sfx, h))
            return h, h

        return rnn_cell


class LSTM(_Recurrent):
    """LSTM as ``torch.nn.LSTM`` (gates i, f, g, o stacked in that order in W_ih (4H, in), W_hh (4H, H)).

    ``out, (h_n, c_n) = lstm(x, (h0, c0))`` (or ``lstm(x)`` for zero states); shapes as in :class:`RNN`.
    """

    gates, states = 4, 2

    def _cell(self, sfx: str) -> Any:
        H = self.hidden_size

        def lstm_cell(carry: tuple[Tensor, Tensor], xp: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
            h, c = carry
            i, f, g, o = ops.split(xp + self._project(sfx, h), H, axis=-1)
            c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
            h = ops.sigmoid(o) * ops.tanh(c)
            return (h, c), h

        return lstm_cell


class GRU(_Recurrent):
    """GRU as ``torch.nn.GRU`` (gates r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h). ``out, h_n = gru(x, h0=None)``; shapes as in :class:`RNN`.
    """

    gates = 3

    def _input_bias(self, sfx: str) -> Tensor | None:
        return self.params[f"bias_ih{sfx}"] if self.bias else None

    def _hidden_bias(self, sfx: str) -> Tensor | None:
        # b_hn sits inside r * (W_hn h + b_hn), so b_hh stays with the hidden projection
        return self.params[f"bias_hh{sfx}"] if self.bias else None

    def _cell(self, sfx: str) -> Any:
        H = self.hidden_size

        def gru_cell(h: Tensor, xp: Tensor) -> tuple[Tensor, Tensor]:
            x_rz, x_n = ops.split(xp, (2 * H, H), axis=-1)
            h_rz, h_n = ops.split(self._project(sfx, h), (2 * H, H), axis=-1)
            r, z = ops.split(ops.sigmoid(x_rz + h_rz), H, axis=-1)
            n = ops.tanh(x_n + r * h_n)
            h = n + z * (h - n)
            return h, h

        return gru_cell
