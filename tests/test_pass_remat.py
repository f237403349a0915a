"""Rematerialisation: identical training, O(sqrt(n)) activation memory, at most one extra forward."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.ir import NodeKind
from tests.models import batch, mlp


def _deep(n: int):
    return mlp((16,) + (32,) * n + (4,))


@pytest.mark.parametrize("optimizer", [gd.optim.SGD(0.1), gd.optim.Adam(0.01)], ids=["sgd", "adam"])
def test_training_with_remat_is_bit_identical(optimizer) -> None:
    xb, yb = batch(8, 16, 4)
    results = []
    for remat in (None, "sqrt", 3):
        g, x, y, loss = _deep(12)
        ex = gd.compile([loss], optimizer, remat=remat)
        losses = [float(ex.run({x: xb, y: yb})[0]) for _ in range(3)]
        results.append((losses, {k: v.copy() for k, v in g.parameters().items()}))
    (l0, p0) = results[0]
    for losses, params in results[1:]:
        assert losses == l0
        for k in p0:
            np.testing.assert_array_equal(params[k], p0[k])


def test_fifty_layer_chain_needs_sqrt_memory_and_at_most_one_extra_forward() -> None:
    arena = {}
    for n in (50, 100):
        for remat in (None, "sqrt"):
            _, _, _, loss = _deep(n)
            ex = gd.compile([loss], gd.optim.SGD(0.1), remat=remat)
            arena[n, remat] = ex.memory_report(64)["arena_bytes"]
            forward = sum(node.kind in (NodeKind.OP, NodeKind.LOSS) for node in ex.ir.nodes)
            extra = sum(node.name.startswith("remat/") for node in ex.ir.nodes)
            assert extra <= forward
    assert arena[50, "sqrt"] < 0.4 * arena[50, None]
    # doubling the depth doubles the plain plan but grows the remat plan by about sqrt(2)
    assert arena[100, None] > 1.9 * arena[50, None]
    assert arena[100, "sqrt"] < 1.6 * arena[50, "sqrt"]


def test_recomputed_values_are_inserted_just_before_the_backward_nodes_that_read_them() -> None:
    _, _, _, loss = _deep(9)
    ex = gd.compile([loss], gd.optim.SGD(0.1), remat="sqrt")
    order = [n.name for n in ex.ir.nodes]
    first_backward = min(order.index(n.name) for n in ex.ir.nodes if n.kind is NodeKind.GRADIENT
                         and not n.name.startswith("remat/"))
    clones = [i for i, name in enumerate(order) if name.startswith("remat/")]
    assert clones and min(clones) > first_backward
    for n in ex.ir.nodes:  # no backward node reads a recomputed value's original
        if n.kind is NodeKind.GRADIENT and not n.name.startswith("remat/"):
            assert not any(f"remat/{i}" in order for i in n.inputs)


def test_bad_policy_is_a_compile_error() -> None:
    _, _, _, loss = _deep(2)
    with pytest.raises(gd.CompileError, match=r"remat must be None, 'sqrt' or a positive segment length"):
        gd.compile([loss], gd.optim.SGD(0.1), remat="everything")


def test_dropout_is_never_recomputed_and_training_stays_identical() -> None:
    xb, yb = batch(8, 16, 4)
    results = []
    for remat in (None, 2):
        with gd.Graph("drop", seed=0) as g:
            x = gd.placeholder("x", (None, 16))
            y = gd.placeholder("y", (None,), dtype="int64")
            h = x
            for k in range(6):
                h = gd.layers.Dropout(0.3, seed=k)(gd.layers.ReLU()(gd.layers.Linear(16, 16)(h)))
            loss = gd.losses.SoftmaxCrossEntropy()(gd.layers.Linear(16, 4)(h), y)
        ex = gd.compile([loss], gd.optim.SGD(0.1), remat=remat)
        if remat:
            recomputed_ops = {n.op for n in ex.ir.nodes if n.name.startswith("remat/")}
            assert recomputed_ops and "dropout" not in recomputed_ops
        losses = [float(ex.run({x: xb, y: yb})[0]) for _ in range(3)]
        results.append((losses, {k: v.copy() for k, v in g.parameters().items()}))
    assert results[0][0] == results[1][0]
    for k in results[0][1]:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])
