"""The sequence benchmark workloads, built the same way for graphdl and PyTorch.

``transformer_train``: one ``TransformerEncoderLayer`` (d_model 256, 4 heads, feed-forward 1024, ReLU,
dropout 0, batch_first, post-norm) on (32, 128, 256) float32 inputs, loss = mean of the squared output,
one SGD step. Both frameworks start from the same weights (PyTorch's initialisation, copied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import torch_sgd_step, workload_pair

D_MODEL, NHEAD, D_FF, SEQ, BATCH = 256, 4, 1024, 128, 32
LR = 0.01
TITLES = {"transformer_train": f"Transformer encoder layer (d={D_MODEL}, {NHEAD} heads, ff {D_FF}), T={SEQ}, "
                               f"batch {BATCH}, one SGD step"}


def transformer_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, SEQ, D_MODEL), dtype=np.float32)


def torch_transformer_layer() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, dim_feedforward=D_FF, dropout=0.0, batch_first=True)


def torch_to_graphdl(prefix: str, module: Any) -> dict[str, np.ndarray]:
    """A torch module's parameters under graphdl's names: ``linear*.weight`` -> ``.W`` (transposed),
    ``.bias`` -> ``.b``; ``norm*.weight/bias`` -> ``.gamma/.beta``; attention names unchanged."""
    values = {}
    for name, p in module.named_parameters():
        arr = p.detach().numpy()
        key = f"{prefix}.{name}"
        last = name.split(".")
        if len(last) >= 2 and last[-2].startswith("linear"):
            key, arr = (key[:-len(".weight")] + ".W", arr.T) if last[-1] == "weight" else (key[:-len(".bias")] + ".b",
                                                                                          arr)
        elif len(last) >= 2 and last[-2].startswith("norm"):
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        values[key] = np.ascontiguousarray(arr)
    return values


def graphdl_transformer() -> tuple[Any, Any]:
    """(executable, x) for one SGD step of the encoder layer, weights copied from ``torch_transformer_layer``
    (or PyTorch-like initial values when torch is not installed)."""
    import graphdl as gd

    with gd.Graph("transformer", seed=0) as g:
        x = gd.placeholder("x", (None, SEQ, D_MODEL))
        y = gd.layers.TransformerEncoderLayer(D_MODEL, NHEAD, dim_feedforward=D_FF, dropout=0.0, batch_first=True,
                                              name="enc")(x)
        loss = gd.ops.mean(y * y)
    try:
        g.load_parameters(torch_to_graphdl("enc", torch_transformer_layer()))
    except ImportError:
        pass
    return gd.compile([loss], gd.optim.SGD(LR)), x


def torch_transformer() -> Any:
    """One SGD step of ``nn.TransformerEncoderLayer`` in eager mode: ``step(x) -> loss``."""
    return torch_sgd_step(torch_transformer_layer(), LR)


graphdl_workload, torch_step = workload_pair("transformer_train", graphdl_transformer, torch_transformer,
                                             transformer_data)
