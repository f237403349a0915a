"""Training parity with PyTorch: the same small decoder-only transformer, the same initial weights (copied
from torch) and the same batches give the same float32 loss curve over 100 optimizer steps (to 1e-4 relative;
float64 to 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses, optim

torch = pytest.importorskip("torch")

VOCAB, D, HEADS, FF, T, BATCH, STEPS = 24, 32, 4, 64, 12, 8, 100


class TorchLM(torch.nn.Module):
    """Token embedding + learned positions, two causal encoder layers, a linear head."""

    def __init__(self, norm_first: bool, activation: str) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, D)
        self.pos = torch.nn.Parameter(torch.randn(T, D))
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=FF, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first) for _ in range(2))
        self.head = torch.nn.Linear(D, VOCAB)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos
        for block in self.blocks:
            h = block(h, src_mask=self.mask)
        return self.head(h)


def _graphdl_lm(norm_first: bool, activation: str, dtype: str) -> tuple[gd.Graph, dict]:
    causal = ~np.tril(np.ones((T, T), dtype=bool))  # True = may not attend, as torch's src_mask
    with gd.Graph("lm", seed=0, dtype=dtype) as g:
        tokens = gd.placeholder("tokens", (None, T), dtype="int64")
        targets = gd.placeholder("targets", (None, T), dtype="int64")
        h = layers.PositionalEmbedding(T, D, name="pos")(layers.Embedding(VOCAB, D, name="embed")(tokens))
        for i in range(2):
            h = layers.TransformerEncoderLayer(D, HEADS, dim_feedforward=FF, dropout=0.0, activation=activation,
                                               batch_first=True, norm_first=norm_first, name=f"blocks.{i}")(
                h, src_mask=causal)
        logits = layers.Linear(D, VOCAB, name="head")(h)
        loss = losses.SoftmaxCrossEntropy(name="loss")(gd.ops.reshape(logits, (-1, VOCAB)),
                                                       gd.ops.reshape(targets, (-1,)))
    return g, {"tokens": tokens, "targets": targets, "loss": loss}


def _torch_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """torch's parameters under graphdl's names: Linear weight -> W (transposed), bias -> b; LayerNorm
    weight/bias -> gamma/beta; embeddings -> W; attention's names are PyTorch's."""
    out = {}
    for name, p in model.named_parameters():
        arr = p.detach().numpy()
        owner, _, leaf = name.rpartition(".")
        last = owner.rpartition(".")[2]
        if name == "pos":
            name = "pos.W"
        elif owner == "embed":
            name = "embed.W"
        elif owner == "head" or last.startswith("linear"):
            name, arr = (f"{owner}.W", arr.T) if leaf == "weight" else (f"{owner}.b", arr)
        elif last.startswith("norm"):
            name = f"{owner}.{'gamma' if leaf == 'weight' else 'beta'}"
        out[name] = np.ascontiguousarray(arr)
    return out


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Four fixed batches of a noisy counting sequence (learnable, so the loss falls), cycled."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(4):
        start = rng.integers(0, VOCAB, (BATCH, 1))
        seq = (start + np.arange(T + 1)) % VOCAB
        noise = rng.random(seq.shape) < 0.1
        seq = np.where(noise, rng.integers(0, VOCAB, seq.shape), seq)
        out.append((seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)))
    return out


@pytest.fixture
def one_torch_thread() -> object:
    """Tiny ops: one torch thread is faster, and steady on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize(("opt", "norm_first", "activation", "dtype", "rtol"), [
    ("adam", True, "relu", "float32", 1e-4), ("sgd", False, "gelu", "float32", 1e-4),
    # float64: the curves agree to rounding, so float32's gap is rounding amplified by training, not a
    # difference in the maths (op order, eps, Adam's bias correction)
    ("adam", True, "relu", "float64", 1e-10)])
def test_training_loss_curve_matches_pytorch(opt: str, norm_first: bool, activation: str, dtype: str,
                                             rtol: float) -> None:
    torch.manual_seed(0)
    model = TorchLM(norm_first, activation).to(getattr(torch, dtype))
    g, t = _graphdl_lm(norm_first, activation, dtype)
    weights = _torch_weights(model)
    assert set(weights) == set(g.parameters()), "every parameter is copied"
    g.load_parameters(weights)
    if opt == "adam":
        ours, theirs = optim.Adam(lr=3e-3), torch.optim.Adam(model.parameters(), lr=3e-3)
    else:
        ours, theirs = optim.SGD(0.1, momentum=0.5), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    step = gd.compile([t["loss"]], ours)
    batches = _batches()
    got, want = [], []
    for k in range(STEPS):
        x, y = batches[k % len(batches)]
        got.append(float(step.run({t["tokens"]: x, t["targets"]: y})[0]))
        theirs.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)).reshape(-1, VOCAB),
                                                 torch.from_numpy(y).reshape(-1))
        loss.backward()
        theirs.step()
        want.append(loss.item())
    assert want[-1] < 0.6 * want[0], "the model learns, so the curves are not flat"
    np.testing.assert_allclose(got, want, rtol=rtol, err_msg="graphdl's loss curve departs from PyTorch's")
