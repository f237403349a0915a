"""Memory is bounded and explained: plans that would not fit are refused before allocating, and the plan
cache (one bound plan per feed-shape signature) is a bounded LRU whose evicted plans free their memory."""

from __future__ import annotations

import gc
import linecache
import weakref

import numpy as np
import pytest

import graphdl as gd
from graphdl import executable
from tests.models import mlp


def _wide(features: int = 256):
    with gd.Graph("wide", seed=0):
        x = gd.placeholder("x", (None, features))
        out = gd.layers.ReLU()(gd.layers.Linear(features, features, name="fc")(x))
    return gd.compile([out]), x


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_plan_larger_than_memory_is_refused_before_allocating() -> None:
    _g, x, y, loss = mlp()
    ex = gd.compile([loss], gd.optim.Adam())
    batch = 2**36  # a feed that costs nothing (a broadcast view) for a plan of terabytes
    feeds = {x: np.broadcast_to(np.zeros(20, np.float32), (batch, 20)), y: np.broadcast_to(np.int64(0), (batch,))}
    before = {k: v.copy() for k, v in ex.values.items()}
    with pytest.raises(gd.ResourceError, match=rf"'mlp' with batch size {batch} needs an arena of [\d,.]+ MiB "
                                               r"\([\d,]+ bytes\).*only .* of memory is available; nothing was "
                                               r"allocated\. Use a smaller batch, or compile with remat='sqrt'"):
        ex.run(feeds)
    assert not ex._plans
    for k, v in before.items():
        np.testing.assert_array_equal(ex.values[k], v)


def test_the_memory_check_uses_available_memory(monkeypatch) -> None:
    assert executable.available_memory() > 0  # MemAvailable here, os.sysconf elsewhere
    ex, x = _wide(16)
    monkeypatch.setattr(executable, "available_memory", lambda: 4096)
    with pytest.raises(gd.ResourceError, match=r"batch size 100 needs an arena of .* \(6,400 bytes\) plus .* "
                                               r"\(1,088 bytes\) for parameters and state, but only .* "
                                               r"\(4,096 bytes\)"):
        ex.run({x: np.ones((100, 16), np.float32)})
    ex.run({x: np.ones((10, 16), np.float32)})  # 640 + 1,088 bytes fit


def test_the_plan_cache_is_a_bounded_lru_that_frees_evicted_plans() -> None:
    ex, x = _wide(8)
    ex.max_cached_plans = 3
    refs, sources = {}, {}
    for b in (1, 2, 3, 1, 4, 5):  # 1 is used again before 4 and 5 arrive: 2 and 3 are the oldest
        ex.run({x: np.ones((b, 8), np.float32)})
        bound = ex.bound_plan({"x": (b, 8)})
        refs[b], sources[b] = weakref.ref(bound), list(bound._filenames)
        del bound
    assert [k[0][0] for k in ex._plans] == [1, 4, 5]
    assert all(name in linecache.cache for name in sources[5])
    assert not any(name in linecache.cache for name in sources[2] + sources[3])
    assert refs[2]() is None and refs[3]() is None and refs[5]() is not None  # freed at once: no cycles
    expected = np.maximum(np.ones((2, 8), np.float32) @ ex.values["fc.W"] + ex.values["fc.b"], 0)
    np.testing.assert_allclose(ex.run({x: np.ones((2, 8), np.float32)})[0], expected, rtol=1e-6)


@pytest.mark.slow
def test_rss_stays_bounded_over_400_batch_sizes() -> None:
    ex, x = _wide()
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((655, 256)).astype(np.float32)
    plan = ex.memory_report(655)
    per_plan = plan["arena_bytes"] + plan["parameter_bytes"]  # the kernels' temporaries are of this order
    for b in range(256, 272):  # fill the cache, warm the allocator
        ex.run({x: xs[:b]})
    gc.collect()
    start = _rss()
    for b in range(272, 656):
        ex.run({x: xs[:b]})
    gc.collect()
    growth = _rss() - start
    # 8 cached plans and the allocator's slack measure ~12 MiB here; unbounded, the 384 plans ~350 MiB
    assert ex.max_cached_plans == 8
    assert growth < 24 * per_plan, f"RSS grew by {growth / 2**20:.1f} MiB ({growth / per_plan:.1f} plans)"
