"""The LSTM benchmark workload, built the same way for graphdl and PyTorch.

``lstm_train``: one LSTM layer (input 256, hidden 256) over (T=64, batch 32, 256) float32 time-major
inputs, loss = mean of the squared outputs, one SGD step. PyTorch runs its fused ``nn.LSTM``; graphdl its
``layers.LSTM`` (one scan node, input projection hoisted). Both start from the same weights (PyTorch's
initialisation, copied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import torch_sgd_step, workload_pair

INPUT, HIDDEN, SEQ, BATCH = 256, 256, 64, 32
LR = 0.01
TITLES = {"lstm_train": f"LSTM (input {INPUT}, hidden {HIDDEN}), T={SEQ}, batch {BATCH}, one SGD step"}


def lstm_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((SEQ, BATCH, INPUT), dtype=np.float32)


def torch_lstm_layer() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.LSTM(INPUT, HIDDEN)


def graphdl_lstm() -> tuple[Any, Any]:
    """(executable, x) for one SGD step of the LSTM, weights copied from ``torch_lstm_layer`` (graphdl's own
    PyTorch-like initialisation when torch is not installed)."""
    import graphdl as gd

    with gd.Graph("lstm", seed=0) as g:
        x = gd.placeholder("x", (SEQ, None, INPUT))
        out, _ = gd.layers.LSTM(INPUT, HIDDEN, name="lstm")(x)
        loss = gd.ops.mean(out * out)
    try:
        g.load_parameters({f"lstm.{k}": v.detach().numpy() for k, v in torch_lstm_layer().named_parameters()})
    except ImportError:
        pass
    return gd.compile([loss], gd.optim.SGD(LR)), x


def torch_lstm() -> Any:
    """One SGD step of the fused ``nn.LSTM`` in eager mode: ``step(x) -> loss``."""
    return torch_sgd_step(torch_lstm_layer(), LR, output=lambda r: r[0])


graphdl_workload, torch_step = workload_pair("lstm_train", graphdl_lstm, torch_lstm, lstm_data)
