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


def _conv_pool(pool: dict, *, channels: int = 1, cout: int = 4):
    """conv(channels -> cout, bias) -> max pooling -> objective sum(y * r): the bias gradient is a sum of
    the pooling's gradient. Returns the input, the bias parameter and the objective."""
    import numpy as np

    from graphdl import layers

    with gd.Graph("cp", seed=0, dtype="float64"):
        x = gd.placeholder("x", (None, channels, 8, 6))
        conv = layers.Conv2D(channels, cout, 3, padding=1, name="conv")
        y = layers.MaxPool2D(name="pool", **pool)(conv(x))
        r = gd.constant(np.random.default_rng(2).standard_normal((1, *y.shape[1:])))
        loss = gd.ops.sum(y * r)
    return x, conv.params["b"], loss


def test_bias_gradient_behind_max_pooling_sums_the_pooled_gradient() -> None:
    """Both poolings: a first layer (fused with its blocked pooling, whose gradient rule sums the pooled
    gradient itself) and a wider one (max_pool2d: simplified)."""
    for channels, cout, pool_op in ((1, 10, "max_pool_blocks_grad"), (3, 4, "max_pool2d_grad")):
        _, _, loss = _conv_pool({"kernel_size": 2}, channels=channels, cout=cout)
        ex = gd.compile([loss], gd.optim.SGD(0.1))
        (bias_sum,) = [n for n in ex.ir.nodes if n.op == "sum" and n.name.startswith(("grad/conv", "grad/pool"))]
        (routing,) = [n for n in ex.ir.nodes if n.op == pool_op]
        assert bias_sum.inputs == (routing.inputs[0],)  # the pooled gradient, not the routed image


def test_routed_bias_gradient_matches_finite_differences() -> None:
    """Overlapping windows (stride 1) with padding (not rewritten), ceil_mode, tiling windows; a first
    layer and a wider one: the bias gradient, summed from the pooled gradient, against central
    differences in float64."""
    import numpy as np

    pools = ({"kernel_size": 3, "stride": 1, "padding": 1}, {"kernel_size": 2, "stride": 2, "ceil_mode": True},
             {"kernel_size": 2})
    for pool in pools:
        for channels, cout in ((1, 10), (2, 3)):
            x, b, loss = _conv_pool(pool, channels=channels, cout=cout)
            (db,) = gd.grad(loss, [b])
            xv = np.random.default_rng(3).standard_normal((2, channels, 8, 6))
            model = gd.compile([loss, db])
            # only the bias gradient read the routing gradient: summing the pooled one instead, it is
            # gone, unless padding comes first in a window (then g may be dropped at the padding)
            routed = "max_pool2d_grad" in {n.op for n in model.ir.nodes}
            assert routed == ("padding" in pool)
            bias = model.parameters()[b.name]
            _, grad = model.run({x: xv})
            numeric = np.empty_like(bias)
            for k in range(bias.size):
                bias[k] += 1e-6
                up = float(model.run({x: xv})[0])
                bias[k] -= 2e-6
                down = float(model.run({x: xv})[0])
                bias[k] += 1e-6
                numeric[k] = (up - down) / 2e-6
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
