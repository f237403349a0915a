"""The IR and the builder: node kinds, names, origins, shapes, operators, parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers


def test_nodes_are_frozen_and_carry_kind_shape_dtype_origin(mlp) -> None:
    n = mlp.g.nodes["fc1"]
    assert (n.kind, n.op, n.inputs, n.shape, n.dtype) == (
        gd.NodeKind.OP, "linear", ("x", "fc1.W", "fc1.b"), (None, 128), "float32")
    assert n.origin.endswith(".py:" + n.origin.rsplit(":", 1)[1]) and "conftest.py" in n.origin
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.name = "other"  # type: ignore[misc]
    kinds = {m.name: m.kind for m in mlp.g.nodes.values()}
    assert kinds["x"] is gd.NodeKind.PLACEHOLDER and kinds["fc1.W"] is gd.NodeKind.PARAM
    assert kinds[mlp.loss.name] is gd.NodeKind.LOSS


def test_nodes_built_on_one_line_share_one_origin_string() -> None:
    with gd.Graph("chain"):
        h = gd.placeholder("x", (None, 4))
        for _ in range(3):
            h = gd.ops.tanh(h)
    nodes = [n for n in h.graph.freeze().nodes if n.op == "tanh"]
    assert len({n.origin for n in nodes}) == 1 and len({id(n.origin) for n in nodes}) == 1


def test_parameters_are_live_arrays_with_seed_design_layout(mlp) -> None:
    params = mlp.g.parameters()
    assert {k: v.shape for k, v in params.items()} == {
        "fc1.W": (64, 128), "fc1.b": (128,), "fc2.W": (128, 10), "fc2.b": (10,)}
    assert all(v.dtype == np.float32 for v in params.values())
    assert mlp.fc1.params["W"].name == "fc1.W"


def test_same_seed_same_initial_weights() -> None:
    from tests.conftest import build_mlp

    a, b = build_mlp(seed=3).g.parameters(), build_mlp(seed=3).g.parameters()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_load_parameters_checks_everything_before_assigning(mlp) -> None:
    params = mlp.g.parameters()
    before = params["fc1.W"].copy()
    new = {k: np.zeros_like(v) for k, v in params.items()}
    new["fc2.b"] = np.zeros(11, dtype=np.float32)
    with pytest.raises(gd.ShapeError, match="fc2.b"):
        mlp.g.load_parameters(new)
    assert np.array_equal(params["fc1.W"], before)  # nothing assigned
    with pytest.raises(gd.FeedError, match="nope"):
        mlp.g.load_parameters({"nope": np.zeros(1)})
    new["fc2.b"] = np.ones(10, dtype=np.float32)
    live = params["fc2.b"]
    mlp.g.load_parameters(new)
    assert live is mlp.g.parameters()["fc2.b"] and np.all(live == 1)


def test_operators_broadcast_like_numpy() -> None:
    with gd.Graph("ops"):
        a = gd.placeholder("a", (None, 3))
        b = gd.placeholder("b", (3,))
        c = (a + b) * 2.0 - a / (b + 1.0)
        d = gd.ops.sum(-c, axis=1)
        e = gd.ops.mean(gd.ops.relu(c), axis=0)
        f = a @ gd.ops.reshape(b, (3, 1))
    assert c.shape == (None, 3) and d.shape == (None,) and e.shape == (3,) and f.shape == (None, 1)
    av = np.arange(6, dtype=np.float32).reshape(2, 3)
    bv = np.array([1, 2, 3], dtype=np.float32)
    outs = gd.compile([c, d, e, f]).run({"a": av, "b": bv})
    cv = (av + bv) * 2 - av / (bv + 1)
    np.testing.assert_allclose(outs[0], cv, rtol=1e-6)
    np.testing.assert_allclose(outs[1], (-cv).sum(1), rtol=1e-6)
    np.testing.assert_allclose(outs[2], np.maximum(cv, 0).mean(0), rtol=1e-6)
    np.testing.assert_allclose(outs[3], av @ bv[:, None], rtol=1e-6)


def test_names_are_unique_and_layers_get_fresh_names() -> None:
    with gd.Graph("names") as g:
        x = gd.placeholder("x", (None, 4))
        l1, l2 = layers.Linear(4, 4), layers.Linear(4, 4)
        l2(l1(x))
        assert l1.name != l2.name and {f"{l1.name}.W", f"{l2.name}.W"} <= set(g.nodes)
        with pytest.raises(gd.GraphError, match="already"):
            gd.placeholder("x", (None, 4))
        with pytest.raises(gd.GraphError, match="already exists"):
            layers.Linear(4, 4, name=l1.name)


def test_graph_dtype_float64_end_to_end() -> None:
    from tests.conftest import build_mlp

    m = build_mlp(dtype="float64")
    assert all(v.dtype == np.float64 for v in m.g.parameters().values())
    (out,) = gd.compile([m.logits]).run({"x": np.ones((2, 64))})
    assert out.dtype == np.float64


def test_nodes_outside_a_graph_block_are_an_error() -> None:
    with pytest.raises(gd.GraphError, match="no graph is open"):
        gd.placeholder("x", (1,))


def test_growing_a_compiled_graph_warns_once(monkeypatch) -> None:
    from graphdl.graph import Graph, GraphGrowthWarning

    monkeypatch.setattr(Graph, "GROWTH_WARNING", 20)
    with gd.Graph("loop") as g:
        x = gd.placeholder("x", (None, 2))
        y = gd.ops.relu(x)
    gd.compile([y])
    with g, pytest.warns(GraphGrowthWarning, match=r"'loop' has grown by 21 nodes.*training loop"):
        for _ in range(30):
            y = gd.ops.relu(y)


def test_summary_and_text_form(mlp) -> None:
    table = mlp.g.summary()
    assert "fc1" in table and "8,320" in table and "total parameters: 9,610" in table
    text = str(gd.compile([mlp.logits]))
    assert "fc1 = linear(x, fc1.W, fc1.b)  (?, 128) float32  # op @ " in text and "outputs: fc2" in text
