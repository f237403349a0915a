"""The training objective is never guessed: loss= or the only scalar output; monitors ride along."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses, optim


def _two_losses():
    with gd.Graph("two", dtype="float64") as g:
        x = gd.placeholder("x", (None, 3))
        y = gd.placeholder("y", (None, 2))
        out = layers.Linear(3, 2, name="fc")(x)
        l1 = losses.MSE(name="l1")(out, y)
        l2 = gd.ops.mean(out * out)
        total = l1 + 0.5 * l2
    return g, x, y, l1, l2, total


def test_several_scalars_without_loss_is_an_error_listing_them() -> None:
    _, _, _, l1, l2, total = _two_losses()
    with pytest.raises(gd.CompileError, match=r"3 scalars .*'add'.*'l1'.*loss="):
        gd.compile([total, l1, l2], optimizer=optim.SGD(lr=0.1))


def test_loss_must_be_an_output_and_a_scalar() -> None:
    _, _, _, l1, l2, total = _two_losses()
    with pytest.raises(gd.CompileError, match="not among the requested outputs"):
        gd.compile([l1, l2], loss=total, optimizer=optim.SGD())
    with pytest.raises(gd.CompileError, match="pass optimizer"):
        gd.compile([total], loss=total)


def test_explicit_loss_minimises_exactly_that_scalar() -> None:
    g, x, y, l1, l2, total = _two_losses()
    rng = np.random.default_rng(0)
    xb, yb = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    w0 = {k: v.copy() for k, v in g.parameters().items()}
    train = gd.compile([total, l1, l2], loss=total, optimizer=optim.SGD(lr=0.1))
    assert train.objective == total.name
    t, a, b = train.run({x: xb, y: yb})
    # Reference: one SGD step on l1 + 0.5 * l2 by hand.
    W, bias = w0["fc.W"], w0["fc.b"]
    out = xb @ W + bias
    assert np.isclose(t, np.mean((out - yb) ** 2) + 0.5 * np.mean(out * out))
    dout = 2 * (out - yb) / out.size + 0.5 * 2 * out / out.size
    np.testing.assert_allclose(g.parameters()["fc.W"], W - 0.1 * xb.T @ dout, rtol=1e-12)
    np.testing.assert_allclose(g.parameters()["fc.b"], bias - 0.1 * dout.sum(0), rtol=1e-12)


def test_single_scalar_output_is_the_objective_and_survives_save(tmp_path) -> None:
    with gd.Graph("one") as g:
        x = gd.placeholder("x", (None, 3))
        out = layers.Linear(3, 2, name="fc")(x)
        loss = gd.ops.mean(out * out)
    train = gd.compile([out, loss], optimizer=optim.SGD())
    assert train.objective == loss.name
    train.save(tmp_path / "t.gdl")
    assert gd.load(tmp_path / "t.gdl").objective == loss.name
    assert gd.compile([out]).objective is None
    del g
