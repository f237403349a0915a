"""Constant folding of scalar expressions, as autodiff produces them."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from graphdl.ir import NodeKind
from passes.constant_fold import fold_constants


def test_scalar_ops_of_scalars_become_one_scalar() -> None:
    with gd.Graph("fold", dtype="float64") as g:
        x = gd.placeholder("x", (3,))
        two = g.scalar(2.0, "float64")
        k = gd.ops.exp(gd.ops.neg(two) * 3.0)   # exp(-6), all scalars
        y = x * k
    ir = fold_constants(g.freeze([y.name]))
    folded = ir.node_map()[k.name]
    assert folded.kind is NodeKind.CONSTANT and folded.op == "scalar"
    assert np.isclose(folded.attr["value"], np.exp(-6.0))
    assert ir.node_map()[y.name].op == "mul"  # x is not constant: untouched


def test_mse_gradient_scale_is_folded_and_values_unchanged() -> None:
    rng = np.random.default_rng(0)
    with gd.Graph("mse", dtype="float64"):
        p = gd.placeholder("p", (4, 2))
        t = gd.placeholder("t", (4, 2))
        loss = gd.losses.MSE()(p, t)
    (dp,) = gd.grad(loss, [p])
    ex = gd.compile([dp])
    # the seed 1.0 times 2.0 became one constant: no mul of two scalars is left
    by_name = ex.ir.node_map()
    assert not any(n.op == "mul" and all(by_name[i].op == "scalar" for i in n.inputs) for n in ex.ir.nodes)
    pv, tv = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    (got,) = ex.run({p: pv, t: tv})
    np.testing.assert_allclose(got, 2 * (pv - tv) / pv.size, rtol=1e-12)
