"""Buffer planning: live values never share storage; reuse and in-place only when safe."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

import graphdl as gd
from graphdl.ir import NodeKind
from passes import CompileSpec, compile_graph, specialize
from tests.randgraph import random_graphs


def _plan(g, outputs, batch=3, optimizer=None):
    ir = compile_graph(g.freeze(), CompileSpec(tuple(t.name for t in outputs), optimizer))
    return ir, specialize(ir, {"x": (batch, 8)})


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_simultaneously_live_values_never_overlap(case) -> None:
    g, outputs = case
    ir, plan = _plan(g, outputs)
    values = list(plan.live_ranges)
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            (s1, e1), (s2, e2) = plan.live_ranges[a], plan.live_ranges[b]
            sa, sb = plan.slots[a], plan.slots[b]
            overlap_mem = sa.offset < sb.offset + sb.nbytes and sb.offset < sa.offset + sa.nbytes
            if not overlap_mem:
                continue
            # sharing storage is allowed only if one dies exactly where the other is born (in place)
            assert e1 <= s2 or e2 <= s1, (a, b, plan.live_ranges[a], plan.live_ranges[b])
            if e1 == s2:
                assert a in plan.steps[s2].inputs
            if e2 == s1:
                assert b in plan.steps[s1].inputs
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes


@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_planned_execution_equals_unplanned(case) -> None:
    g, outputs = case
    x = np.random.default_rng(0).standard_normal((3, 8)) * 0.5
    exe = gd.compile(outputs)
    planned = exe.run({"x": x})
    from graphdl.executor import BoundPlan

    ir = exe.ir
    unplanned = BoundPlan(specialize(ir, {"x": (3, 8)}, reuse=False), ir, exe.values).run({"x": x})
    for a, b in zip(planned, unplanned, strict=True):
        np.testing.assert_array_equal(a, b)


def test_outputs_params_and_feeds_are_never_reused(mlp) -> None:
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.Adam())
    plan = specialize(train.ir, {"x": (16, 64), "y": (16,)})
    kinds = {n.name: n.kind for n in train.ir.nodes}
    assert not any(kinds[v] in (NodeKind.PARAM, NodeKind.STATE, NodeKind.PLACEHOLDER) for v in plan.slots)
    for out in ("fc2", mlp.loss.name):
        start, end = plan.live_ranges[out]
        assert end == len(plan.steps)
        s = plan.slots[out]
        for v, other in plan.slots.items():
            if v != out and plan.live_ranges[v][1] > start and plan.live_ranges[v][0] >= start:
                assert other.offset >= s.offset + s.nbytes or s.offset >= other.offset + other.nbytes


def test_relu_runs_in_place_at_the_last_use_only() -> None:
    with gd.Graph("inplace", dtype="float64") as g:
        x = gd.placeholder("x", (None, 8))
        a = gd.ops.exp(x)
        b = gd.ops.relu(a)          # a dies here: b may take its buffer
        c = gd.ops.tanh(b) + b      # b is read twice: tanh must not overwrite it
    _, plan = _plan(g, [c])
    assert plan.slots[b.name].offset == plan.slots[a.name].offset
    tanh = next(s.node for s in plan.steps if s.op == "tanh")
    assert plan.slots[tanh].offset != plan.slots[b.name].offset


def test_reshape_takes_its_dying_input_buffer() -> None:
    with gd.Graph("flat", dtype="float64") as g:
        x = gd.placeholder("x", (None, 8))
        a = gd.ops.exp(x)
        flat = gd.ops.reshape(a, (-1, 2, 4))  # a dies here: same bytes, other shape
        out = gd.ops.tanh(flat)
    _, plan = _plan(g, [out])
    assert plan.slots[flat.name].offset == plan.slots[a.name].offset
    xv = np.random.default_rng(1).standard_normal((3, 8))
    np.testing.assert_allclose(gd.compile([out]).run({"x": xv})[0], np.tanh(np.exp(xv)).reshape(3, 2, 4))
