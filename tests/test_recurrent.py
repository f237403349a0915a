"""RNN, LSTM and GRU against PyTorch (float64, weights copied): outputs, final states and all gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers

torch = pytest.importorskip("torch")

T, N, IN, H = 4, 3, 5, 4
KINDS = {"rnn_tanh": (layers.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
         "rnn_relu": (layers.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (layers.LSTM, torch.nn.LSTM, {}),
         "gru": (layers.GRU, torch.nn.GRU, {})}


def _build(kind: str, bidirectional: bool, batch_first: bool, with_h0: bool, seed: int = 0, bias: bool = True
           ) -> tuple:
    ours, theirs, kw = KINDS[kind]
    kw = {**kw, "bias": bias}
    rng = np.random.default_rng(seed)
    tm = theirs(IN, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, **kw).double()
    D = 2 if bidirectional else 1
    lstm = kind == "lstm"
    xa = rng.standard_normal((N, T, IN) if batch_first else (T, N, IN))
    states = [rng.standard_normal((2 * D, N, H)) for _ in range(2 if lstm else 1)] if with_h0 else []
    with gd.Graph("m", dtype="float64") as g:
        x = gd.placeholder("x", xa.shape)
        hs = [gd.placeholder(f"s{i}", s.shape) for i, s in enumerate(states)]
        layer = ours(IN, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, name="rec", **kw)
        hx = (tuple(hs) if lstm else hs[0]) if hs else None
        out, fin = layer(x, hx)
        fins = list(fin) if lstm else [fin]
        weights = [rng.standard_normal(t.shape) for t in (out, *fins)]
        loss = gd.ops.sum(gd.ops.stack([gd.ops.sum(t * gd.constant(w)) for t, w in zip((out, *fins), weights)]))
        grads = gd.grad(loss, [x, *hs, *layer.params.values()])
    g.load_parameters({f"rec.{k}": v.detach().numpy() for k, v in tm.named_parameters()})
    feeds = {"x": xa, **{f"s{i}": s for i, s in enumerate(states)}}
    got = gd.compile([out, *fins, *grads]).run(feeds)
    tx = torch.tensor(xa, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    ref, rfin = tm(tx, (tuple(ts) if lstm else ts[0]) if ts else None)
    rfins = list(rfin) if lstm else [rfin]
    sum(((t * torch.tensor(w)).sum() for t, w in zip((ref, *rfins), weights))).backward()
    tp = dict(tm.named_parameters())
    want = [ref, *rfins, tx.grad, *(s.grad for s in ts), *(tp[k].grad for k in layer.params)]
    names = ["out", *(f"final{i}" for i in range(len(rfins))), "dx", *(f"ds{i}" for i in range(len(ts))),
             *layer.params]
    return got, want, names, layer


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_recurrent_matches_pytorch(kind: str, bidirectional: bool, batch_first: bool, with_h0: bool) -> None:
    got, want, names, layer = _build(kind, bidirectional, batch_first, with_h0)
    assert len(got) == len(want) and len(layer.params) == (16 if bidirectional else 8)
    for a, b, w in zip(got, want, names):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=w)


@pytest.mark.parametrize("kind", list(KINDS))
def test_recurrent_without_bias_matches_pytorch(kind: str) -> None:
    got, want, names, layer = _build(kind, True, False, True, seed=1, bias=False)
    assert not any(k.startswith("bias") for k in layer.params)
    for a, b, w in zip(got, want, names, strict=True):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=w)
