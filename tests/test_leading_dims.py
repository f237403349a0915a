"""Layers and ops on any number of leading (batch) dimensions, known or not, training included.

Each model is built on placeholders whose leading dimensions are unknown (None), trained for one
step, and its parameter gradients are checked against central finite differences in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphdl as gd

Build = Callable[[gd.Tensor], gd.Tensor]


def _linear(x: gd.Tensor) -> gd.Tensor:
    return gd.layers.Linear(x.shape[-1], 3, name="fc")(x)


def _layer_norm(x: gd.Tensor) -> gd.Tensor:
    return gd.layers.LayerNorm(x.shape[-1], name="ln")(gd.layers.Linear(x.shape[-1], x.shape[-1], name="fc")(x))


def _mlp(x: gd.Tensor) -> gd.Tensor:
    h = gd.layers.Linear(x.shape[-1], 5, name="fc1")(x)
    h = gd.ops.tanh(gd.layers.GELU()(h)) + gd.ops.sigmoid(h) * gd.layers.SiLU()(h)
    return gd.layers.Softmax(dim=-1)(gd.layers.Linear(5, 4, name="fc2")(h))


def _log_softmax_mid_axis(x: gd.Tensor) -> gd.Tensor:
    return gd.ops.log_softmax(gd.layers.Linear(x.shape[-1], 4, name="fc")(x), axis=1)


def _activations(x: gd.Tensor) -> gd.Tensor:
    h = gd.layers.Linear(x.shape[-1], 5, name="fc")(x)
    return (gd.layers.LeakyReLU(0.1)(h) + gd.layers.ELU(0.7)(h) + gd.layers.Softplus(beta=2.0)(h)
            + gd.layers.LogSoftmax(dim=-1)(h) + gd.ops.logsumexp(h, dim=-1, keepdim=True)
            + h.var(axis=-1, keepdims=True)
            + h[..., ::-1] * h[..., 1:2] + gd.ops.cumsum(h, axis=-1))


MODELS: dict[str, Build] = {"linear": _linear, "layer_norm": _layer_norm, "mlp": _mlp,
                            "log_softmax_axis1": _log_softmax_mid_axis, "activations": _activations}
SHAPES = [(None, 5, 6), (None, None, 3, 6)]


def _objective(build: Build, declared: tuple, dtype: str = "float64"):
    with gd.Graph("lead", dtype=dtype) as g:
        x = gd.placeholder("x", declared)
        y = build(x)
        w = gd.constant(np.linspace(-1.0, 1.0, y.shape[-1]))
        loss = gd.ops.mean(y * y * w) + gd.ops.sum(y * w) * 0.1
    return g, x, loss


def _fd_check(g: gd.Graph, x: gd.Tensor, loss: gd.Tensor, xv: np.ndarray, eps: float = 1e-6) -> None:
    params = [g.tensor(n) for n in g.parameters()]
    grads = gd.grad(loss, params)
    analytic = gd.compile(grads).run({x: xv})
    f = gd.compile([loss])
    rng = np.random.default_rng(1)
    for p, ga in zip(params, analytic, strict=True):
        value = g.parameters()[p.name]
        base = value.copy()
        v = rng.standard_normal(value.shape)
        value[...] = base + eps * v
        plus = f.run({x: xv})[0]
        value[...] = base - eps * v
        minus = f.run({x: xv})[0]
        value[...] = base
        assert np.isclose(np.sum(ga * v), (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9), p.name


@pytest.mark.parametrize("declared", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(MODELS))
def test_layers_train_on_leading_dims(name: str, declared: tuple) -> None:
    g, x, loss = _objective(MODELS[name], declared)
    concrete = tuple(2 + i if d is None else d for i, d in enumerate(declared))
    xv = np.random.default_rng(0).standard_normal(concrete)
    _fd_check(g, x, loss, xv)
    step = gd.compile([loss], optimizer=gd.optim.SGD(lr=0.1))
    before = step.run({x: xv})[0]
    after = step.run({x: xv})[0]
    assert after < before
    # a second batch size runs on the same compiled plan
    step.run({x: np.random.default_rng(2).standard_normal((concrete[0] + 3, *concrete[1:]))})


def test_embedding_on_3d_ids_trains() -> None:
    with gd.Graph("emb", dtype="float64") as g:
        ids = gd.placeholder("ids", (None, None, 3), dtype="int64")
        e = gd.layers.Embedding(7, 4, name="emb")(ids)
        y = gd.layers.LayerNorm(4, name="ln")(gd.layers.Linear(4, 4, name="fc")(e))
        loss = gd.ops.mean(y * gd.constant(np.arange(4.0)))
    assert e.shape == (None, None, 3, 4)
    iv = np.random.default_rng(0).integers(0, 7, (2, 3, 3))
    _fd_check(g, ids, loss, iv)


def test_mse_on_4d_trains() -> None:
    with gd.Graph("mse4", dtype="float64") as g:
        x = gd.placeholder("x", (None, 2, 3, 4))
        t = gd.placeholder("t", (None, 2, 3, 5))
        loss = gd.losses.MSE()(gd.layers.Linear(4, 5, name="fc")(x), t)
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((3, 2, 3, 4)), t: rng.standard_normal((3, 2, 3, 5))}
    (dw,) = gd.compile(gd.grad(loss, [g.tensor("fc.W")])).run(feeds)
    xs, ts = feeds[x].reshape(-1, 4), feeds[t].reshape(-1, 5)
    w, b = g.parameters()["fc.W"], g.parameters()["fc.b"]
    np.testing.assert_allclose(dw, 2 * xs.T @ (xs @ w + b - ts) / ts.size, rtol=1e-10)


def test_reshape_splits_and_merges_the_batch_dimension() -> None:
    with gd.Graph("split", dtype="float64") as g:
        x = gd.placeholder("x", (None, 5))
        y = x.reshape(-1, 4, 5)
        z = gd.ops.reshape(y * 2.0, (-1, 20))
        w = z.reshape(-1, 5)
    assert (y.shape, z.shape, w.shape) == ((None, 4, 5), (None, 20), (None, 5))
    xv = np.arange(60.0).reshape(12, 5)
    out_y, out_w = gd.compile([y, w]).run({x: xv})
    np.testing.assert_array_equal(out_y, xv.reshape(3, 4, 5))
    np.testing.assert_array_equal(out_w, 2 * xv)
    (dx,) = gd.compile(gd.grad(gd.ops.sum(y * y), [x])).run({x: xv})
    np.testing.assert_array_equal(dx, 2 * xv)
    del g


def test_reshape_of_a_batch_that_does_not_split_names_the_node() -> None:
    with gd.Graph("split"):
        x = gd.placeholder("x", (None, 5))
        y = gd.ops.reshape(x, (-1, 4, 5))
    run = gd.compile([y])
    with pytest.raises(gd.ShapeError, match=rf"reshape at node '{y.name}'.*\(6, 5\)"):
        run.run({x: np.zeros((6, 5), np.float32)})
    assert run.run({x: np.zeros((8, 5), np.float32)})[0].shape == (2, 4, 5)


def test_reshape_with_several_unknown_dims_has_an_exact_gradient() -> None:
    with gd.Graph("multi", dtype="float64"):
        x = gd.placeholder("x", (None, None, 6))
        y = gd.layers.Linear(6, 2, name="fc")(x)
        (dx,) = gd.grad(gd.ops.sum(y * y), [x])
    assert dx.shape == (None, None, 6)
    assert gd.compile([dx]).run({x: np.ones((2, 3, 6))})[0].shape == (2, 3, 6)


def test_flatten_keeps_several_unknown_leading_dims() -> None:
    with gd.Graph("flat", dtype="float64") as g:
        x = gd.placeholder("x", (None, None, 3, 4))
        y = gd.layers.Linear(12, 2, name="fc")(gd.layers.Flatten(start_dim=2)(x))
        z = gd.layers.Flatten()(gd.placeholder("w", (None, 3, 4)))
        loss = gd.ops.sum(y * y)
    assert (y.shape, z.shape) == ((None, None, 2), (None, 12))
    _fd_check(g, x, loss, np.random.default_rng(0).standard_normal((2, 3, 3, 4)))


def test_broadcast_gradient_over_an_unknown_batch_builds_saves_and_loads(tmp_path) -> None:
    with gd.Graph("bcast", dtype="float64") as g:
        x = gd.placeholder("x", (None, 3))
        s = gd.layers.Linear(3, 1, name="gate")(x)  # (?, 1), broadcast against (?, 3)
        y = gd.layers.Linear(3, 2, name="fc")(x * s).reshape(-1, 1, 2)
        loss = gd.ops.mean(y * y)
    (ds,) = gd.grad(loss, [s])
    assert ds.shape == (None, 1)
    step = gd.compile([loss], optimizer=gd.optim.SGD(lr=0.05))
    xv = np.random.default_rng(0).standard_normal((4, 3))
    first = step.run({x: xv})[0]
    step.save(str(tmp_path / "m.gdl"))
    again = gd.load(str(tmp_path / "m.gdl"))
    assert again.run({"x": xv})[0] == step.run({x: xv})[0] < first
    del g
