"""Errors people can act on: node, op, shapes, the user's line and a hint."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses


def _line_of(marker: str) -> int:
    src = open(__file__).read().splitlines()
    return next(i for i, line in enumerate(src, 1) if marker in line and "_line_of" not in line)


def test_linear_feature_mismatch_names_node_line_and_hint() -> None:
    with gd.Graph("bad"):
        x = gd.placeholder("x", (None, 64))
        h = layers.Linear(64, 128, name="fc1")(x)
        with pytest.raises(gd.ShapeError) as e:
            layers.Linear(64, 10, name="fc2")(h)  # MARK-fc2
    msg = str(e.value)
    assert re.search(r"linear at node 'fc2'", msg)
    assert f"test_errors.py:{_line_of('MARK-fc2')}" in msg
    assert "128 features" in msg and "(64, 10)" in msg and "Hint:" in msg and "in_features=128" in msg


def test_matmul_inner_dimensions() -> None:
    with gd.Graph("mm"):
        a = gd.placeholder("a", (None, 3))
        b = gd.placeholder("b", (4, 5))
        with pytest.raises(gd.ShapeError, match=r"matmul at node 'matmul'.*inner dimensions 3 and 4 differ"):
            a @ b


def test_broadcast_mismatch_and_dtype_mismatch() -> None:
    with gd.Graph("bc"):
        a = gd.placeholder("a", (None, 3))
        b = gd.placeholder("b", (4,))
        with pytest.raises(gd.ShapeError, match=r"add at node 'add'.*do not broadcast.*\(\?, 3\)"):
            a + b
        i = gd.placeholder("i", (None, 3), dtype="int64")
        assert (a * i).dtype == "float32"  # promotion, as in PyTorch
        with pytest.raises(gd.DTypeError, match=r"bitwise_and at node 'bitwise_and'.*float32, int64.*astype"):
            a & i


def test_loss_label_dtype_hint() -> None:
    with gd.Graph("labels"):
        logits = gd.placeholder("logits", (None, 10))
        y = gd.placeholder("y", (None,))
        with pytest.raises(gd.DTypeError, match=r"softmax_cross_entropy.*integer class ids.*dtype='int64'"):
            losses.SoftmaxCrossEntropy()(logits, y)


def test_feed_errors_are_raised_before_anything_updates(mlp, batch) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    xb, yb = batch
    before = {k: v.copy() for k, v in mlp.g.parameters().items()}
    with pytest.raises(gd.FeedError, match=r"needs a value for 'y'"):
        train.run({"x": xb})
    with pytest.raises(gd.FeedError, match=r"'z' is not an input"):
        train.run({"x": xb, "y": yb, "z": 1})
    with pytest.raises(gd.FeedError, match=r"feed 'x' has shape \(32, 63\).*\(\?, 64\)"):
        train.run({"x": xb[:, :63], "y": yb})
    with pytest.raises(gd.FeedError, match=r"feed 'y' has dtype float64.*int64"):
        train.run({"x": xb, "y": yb.astype(float)})
    with pytest.raises(gd.ShapeError, match=r"softmax_cross_entropy.*batch 32 but labels 31"):
        train.run({"x": xb, "y": yb[:31]})
    assert all(np.array_equal(v, before[k]) for k, v in mlp.g.parameters().items())


def test_cycle_is_named() -> None:
    from graphdl.ir import IR, Node, NodeKind
    from passes.toposort import toposort

    nodes = (Node("a", NodeKind.OP, "neg", ("c",), shape=(1,)), Node("b", NodeKind.OP, "neg", ("a",), shape=(1,)),
             Node("c", NodeKind.OP, "neg", ("b",), shape=(1,)))
    with pytest.raises(gd.CompileError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        toposort(IR("cyc", nodes))


def test_every_error_is_a_graphdl_error() -> None:
    for cls in (gd.ShapeError, gd.DTypeError, gd.FeedError, gd.GradientError, gd.ModelFileError, gd.CompileError,
                gd.VizError, gd.GraphError, gd.ExecutionError):
        assert issubclass(cls, gd.GraphDLError)
