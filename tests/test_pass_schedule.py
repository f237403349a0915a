"""Scheduling updates early: each runs right after its last dependency, and values do not change."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from graphdl.ir import NodeKind
from passes import PIPELINE, CompileSpec, compile_graph
from passes.verify import verify
from tests.models import batch, mlp


def _compile(optimizer, schedule: bool):
    g, x, y, loss = mlp()
    pipeline = PIPELINE if schedule else tuple(p for p in PIPELINE if p[0] != "schedule_updates_early")
    return compile_graph(g.freeze(), CompileSpec((loss.name,), optimizer), pipeline=pipeline), g


def test_each_update_follows_its_gradient_and_the_last_reader_of_its_weight() -> None:
    ir, _ = _compile(gd.optim.Adam(), schedule=True)
    verify(ir)
    order = [n.name for n in ir.nodes]
    nodes = ir.node_map()
    for n in ir.nodes:
        if n.kind is not NodeKind.UPDATE or not n.op.endswith("_update"):
            continue
        p, grad = n.inputs[0], n.inputs[1]
        readers = [m.name for m in ir.nodes if p in m.inputs and m.name != n.name]
        assert order.index(n.name) > max(order.index(r) for r in [grad, *readers])
        assert nodes[grad].kind is NodeKind.GRADIENT
    # the step counter is incremented after every Adam update read it
    inc = order.index("update/optimizer.t")
    assert all(order.index(n.name) < inc for n in ir.nodes if n.op == "adam_update")
    first_update = min(order.index(n.name) for n in ir.nodes if n.kind is NodeKind.UPDATE)
    last_gradient = max(order.index(n.name) for n in ir.nodes if n.kind is NodeKind.GRADIENT)
    assert first_update < last_gradient  # updates really moved into the backward pass


def test_scheduled_training_equals_unscheduled() -> None:
    from graphdl.executable import Executable

    xb, yb = batch(16, 20, 5)
    params = []
    for schedule in (True, False):
        ir, g = _compile(gd.optim.Adam(0.01), schedule)
        ex = Executable(ir, g.values)
        for _ in range(3):
            ex.run({"x": xb, "y": yb})
        params.append({k: v.copy() for k, v in g.parameters().items()})
    for k in params[0]:
        np.testing.assert_array_equal(params[0][k], params[1][k])
