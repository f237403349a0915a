"""Shape inference: inferred shapes equal executed shapes; symbolic batch stays symbolic."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd
from passes.shapes import concrete_shapes, infer_shapes
from tests.randgraph import random_graphs


@settings(max_examples=40, deadline=None)
@given(random_graphs(), st.integers(1, 5))
def test_inferred_shapes_equal_executed_shapes(case, batch: int) -> None:
    g, outputs = case
    exe = gd.compile(outputs)
    results = exe.run({"x": np.zeros((batch, 8))})
    shapes = concrete_shapes(exe.ir, {"x": (batch, 8)})
    for t, r in zip(outputs, results, strict=True):
        assert shapes[t.name] == r.shape
        assert tuple(batch if d is None else d for d in t.shape) == r.shape


def test_infer_shapes_is_idempotent_on_compiled_graphs(mlp) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.Adam())
    assert infer_shapes(train.ir) == train.ir


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=0, max_size=3), st.lists(st.integers(1, 3), min_size=0, max_size=3))
def test_broadcast_rule_agrees_with_numpy(a: list[int], b: list[int]) -> None:
    from graphdl.ops.common import broadcast
    from graphdl.registry import RuleError

    try:
        expected = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        expected = None
    try:
        got = broadcast(tuple(a), tuple(b))
    except RuleError:
        got = None
    assert got == expected


def test_compile_time_inference_rejects_a_hand_built_mismatch() -> None:
    import pytest

    from graphdl.ir import IR, Node, NodeKind

    nodes = (
        Node("a", NodeKind.PLACEHOLDER, "placeholder", shape=(None, 3), origin="model.py:1"),
        Node("w", NodeKind.PARAM, "param", shape=(4, 2), origin="model.py:2"),
        Node("h", NodeKind.OP, "matmul", ("a", "w"), shape=(None, 2), origin="model.py:3"),
    )
    with pytest.raises(gd.ShapeError, match=r"matmul at node 'h' \(defined at model.py:3\): inner dimensions 3 and 4"
                                             r".*'a' \(\?, 3\).*'w' \(4, 2\).*Hint"):
        infer_shapes(IR("hand", nodes, ("h",)))


def test_gradients_through_max_pooling_take_a_known_batch_against_an_unknown_one() -> None:
    """The pooled values times a batch-2 constant: the gradient arriving at the pooling has batch 2 while
    its saved indices have the placeholder's unknown batch; both pooling layouts accept that (they once
    compared the shapes for equality and refused to compile)."""
    import numpy as np

    from graphdl import layers

    for channels, cout in ((1, 10), (3, 4)):  # blocked first layer, plain max_pool2d
        with gd.Graph("b2", seed=0, dtype="float64"):
            x = gd.placeholder("x", (None, channels, 8, 6))
            y = layers.MaxPool2D(2)(layers.Conv2D(channels, cout, 3, padding=1)(x))
            loss = gd.ops.sum(y * gd.constant(np.ones((2, *y.shape[1:]))))
        model = gd.compile([loss], gd.optim.SGD(0.1))
        assert np.isfinite(model.run({x: np.ones((2, channels, 8, 6))})[0])
