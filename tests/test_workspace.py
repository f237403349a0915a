"""Kernel workspace inside the plan: declared by OpDef.workspace, placed in the arena for one step,
never sharing bytes with anything live at that step, counted by memory_report, and used by the
kernels instead of allocations of their own."""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd
from graphdl.executor import BoundPlan
from passes import specialize


def _intervals(plan) -> list[tuple[str, int, int, object]]:
    """(label, first step, last step, slot) of every value and every workspace buffer."""
    items = [(v, *plan.live_ranges[v], plan.slots[v]) for v in plan.live_ranges]
    index = {s.node: i for i, s in enumerate(plan.steps)}
    for node, slots in plan.workspace.items():
        items += [(f"{node}/workspace{k}", index[node], index[node], slot) for k, slot in enumerate(slots)]
    return items


def overlaps(plan) -> list[tuple[str, str]]:
    """Pairs of buffers live at the same step whose bytes overlap (in place excepted: a value
    written over an input that dies at that very step)."""
    bad = []
    items = _intervals(plan)
    for k, (a, s1, e1, sa) in enumerate(items):
        for b, s2, e2, sb in items[k + 1:]:
            if not (sa.offset < sb.offset + sb.nbytes and sb.offset < sa.offset + sa.nbytes):
                continue
            in_place_ab = e1 == s2 and a in plan.steps[s2].inputs and b == plan.steps[s2].output
            in_place_ba = e2 == s1 and b in plan.steps[s1].inputs and a == plan.steps[s1].output
            if not (e1 < s2 or e2 < s1 or in_place_ab or in_place_ba):
                bad.append((a, b))
    return bad


def cnn(channels: int, kernel: int, stride: int, padding: int, pool: str, dtype: str = "float64"):
    with gd.Graph("cnn", seed=0, dtype=dtype):
        x = gd.placeholder("x", (None, 2, 9, 9))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Conv2D(2, channels, kernel, stride=stride, padding=padding, name="conv")(x)
        h = gd.layers.ReLU(name="relu")(h)
        h = (gd.layers.MaxPool2D if pool == "max" else gd.layers.AvgPool2D)(2, name="pool")(h)
        h = gd.layers.Flatten(name="flat")(gd.layers.Conv2D(channels, 3, 1, name="conv2")(h))
        size = h.shape[1]
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(gd.layers.Linear(size, 3, name="fc")(h), y)
    return x, y, loss


cnn_cases = st.fixed_dictionaries({
    "channels": st.integers(1, 4), "kernel": st.sampled_from([1, 2, 3]), "stride": st.sampled_from([1, 2]),
    "padding": st.integers(0, 1), "pool": st.sampled_from(["max", "avg"]), "batch": st.sampled_from([1, 3]),
})


@settings(max_examples=25, deadline=None)
@given(cnn_cases)
def test_workspace_never_shares_bytes_with_live_buffers_and_planned_equals_unplanned(case) -> None:
    batch = case.pop("batch")
    rng = np.random.default_rng(0)
    xb, yb = rng.standard_normal((batch, 2, 9, 9)), rng.integers(0, 3, batch)
    results = []
    for reuse in (True, False):
        x, y, loss = cnn(**case)
        ex = gd.compile([loss], gd.optim.SGD(0.1))
        plan = specialize(ex.ir, {"x": xb.shape, "y": yb.shape}, reuse=reuse)
        assert plan.workspace, "convolution and pooling kernels declare workspace"
        if reuse:
            assert not overlaps(plan)
            assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes
        bound = BoundPlan(plan, ex.ir, ex.values)
        results.append([float(bound.run({"x": xb, "y": yb})[0]) for _ in range(3)])
    assert results[0] == results[1]


def test_memory_report_counts_workspace_and_kernels_allocate_nothing_per_step() -> None:
    x, y, loss = cnn(4, 3, 1, 1, "max", dtype="float32")
    ex = gd.compile([loss], gd.optim.SGD(0.1))
    report = ex.memory_report(64)
    assert report["workspace_bytes"] > 0
    assert report["lower_bound_bytes"] <= report["arena_bytes"] <= report["naive_bytes"]
    # the largest step's scratch: conv2d_weight_grad's columns (2*3*3 rows x 64*9*9 pixels); no copy of g,
    # which the layout pass keeps channel-major (passes.layout)
    assert any(n.attr.get("channel_major") for n in ex.ir.nodes if n.op == "conv2d")
    assert report["workspace_bytes"] >= 2 * 9 * 64 * 81 * 4
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((64, 2, 9, 9)).astype(np.float32), "y": rng.integers(0, 3, 64)}
    ex.run(feeds, copy=False)
    tracemalloc.start()
    try:
        ex.run(feeds, copy=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # NumPy's ufunc iteration buffers (about 40 KB) are all a step may allocate; the smallest
    # workspace buffer here (conv2d's columns) is 373 KB
    assert peak < 96 * 1024, f"a steady-state step allocated {peak} bytes"


def test_kernels_built_outside_a_plan_allocate_their_declared_workspace() -> None:
    from graphdl.registry import get_op

    attrs = {"kernel": (3, 3), "stride": (1, 1), "dilation": (1, 1), "padding": (1, 1, 1, 1), "groups": 1}
    op = get_op("conv2d")
    shapes = ((2, 3, 5, 5), (4, 3, 3, 3))
    declared = op.workspace(attrs, shapes, (2, 4, 5, 5), np.dtype(np.float64))
    # columns, the GEMM's channel-major result, and (columns this small are gathered) the padded copy of x
    assert [s for s, _ in declared] == [(3 * 9 * 2 * 25,), (4 * 2 * 25,), (3, 2, 7, 7)]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    out_own, out_given = np.empty((2, 4, 5, 5)), np.empty((2, 4, 5, 5))
    op.kernel(attrs, shapes, (2, 4, 5, 5), np.dtype(np.float64))(x, w, out_own)
    given = [np.full(int(np.prod(s)) * 8 + 64, 255, np.uint8) for s, _ in declared]  # dirty bytes
    op.kernel(attrs, shapes, (2, 4, 5, 5), np.dtype(np.float64), workspace=given)(x, w, out_given)
    np.testing.assert_array_equal(out_own, out_given)
