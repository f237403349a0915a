"""Max pooling moved before the ReLU it follows: same values and gradients, names kept, and only
where nothing else sees the intermediate value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphdl as gd
from graphdl.executable import Executable
from graphdl.ir import IR
from passes import PIPELINE, CompileSpec, compile_graph
from passes.reorder import pool_before_relu


def _chain(extra_reader: bool = False, pool: str = "max"):
    """x -> conv -> relu1 -> pool1 -> relu2 -> pool2 -> flatten (+ optionally a second reader of relu1)."""
    with gd.Graph("chain", seed=0, dtype="float64") as g:
        x = gd.placeholder("x", (None, 1, 8, 8))
        h = gd.layers.Conv2D(1, 2, 3, padding=1, name="conv")(x)
        r1 = gd.layers.ReLU(name="relu1")(h)
        Pool = gd.layers.MaxPool2D if pool == "max" else gd.layers.AvgPool2D
        h = Pool(2, name="pool1")(r1)
        h = Pool(2, name="pool2")(gd.layers.ReLU(name="relu2")(h))
        out = gd.layers.Flatten(name="flat")(h)
        side = gd.ops.sum(r1) if extra_reader else None
    return g, out, side


def _order(ir: IR) -> list[tuple[str, str, tuple[str, ...]]]:
    ops = ("relu", "max_pool2d", "avg_pool2d", "reshape")
    return [(n.name, n.op, n.inputs) for n in ir.nodes if n.op in ops]


def test_pools_move_before_relus_and_names_keep_their_values() -> None:
    """The ReLU after the pool takes the pool's name (relu(max_pool2d(x)) is the pool's value), the pool
    before it a new one; the ReLU's own full-size value is gone, and so is its name."""
    g, out, _ = _chain()
    ir = pool_before_relu(g.freeze((out.name,)))
    assert _order(ir) == [("pool1/before_relu", "max_pool2d", ("conv",)), ("pool1", "relu", ("pool1/before_relu",)),
                          ("pool2/before_relu", "max_pool2d", ("pool1",)), ("pool2", "relu", ("pool2/before_relu",)),
                          ("flat", "reshape", ("pool2",))]
    nodes = ir.node_map()
    assert "relu1" not in nodes and "relu2" not in nodes
    assert nodes["pool1/before_relu"].shape == nodes["pool1"].shape == (None, 2, 4, 4)
    assert nodes["pool2/before_relu"].shape == nodes["pool2"].shape == (None, 2, 2, 2)


def test_a_trained_model_gives_its_pools_values_by_name() -> None:
    """``inference`` of a trained plan, asked for the pool after a ReLU (swapped in training), returns the
    user's relu-then-pool value (once: max_pool2d of the convolution, negative values included); the
    ReLU's full-size value is no node of the plan, and asking for it says so."""
    g, loss = _cnn({"kernel_size": 2})
    ex = gd.compile([loss], gd.optim.SGD(0.1))
    xb = np.random.default_rng(0).standard_normal((3, 2, 9, 9))
    expected = gd.compile([gd.Tensor(g, "pool")]).run({"x": xb})[0]
    got = ex.inference(["pool"]).run({"x": xb})[0]
    assert got.min() >= 0
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    with pytest.raises(gd.GraphDLError, match="no forward node"):
        ex.inference(["relu"])


@pytest.mark.parametrize("why", ["relu read twice", "relu is an output", "pool is an output", "indices read",
                                 "indices are an output", "average pooling"])
def test_not_swapped_when_something_else_sees_the_values(why: str) -> None:
    g, out, side = _chain(extra_reader=why == "relu read twice", pool="avg" if why == "average pooling" else "max")
    outputs = {"relu is an output": ("relu1",), "pool is an output": ("pool1",),
               "indices are an output": ("pool1:1",)}.get(why, ())
    ir = g.freeze((out.name, *outputs, *((side.name,) if side is not None else ())))
    if why == "indices read":  # a node reading the argmax indices (output 1 of the pool)
        reader = dataclasses.replace(ir.node_map()["flat"], name="idx_flat", inputs=("pool1:1",))
        ir = ir.replace(nodes=(*ir.nodes, reader), outputs=(*ir.outputs, "idx_flat"))
    before = [(name, op) for name, op, _ in _order(ir)]
    after = [(name, op) for name, op, _ in _order(pool_before_relu(ir))]
    assert after[:2] == before[:2] == [("relu1", "relu"), ("pool1", "max_pool2d" if why != "average pooling"
                                                                   else "avg_pool2d")]
    # the other pair still moves
    assert after[2:4] == [("pool2/before_relu", "max_pool2d"), ("pool2", "relu")] or why == "average pooling"


def _cnn(pool_attrs: dict):
    with gd.Graph("cnn", seed=0, dtype="float64") as g:
        x = gd.placeholder("x", (None, 2, 9, 9))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Conv2D(2, 4, 3, padding=1, name="conv")(x)
        h = gd.layers.MaxPool2D(name="pool", **pool_attrs)(gd.layers.ReLU(name="relu")(h))
        h = gd.layers.Flatten(name="flat")(h)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(gd.layers.Linear(h.shape[1], 3, name="fc")(h), y)
    return g, loss


@pytest.mark.parametrize("pool_attrs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                        {"kernel_size": 2, "stride": 2, "ceil_mode": True}],
                         ids=["2x2", "3x3-s2-pad", "ceil"])
def test_training_with_and_without_the_swap_is_identical(pool_attrs: dict) -> None:
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((5, 2, 9, 9))
    xb[0] = -np.abs(xb[0])  # windows whose values are all negative: ReLU ties at zero in the original order
    yb = rng.integers(0, 3, 5)
    results = []
    for swap in (True, False):
        g, loss = _cnn(pool_attrs)
        # without simplify_algebra in both: behind the swapped pooling it sums the bias gradient from the
        # pooled gradient (the same numbers in another order), which this bit-for-bit comparison would see
        skip = {"simplify_algebra"} if swap else {"simplify_algebra", "pool_before_relu"}
        pipeline = tuple(p for p in PIPELINE if p[0] not in skip)
        ir = compile_graph(g.freeze(), CompileSpec((loss.name,), gd.optim.SGD(0.5)), pipeline=pipeline)
        ops = [n.op for n in ir.nodes if n.op in ("relu", "max_pool2d")]
        assert ops == (["max_pool2d", "relu"] if swap else ["relu", "max_pool2d"])
        ex = Executable(ir, g.values)
        losses = [float(ex.run({"x": xb, "y": yb})[0]) for _ in range(4)]
        results.append((losses, {k: v.copy() for k, v in g.parameters().items()}))
    (l1, p1), (l2, p2) = results
    np.testing.assert_array_equal(l1, l2)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
