"""Properties of whole training plans (fusion, update scheduling, remat, both placements):
values live at the same step never share arena bytes, and a planned step equals an unplanned one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd
from graphdl.executor import BoundPlan
from passes import buffers, specialize
from tests.models import batch, mlp

training_plans = st.fixed_dictionaries({
    "sizes": st.lists(st.integers(2, 9), min_size=2, max_size=7),
    "optimizer": st.sampled_from(["sgd", "momentum", "adam"]),
    "remat": st.sampled_from([None, "sqrt", 1, 2]),
    "online_only": st.booleans(),
})
OPTIMIZERS = {"sgd": lambda: gd.optim.SGD(0.1), "momentum": lambda: gd.optim.SGD(0.1, momentum=0.9),
              "adam": lambda: gd.optim.Adam(0.01)}


def _overlaps(plan) -> list[tuple[str, str]]:
    bad = []
    values = list(plan.live_ranges)
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            (s1, e1), (s2, e2) = plan.live_ranges[a], plan.live_ranges[b]
            sa, sb = plan.slots[a], plan.slots[b]
            if sa.offset < sb.offset + sb.nbytes and sb.offset < sa.offset + sa.nbytes:
                # sharing is only allowed in place: one dies exactly where the other is written
                if not (e1 <= s2 and (e1 < s2 or a in plan.steps[s2].inputs)) and \
                        not (e2 <= s1 and (e2 < s1 or b in plan.steps[s1].inputs)):
                    bad.append((a, b))
    return bad


@settings(max_examples=40, deadline=None)
@given(training_plans)
def test_training_plans_never_overlap_live_values_and_match_unplanned(case) -> None:
    sizes = (6, *case["sizes"], 3)
    saved = buffers.OFFLINE_LIMIT
    buffers.OFFLINE_LIMIT = 0 if case["online_only"] else saved
    try:
        results = []
        for reuse in (True, False):
            g, x, y, loss = mlp(sizes, dtype="float64")
            ex = gd.compile([loss], OPTIMIZERS[case["optimizer"]](), remat=case["remat"])
            plan = specialize(ex.ir, {"x": (5, 6), "y": (5,)}, reuse=reuse)
            if reuse:
                assert not _overlaps(plan)
                assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes
            bound = BoundPlan(plan, ex.ir, ex.values)
            xb, yb = batch(5, 6, 3)
            losses = [float(bound.run({"x": xb.astype(np.float64), "y": yb})[0]) for _ in range(2)]
            results.append((losses, {k: v.copy() for k, v in g.parameters().items()}))
    finally:
        buffers.OFFLINE_LIMIT = saved
    assert results[0][0] == results[1][0]
    for k in results[0][1]:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])
