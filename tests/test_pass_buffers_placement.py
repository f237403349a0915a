"""The two placement strategies of the buffer planner, on hand-made lifetimes (no graphs)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd
from passes import buffers
from passes.buffers import _Arena, _place_by_size
from tests.models import mlp

lifetimes = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 8), st.sampled_from([64, 128, 192, 256, 1024, 4096])),
    min_size=1, max_size=40,
)


def _no_overlap(intervals: dict[str, tuple[int, int]], offset: dict[str, int], size: dict[str, int]) -> None:
    names = list(intervals)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (s1, e1), (s2, e2) = intervals[a], intervals[b]
            if s1 <= e2 and s2 <= e1:  # live at a common step
                assert offset[a] + size[a] <= offset[b] or offset[b] + size[b] <= offset[a], (a, b)


@settings(max_examples=100, deadline=None)
@given(lifetimes)
def test_offline_placement_never_overlaps_live_buffers(spec) -> None:
    start = {f"b{k}": s for k, (s, _, _) in enumerate(spec)}
    stop = {f"b{k}": s + d for k, (s, d, _) in enumerate(spec)}
    size = {f"b{k}": n for k, (_, _, n) in enumerate(spec)}
    offset, top = _place_by_size(size, start, stop)
    _no_overlap({b: (start[b], stop[b]) for b in size}, offset, size)
    assert top == max(offset[b] + size[b] for b in size)


@settings(max_examples=100, deadline=None)
@given(lifetimes)
def test_online_arena_never_overlaps_live_buffers_and_reuses_freed_space(spec) -> None:
    events = sorted((s, k) for k, (s, _, _) in enumerate(spec))
    arena, offset, size, live = _Arena(), {}, {}, {}
    for t, k in events:
        for other in [o for o, end in live.items() if end < t]:  # free what died before t
            arena.release(offset[other], size[other])
            del live[other]
        size[k] = spec[k][2]
        offset[k] = arena.alloc(size[k])
        live[k] = t + spec[k][1]
        for o in live:
            if o != k:
                assert offset[o] + size[o] <= offset[k] or offset[k] + size[k] <= offset[o]
    assert arena.size <= sum(size.values())
    for k in list(live):
        arena.release(offset[k], size[k])
    assert arena.by_size == [(arena.size, 0)]  # everything coalesced back into one block


def test_freed_block_is_reused_and_neighbours_coalesce() -> None:
    a = _Arena()
    x, y, z = a.alloc(128), a.alloc(64), a.alloc(128)
    assert (x, y, z) == (0, 128, 192)
    a.release(x, 128)
    a.release(y, 64)  # coalesces with x's block: 192 bytes at 0
    assert a.alloc(192) == 0 and a.size == 320


def test_online_only_plans_stay_within_the_arena_bound(monkeypatch) -> None:
    # Above OFFLINE_LIMIT only the online allocator runs; it must still be a valid, reusing plan.
    monkeypatch.setattr(buffers, "OFFLINE_LIMIT", 0)
    _, _, _, loss = mlp((64, 128, 128, 10))
    r = gd.compile([loss], gd.optim.Adam()).memory_report(64)
    assert r["lower_bound_bytes"] <= r["arena_bytes"] < r["naive_bytes"]


def test_benchmark_mlp_plans_at_the_lower_bound_and_under_half_the_naive_total() -> None:
    for optimizer in (gd.optim.SGD(0.01), gd.optim.Adam()):
        _, _, _, loss = mlp((784, 1024, 1024, 10))
        r = gd.compile([loss], optimizer).memory_report(256)
        assert r["arena_bytes"] <= 1.05 * r["lower_bound_bytes"]
        assert r["arena_bytes"] <= 0.5 * r["naive_bytes"]
