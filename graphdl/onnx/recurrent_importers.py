"""ONNX importers of the recurrent ops RNN, GRU and LSTM, as graphdl's recurrent layers (graphdl/layers/
recurrent.py: one hoisted input projection and one scan per direction); graphdl/onnx/importers.py merges
``RECURRENT_IMPORTERS`` into its table.

ONNX stacks each direction's gate weights in another order than PyTorch, whose semantics the layers have:
LSTM's i, o, f, c become i, f, c, o; GRU's z, r, h become r, z, h. The weights become the layer's
parameters (trainable, named ``<node>.weight_ih_l0`` ...). Imported as ONNX defines them: ``layout`` 0 or 1,
forward or bidirectional, zero or given initial states (zeros of a run-time batch size come as
``ImportContext.zeros``). Refused by name: other activations, ``clip``, ``input_forget``, peepholes,
``sequence_lens``, a reverse-only direction, GRU with ``linear_before_reset=0`` (not PyTorch's cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl import ops
from graphdl.graph import Tensor
from graphdl.onnx.import_context import ImportContext, Importer
from graphdl.onnx.tables import registrar

RECURRENT_IMPORTERS: dict[str, Importer] = {}
_importer = registrar(RECURRENT_IMPORTERS)

#: Per op: the layer class name, ONNX's gate blocks in PyTorch's order, and ONNX's default activations.
_SPECS = {
    "RNN": ("RNN", (0,), ("Tanh",)),
    "GRU": ("GRU", (1, 0, 2), ("Sigmoid", "Tanh")),
    "LSTM": ("LSTM", (0, 2, 3, 1), ("Sigmoid", "Tanh", "Tanh")),
}


def _reorder(w: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """Rows of one direction's stacked gates (gates * hidden, ...) from ONNX's order into PyTorch's."""
    parts = np.split(w, len(blocks), axis=0)
    return np.concatenate([parts[b] for b in blocks], axis=0)


def _check_attrs(ctx: ImportContext, op: str, a: dict[str, Any]) -> tuple[int, bool, str | None]:
    """(hidden_size, bidirectional, RNN nonlinearity) after refusing what the layers do not compute."""
    defaults = [x.lower() for x in _SPECS[op][2]]
    acts = [(x.decode() if isinstance(x, bytes) else str(x)).lower() for x in a.get("activations", [])]
    nonlinearity = None
    if op == "RNN":
        if acts[:1] not in ([], ["tanh"], ["relu"]) or any(x != acts[0] for x in acts):
            raise ctx.refuse(f"activations {acts} (graphdl's RNN uses tanh or relu in every direction)")
        nonlinearity = "relu" if acts[:1] == ["relu"] else "tanh"
    elif acts and acts != defaults * (len(acts) // len(defaults)):
        raise ctx.refuse(f"activations {acts} (graphdl's {op} uses {defaults} in every direction)")
    for attr in ("clip", "activation_alpha", "activation_beta"):
        if attr in a:
            raise ctx.refuse(f"attribute '{attr}' is not supported")
    if a.get("input_forget", 0):
        raise ctx.refuse("input_forget=1 (coupled input and forget gates) is not supported")
    if op == "GRU" and not a.get("linear_before_reset", 0):
        raise ctx.refuse("linear_before_reset=0 (the reset gate applied before the recurrent product) is not "
                         "PyTorch's GRU cell, which graphdl computes; export with linear_before_reset=1")
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise ctx.refuse(f"direction '{direction}' (graphdl runs forward or bidirectional layers)")
    if "hidden_size" not in a:
        raise ctx.refuse("attribute 'hidden_size' is required")
    return int(a["hidden_size"]), direction == "bidirectional", nonlinearity


def _initial(ctx: ImportContext, i: int, layout: int) -> Tensor | None:
    """Initial state input ``i`` as the layer takes it, (directions, N, H); None for zeros."""
    if not ctx.has(i) or ctx.node.input[i] in ctx.zeros:
        return None
    value = ctx.array(ctx.node.input[i])
    if value is not None and not np.any(value):
        return None
    h = ctx.input(i)
    return ops.transpose(h, (1, 0, 2)) if layout else h


@_importer("RNN", "GRU", "LSTM")
def _recurrent(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl import layers

    op = node.op_type
    kind, blocks, _ = _SPECS[op]
    hidden, bidirectional, nonlinearity = _check_attrs(ctx, op, a)
    if ctx.has(4) and node.input[4] not in ctx.zeros:
        raise ctx.refuse("sequence_lens (sequences of several lengths in one batch) is not supported; pad them "
                         "to one length")
    if op == "LSTM" and ctx.has(7):
        raise ctx.refuse("peephole weights (input P) are not supported")
    layout = int(a.get("layout", 0))
    x = ctx.input(0)
    if len(x.shape) != 3 or x.shape[2] is None:
        raise ctx.refuse(f"the input must be 3-d with a known feature size, got {x.shape}")
    w, r = ctx.const(1), ctx.const(2)
    b = ctx.const(3) if ctx.has(3) else None
    directions, rows = 2 if bidirectional else 1, len(blocks) * hidden
    if w.shape != (directions, rows, x.shape[2]) or r.shape != (directions, rows, hidden) or (
            b is not None and b.shape != (directions, 2 * rows)):
        raise ctx.refuse(f"weights W {w.shape}, R {r.shape}, B {None if b is None else b.shape} do not fit "
                         f"{directions} direction(s), hidden_size {hidden} and {x.shape[2]} input features")
    init = [_initial(ctx, 5, layout)] + ([_initial(ctx, 6, layout)] if op == "LSTM" else [])
    with ctx.graph:
        extra = {"nonlinearity": nonlinearity} if op == "RNN" else {}
        layer = getattr(layers, kind)(int(x.shape[2]), hidden, bias=b is not None, batch_first=bool(layout),
                                      bidirectional=bidirectional, name=ctx.name(), **extra)
        values = ctx.graph.values
        for d, sfx in enumerate(layer._suffixes(0)):
            values[layer.params[f"weight_ih{sfx}"].name][...] = _reorder(w[d], blocks)
            values[layer.params[f"weight_hh{sfx}"].name][...] = _reorder(r[d], blocks)
            if b is not None:
                values[layer.params[f"bias_ih{sfx}"].name][...] = _reorder(b[d, :rows], blocks)
                values[layer.params[f"bias_hh{sfx}"].name][...] = _reorder(b[d, rows:], blocks)
        hx = init[0] if op != "LSTM" else (None if all(h is None for h in init) else tuple(init))
        if op == "LSTM" and hx is not None and None in hx:
            zeros = ctx.graph.apply("expand_like", [0.0, next(h for h in hx if h is not None)])
            hx = tuple(zeros if h is None else h for h in hx)
        y, states = layer(x, hx)
        # ONNX's Y is (T, directions, N, H) (layout 0) or (N, T, directions, H) (layout 1); the layer's
        # output joins the directions on its last axis
        per_direction = [y[..., d * hidden:(d + 1) * hidden] for d in range(directions)] if bidirectional else [y]
        split = ops.stack(per_direction, 2)
        y_out = ops.transpose(split, (0, 2, 1, 3)) if not layout else split
        finals = [states] if op != "LSTM" else list(states)
        finals = [ops.transpose(f, (1, 0, 2)) for f in finals] if layout else finals
    return [y_out, *finals]
