"""Frozen parameters and parameter groups, checked against PyTorch's requires_grad and param groups."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.ir import NodeKind


def _model():
    with gd.Graph("ft", dtype="float64", seed=3) as g:
        x = gd.placeholder("x", (None, 4))
        y = gd.placeholder("y", (None,), dtype="int64")
        enc = layers.Linear(4, 8, name="enc")
        mid = layers.Linear(8, 8, name="mid")
        head = layers.Linear(8, 3, name="head")
        logits = head(layers.Tanh()(mid(layers.Tanh()(enc(x)))))
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return g, x, y, enc, mid, head, logits, loss


def _batches(n: int = 5):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((6, 4)), rng.integers(0, 3, 6)) for _ in range(n)]


def test_frozen_layer_gets_no_gradient_no_state_and_keeps_its_values() -> None:
    g, x, y, enc, mid, head, logits, loss = _model()
    enc.freeze()
    assert not enc.trainable and mid.trainable
    before = {k: v.copy() for k, v in g.parameters().items()}
    train = gd.compile([loss], optimizer=optim.Adam(lr=0.1))
    grads_of = {n.inputs[0] for n in train.ir.nodes if n.kind is NodeKind.UPDATE}
    assert "enc.W" not in grads_of and "enc.b" not in grads_of and "mid.W" in grads_of
    assert not any(name.startswith("enc.") for name in train.state())  # no Adam moments for enc
    for xb, yb in _batches(3):
        train.run({x: xb, y: yb})
    after = g.parameters()
    np.testing.assert_array_equal(after["enc.W"], before["enc.W"])
    assert not np.allclose(after["mid.W"], before["mid.W"])
    enc.unfreeze()
    assert enc.trainable and "enc.W" in g.trainable_parameters()


def test_all_frozen_is_a_clear_error() -> None:
    g, x, y, enc, mid, head, logits, loss = _model()
    for layer in (enc, mid, head):
        layer.trainable = False
    with pytest.raises(gd.CompileError, match="all 6 parameters it uses are frozen"):
        gd.compile([loss], optimizer=optim.SGD())
    with pytest.raises(gd.GraphError, match="only parameters can be frozen"):
        g.freeze_parameters(x)


def test_group_errors_are_raised_before_compiling() -> None:
    g, x, y, enc, mid, head, logits, loss = _model()
    with pytest.raises(gd.GraphDLError, match="no hyperparameter"):
        optim.SGD(groups=[optim.ParamGroup([head], betas=(0.9, 0.99))])
    with pytest.raises(gd.GraphDLError, match="two parameter groups"):
        gd.compile([loss], optimizer=optim.SGD(groups=[optim.ParamGroup([head]), optim.ParamGroup(["head.W"])]))
    enc.freeze()
    with pytest.raises(gd.GraphDLError, match="does not train"):
        gd.compile([loss], optimizer=optim.SGD(groups=[optim.ParamGroup([enc], lr=1.0)]))


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_freezing_and_groups_match_pytorch(kind: str) -> None:
    torch = pytest.importorskip("torch")
    g, x, y, enc, mid, head, logits, loss = _model()
    enc.freeze()
    if kind == "sgd":
        opt = optim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3,
                        groups=[optim.ParamGroup([head], lr=0.2, weight_decay=0.0)])
    else:
        opt = optim.AdamW(lr=0.01, groups=[optim.ParamGroup([head], lr=0.03, weight_decay=0.1)])
    init = {k: v.copy() for k, v in g.parameters().items()}
    train = gd.compile([loss], optimizer=opt)

    tp = {k: torch.tensor(v, requires_grad=not k.startswith("enc.")) for k, v in init.items()}
    rest = [tp["mid.W"], tp["mid.b"]]
    if kind == "sgd":
        topt = torch.optim.SGD([{"params": rest}, {"params": [tp["head.W"], tp["head.b"]], "lr": 0.2,
                                                  "weight_decay": 0.0}], lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        topt = torch.optim.AdamW([{"params": rest}, {"params": [tp["head.W"], tp["head.b"]], "lr": 0.03,
                                                    "weight_decay": 0.1}], lr=0.01)
    for xb, yb in _batches():
        train.run({x: xb, y: yb})
        topt.zero_grad()
        h = torch.tanh(torch.tensor(xb) @ tp["enc.W"] + tp["enc.b"])
        h = torch.tanh(h @ tp["mid.W"] + tp["mid.b"])
        torch.nn.functional.cross_entropy(h @ tp["head.W"] + tp["head.b"], torch.tensor(yb)).backward()
        topt.step()
    for k, v in g.parameters().items():
        np.testing.assert_allclose(v, tp[k].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(g.parameters()["enc.W"], init["enc.W"])
