"""Fusing plain SGD with the matmul that computes its weight gradient."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.executable import Executable
from passes import PIPELINE, CompileSpec, compile_graph
from passes.fuse import fuse_sgd_matmul
from tests.models import batch, mlp


def _compile(optimizer, fuse: bool, outputs=None):
    g, x, y, loss = mlp()
    pipeline = PIPELINE if fuse else tuple(p for p in PIPELINE if p[0] != "fuse_sgd_matmul")
    ir = compile_graph(g.freeze(), CompileSpec(tuple(outputs or (loss.name,)), optimizer), pipeline=pipeline)
    return Executable(ir, g.values), g


def test_plain_sgd_weight_updates_become_one_gemm() -> None:
    ex, _ = _compile(gd.optim.SGD(0.1), fuse=True)
    ops = {n.name: n.op for n in ex.ir.nodes}
    assert {ops[f"update/fc{k}.W"] for k in range(3)} == {"matmul_sgd_update"}
    assert {ops[f"update/fc{k}.b"] for k in range(3)} == {"sgd_update"}  # bias gradients are sums
    assert not any(op == "matmul" and name.endswith("matmul_1") for name, op in ops.items())


@pytest.mark.parametrize("schedule", [None, gd.optim.StepLR(step_size=2, gamma=0.5)], ids=["constant", "step"])
def test_fused_training_matches_unfused(schedule) -> None:
    xb, yb = batch(16, 20, 5)
    results = []
    for fuse in (True, False):
        ex, g = _compile(gd.optim.SGD(0.1, schedule=schedule), fuse)
        losses = [float(ex.run({"x": xb, "y": yb})[0]) for _ in range(5)]
        results.append((losses, {k: v.copy() for k, v in g.parameters().items()}))
    (l1, p1), (l2, p2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-5, atol=1e-6)


def test_not_fused_with_momentum_or_when_the_gradient_is_an_output() -> None:
    ex, _ = _compile(gd.optim.SGD(0.1, momentum=0.9), fuse=True)
    assert "matmul_sgd_update" not in {n.op for n in ex.ir.nodes}
    ex, _ = _compile(gd.optim.SGD(0.1), fuse=False)
    grad_w = next(n.inputs[1] for n in ex.ir.nodes if n.name == "update/fc1.W")
    ir = fuse_sgd_matmul(ex.ir.replace(outputs=(*ex.ir.outputs, grad_w)))
    assert ir.node_map()["update/fc1.W"].op == "sgd_update"
