"""Algebraic simplification: identities removed, anything that broadcasts or may differ kept."""

from __future__ import annotations

import graphdl as gd
from passes.dce import eliminate_dead_code
from passes.simplify import simplify_algebra


def _simplified(g, out):
    return eliminate_dead_code(simplify_algebra(g.freeze([out.name])))


def test_multiply_by_one_and_add_zero_disappear() -> None:
    with gd.Graph("s", dtype="float64") as g:
        x = gd.placeholder("x", (3,))
        y = gd.ops.tanh((1.0 * (x * 1.0) + 0.0) / 1.0 - 0.0)
    ir = _simplified(g, y)
    assert [n.op for n in ir.nodes] == ["placeholder", "tanh"]
    assert ir.node_map()[y.name].inputs == ("x",)


def test_identities_that_would_broadcast_or_zero_are_kept() -> None:
    with gd.Graph("s", dtype="float64") as g:
        s = gd.placeholder("s", ())
        ones = gd.constant([1.0, 1.0, 1.0])  # an array of ones: the result is (3,), not s's ()
        y = gd.ops.exp(s * ones)
        z = gd.ops.exp(s * 0.0)  # 0 * inf is nan: not simplified
    ir = simplify_algebra(g.freeze([y.name, z.name]))
    assert sum(n.op == "mul" for n in ir.nodes) == 2


def test_double_negation_and_reshape_chains() -> None:
    with gd.Graph("s", dtype="float64") as g:
        x = gd.placeholder("x", (None, 6))
        a = gd.ops.exp(gd.ops.neg(gd.ops.neg(x)))
        r = gd.ops.reshape(gd.ops.reshape(a, (-1, 2, 3)), (-1, 3, 2))
        back = gd.ops.tanh(gd.ops.reshape(gd.ops.reshape(r, (-1, 2, 3)), (-1, 6)))
    ir = _simplified(g, back)
    ops = [n.op for n in ir.nodes]
    assert "neg" not in ops
    # a -> 2x3 -> 3x2 -> 2x3 -> 6 composes into one reshape back to a's own shape: none is left
    assert ops == ["placeholder", "exp", "tanh"]
    assert ir.node_map()[back.name].inputs == (a.name,)


def test_reshape_chain_to_a_new_shape_keeps_one_reshape() -> None:
    with gd.Graph("s", dtype="float64") as g:
        x = gd.placeholder("x", (None, 6))
        r = gd.ops.tanh(gd.ops.reshape(gd.ops.reshape(x, (-1, 2, 3)), (-1, 3, 2)))
    ir = _simplified(g, r)
    (reshape,) = [n for n in ir.nodes if n.op == "reshape"]
    assert reshape.inputs == ("x",) and reshape.attr["shape"] == (-1, 3, 2)


def test_simplified_graph_computes_the_same_values() -> None:
    import numpy as np

    with gd.Graph("s", dtype="float64"):
        x = gd.placeholder("x", (4, 6))
        y = gd.ops.reshape(gd.ops.reshape(gd.ops.neg(gd.ops.neg(x)) * 1.0 + 0.0, (-1, 3)), (4, 6))
        loss = gd.ops.sum(gd.ops.tanh(y) * x)
    (dx,) = gd.grad(loss, [x])
    xv = np.random.default_rng(0).standard_normal((4, 6))
    got, g = gd.compile([loss, dx]).run({x: xv})
    np.testing.assert_allclose(got, np.sum(np.tanh(xv) * xv), rtol=1e-12)
    np.testing.assert_allclose(g, np.tanh(xv) + xv * (1 - np.tanh(xv) ** 2), rtol=1e-12)
