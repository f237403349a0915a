"""A trained model's ``inference`` answers for a node of the user's graph with that node's value.

Training compiles rewrite the graph (channel-major chains, a first convolution fused with its pooling,
max pooling moved before the ReLU it follows, BatchNorm and Dropout in training mode). Asked for any
forward node by its name, the trained model must give the value the user's graph gives for it (compiled as
built, for inference, with the same parameters), or refuse with a GraphDLError: never another value under
that name (a moved ReLU once answered for its pool without the ReLU; channel-major values came back with
their first two axes swapped)."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses
from graphdl.ir import NodeKind


def _cnn():
    with gd.Graph("cnn", seed=0, dtype="float64") as g:
        x = gd.placeholder("x", (None, 1, 12, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Conv2D(1, 10, 3, padding=1, name="conv1")(x)  # fused with pool1 when training
        h = layers.MaxPool2D(2, name="pool1")(layers.ReLU(name="relu1")(h))  # pool moved before the ReLU
        h = layers.BatchNorm2D(6, name="bn")(layers.Conv2D(10, 6, 3, padding=1, name="conv2")(h))
        h = layers.Dropout(0.3, name="drop")(layers.MaxPool2D(2, name="pool2")(layers.ReLU(name="relu2")(h)))
        logits = layers.Linear(6 * 9, 3, name="fc")(layers.Flatten(name="flat")(h))
        loss = losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    rng = np.random.default_rng(0)
    return g, loss, logits, {"x": rng.standard_normal((4, 1, 12, 12)), "y": np.arange(4) % 3}


def _mlp():
    with gd.Graph("mlp", seed=0, dtype="float64") as g:
        x = gd.placeholder("x", (None, 8))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.LayerNorm(16, name="ln")(layers.ReLU(name="r1")(layers.Linear(8, 16, name="fc1")(x)))
        logits = layers.Linear(16, 3, name="fc3")(layers.Tanh(name="t")(layers.Linear(16, 16, name="fc2")(h)))
        loss = losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    rng = np.random.default_rng(0)
    return g, loss, logits, {"x": rng.standard_normal((5, 8)), "y": np.arange(5) % 3}


@pytest.mark.parametrize("make", [_cnn, _mlp], ids=["cnn", "mlp"])
def test_every_forward_node_answers_with_the_users_value(make) -> None:
    g, loss, logits, feeds = make()
    model = gd.compile([loss, logits], gd.optim.SGD(0.05), loss=loss)
    for _ in range(2):
        model.run(feeds)  # trained: parameters and running statistics moved
    answered = 0
    for name in [n.name for n in g.nodes.values() if n.kind is NodeKind.OP]:
        try:
            pred = model.inference([name])
        except gd.GraphDLError:
            continue  # a value the plan no longer computes: refused, by name
        got = pred.run({k: v for k, v in feeds.items() if k in pred.inputs})[0]
        built = gd.compile([gd.Tensor(g, name)], training=False)
        expected = built.run({k: v for k, v in feeds.items() if k in built.inputs})[0]
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=name)
        answered += 1
    assert answered >= (8 if make is _cnn else 6)
