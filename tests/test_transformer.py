"""MultiheadAttention and Transformer layers against PyTorch (float64, weights copied): outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers

torch = pytest.importorskip("torch")


def _copy_from_torch(g: gd.Graph, prefix: str, module: torch.nn.Module) -> None:
    """Load a torch module's weights into graphdl's parameters (Linear W is the transpose; norms are gamma/beta)."""
    values = {}
    for name, p in module.named_parameters():
        arr = p.detach().numpy()
        key = f"{prefix}.{name}"
        for torch_name, ours in ((".weight", ".W"), (".bias", ".b")):
            lin = key.removesuffix(torch_name)
            if key.endswith(torch_name) and lin.rsplit(".", 1)[-1].startswith("linear"):
                key, arr = lin + ours, arr.T if ours == ".W" else arr
        if ".norm" in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        values[key] = arr
    g.load_parameters(values)


def _check(got: list[np.ndarray], ref: list[torch.Tensor], what: list[str]) -> None:
    for a, b, w in zip(got, ref, what):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-11, err_msg=w)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "causal+padding", "float"])
def test_multihead_attention_matches_pytorch(batch_first: bool, masks: str) -> None:
    rng = np.random.default_rng(0)
    N, L, S, E, H = 2, 4, 5, 8, 2
    tm = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, kdim=6 if masks == "float" else None,
                                     vdim=6 if masks == "float" else None).double()
    kd = 6 if masks == "float" else E
    shape = (lambda t: (N, t, E)) if batch_first else (lambda t: (t, N, E))
    qa = rng.standard_normal(shape(L))
    ka = rng.standard_normal(shape(S))[..., :kd].copy()
    va = rng.standard_normal(shape(S))[..., :kd].copy()
    kw: dict = {}
    if masks == "causal+padding":
        kw = {"attn_mask": ~np.tril(np.ones((L, S), bool)),
              "key_padding_mask": np.array([[0, 0, 0, 1, 1], [0] * 5], bool)}
    elif masks == "float":
        kw = {"attn_mask": rng.standard_normal((L, S))}
    with gd.Graph("m", dtype="float64") as g:
        q, k, v = (gd.placeholder(n, a.shape) for n, a in (("q", qa), ("k", ka), ("v", va)))
        mha = layers.MultiheadAttention(E, H, batch_first=batch_first, kdim=kd, vdim=kd, name="mha")
        out, w = mha(q, k, v, **kw)
        out2, _ = mha(q, k, v, need_weights=False, **kw)
        loss = gd.ops.sum(out * out2)
        grads = gd.grad(loss, [q, k, v, *mha.params.values()])
    _copy_from_torch(g, "mha", tm)
    got = gd.compile([out, w, out2, *grads]).run({"q": qa, "k": ka, "v": va})
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (qa, ka, va))
    tkw = {key: torch.tensor(val) for key, val in kw.items()}
    ref, rw = tm(tq, tk, tv, **tkw)
    (ref * ref).sum().backward()
    tparams = [dict(tm.named_parameters())[key] for key in mha.params]  # the same names as PyTorch's
    _check(got[:3], [ref, rw, ref], ["out", "weights", "fused out"])
    _check(got[3:], [tq.grad, tk.grad, tv.grad, *(p.grad for p in tparams)], ["dq", "dk", "dv", *mha.params])


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layers_match_pytorch(kind: str, norm_first: bool) -> None:
    rng = np.random.default_rng(1)
    N, T, Tm, D, H = 2, 5, 4, 8, 2
    cls = torch.nn.TransformerEncoderLayer if kind == "encoder" else torch.nn.TransformerDecoderLayer
    tm = cls(D, H, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True,
             norm_first=norm_first).double()
    xa, ma = rng.standard_normal((N, T, D)), rng.standard_normal((N, Tm, D))
    causal = ~np.tril(np.ones((T, T), bool))
    with gd.Graph("t", dtype="float64") as g:
        x, mem = gd.placeholder("x", (None, T, D)), gd.placeholder("mem", (None, Tm, D))
        ours_cls = layers.TransformerEncoderLayer if kind == "encoder" else layers.TransformerDecoderLayer
        layer = ours_cls(D, H, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True,
                         norm_first=norm_first, name="blk")
        y = layer(x, src_mask=causal) if kind == "encoder" else layer(x, mem, tgt_mask=causal)
        loss = gd.ops.sum(y * y)
        params = sorted(g.parameters())
        grads = gd.grad(loss, [x] + [g.tensor(p) for p in params])
    _copy_from_torch(g, "blk", tm)
    got = gd.compile([y, *grads]).run({"x": xa, "mem": ma})
    tx, tmem = torch.tensor(xa, requires_grad=True), torch.tensor(ma)
    ref = tm(tx, src_mask=torch.tensor(causal)) if kind == "encoder" else tm(tx, tmem, tgt_mask=torch.tensor(causal))
    (ref * ref).sum().backward()
    _check(got[:2], [ref, tx.grad], ["out", "dx"])
    tp = dict(tm.named_parameters())
    for name, gr in zip(params, got[2:]):
        key = name.removeprefix("blk.")
        if key.endswith(".W"):
            ref_g = tp[key[:-2] + ".weight"].grad.T
        elif key.endswith(".b"):
            ref_g = tp[key[:-2] + ".bias"].grad
        else:
            ref_g = tp[key.replace(".gamma", ".weight").replace(".beta", ".bias")].grad
        np.testing.assert_allclose(gr, ref_g.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)
