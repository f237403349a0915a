"""The generated step function: same results as the plain loop, readable source, errors, no allocation."""

from __future__ import annotations

import gc
import re
import tracemalloc

import numpy as np
import pytest

import graphdl as gd
from tests.models import batch, mlp


def _train(run_name: str, optimizer: gd.optim.Optimizer, steps: int = 3) -> tuple[list[float], dict]:
    _g, _x, _y, loss = mlp()
    ex = gd.compile([loss], optimizer)
    xb, yb = batch(16, 20, 5)
    bound = ex.bound_plan({"x": xb.shape, "y": yb.shape})
    losses = [float(getattr(bound, run_name)({"x": xb, "y": yb})[0]) for _ in range(steps)]
    return losses, {k: v.copy() for k, v in ex.parameters().items()}


@pytest.mark.parametrize("optimizer", [gd.optim.SGD(0.1), gd.optim.SGD(0.1, momentum=0.9), gd.optim.Adam(0.01)],
                         ids=["sgd", "momentum", "adam"])
def test_generated_code_matches_the_loop(optimizer) -> None:
    losses_gen, params_gen = _train("run", optimizer)
    losses_loop, params_loop = _train("run_loop", optimizer)
    assert losses_gen == losses_loop
    assert losses_gen[-1] < losses_gen[0]  # it trains
    for k in params_gen:
        np.testing.assert_array_equal(params_gen[k], params_loop[k])


def test_source_has_one_line_per_step_naming_the_node() -> None:
    _g, _x, _y, loss = mlp()
    ex = gd.compile([loss], gd.optim.SGD(0.1))
    src = ex.source(batch_size=4)
    steps = ex.bound_plan({"x": (4, 20), "y": (4,)}).steps  # the plan's steps and its guard steps
    calls = [line.strip() for line in src.splitlines() if re.match(r"\s+k\d+\(", line)]
    assert len(calls) == len(steps)
    for line, step in zip(calls, steps):
        assert line.endswith(f"# {step.node} ({step.op})")


def test_failing_step_names_node_op_and_shapes() -> None:
    with gd.Graph("bad", dtype="float64"):
        x = gd.placeholder("x", (3,))
        y = gd.ops.exp(x)
        z = gd.ops.log(gd.ops.neg(y))
        w = gd.ops.tanh(z)
    ex = gd.compile([w])
    with np.errstate(invalid="raise"), \
            pytest.raises(gd.ExecutionError, match=r"log at node 'log' failed.*'neg' \(3,\)"):
        ex.run({x: np.ones(3)})
    bound = ex.bound_plan({"x": (3,)})
    with np.errstate(invalid="raise"), pytest.raises(gd.ExecutionError, match=r"log at node 'log'"):
        bound.run_loop({"x": np.ones(3)})


def _allocations_per_step(ex: gd.Executable, feeds: dict, steps: int = 50) -> tuple[int, int]:
    """(net growth over ``steps`` steady-state steps, largest transient allocation within one step)."""
    tracemalloc.start()
    try:
        gc.collect()  # also empties CPython's free lists, which tracemalloc counts as allocated
        for _ in range(20):  # the first steps refill those free lists
            ex.run(feeds, copy=False)
        before, _ = tracemalloc.get_traced_memory()
        peak = 0
        for _ in range(steps):
            tracemalloc.reset_peak()
            start, _ = tracemalloc.get_traced_memory()
            ex.run(feeds, copy=False)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - start)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak


@pytest.mark.parametrize("optimizer", [gd.optim.SGD(0.01), gd.optim.SGD(0.01, momentum=0.9), gd.optim.Adam(1e-3)],
                         ids=["sgd", "momentum", "adam"])
def test_training_step_allocates_no_arrays(optimizer) -> None:
    # Big enough that any per-step array (the smallest activation is 64 x 10 floats) would show.
    _g, x, y, loss = mlp((784, 256, 256, 10))
    ex = gd.compile([loss], optimizer)
    xb, yb = batch(64, 784, 10)
    growth, peak = _allocations_per_step(ex, {x: xb, y: yb})
    assert growth < 256, f"traced memory grew by {growth} bytes over 50 steps"  # < 6 bytes a step
    # The largest transient is ~1 KB of call bookkeeping (ctypes, ufunc iterators); the smallest
    # activation here (64 x 10 float32) is 2.5 KB, so any per-step array would fail this.
    assert peak < 1536, f"a step allocated {peak} bytes at its peak"


def test_out_of_range_label_is_an_execution_error_naming_the_loss() -> None:
    _g, x, y, loss = mlp()
    ex = gd.compile([loss], gd.optim.SGD(0.1))
    xb, yb = batch(4, 20, 5)
    yb[2] = 5
    with pytest.raises(gd.ExecutionError, match=r"softmax_cross_entropy at node 'loss'.*outside \[0, 5\)"):
        ex.run({x: xb, y: yb})
    yb[2] = -1
    with pytest.raises(gd.ExecutionError, match=r"at node 'loss'"):
        ex.run({x: xb, y: yb})


def test_long_plans_run_in_chunks_with_the_same_results_and_errors(monkeypatch) -> None:
    from graphdl import executor

    monkeypatch.setattr(executor, "CHUNK", 3)
    with gd.Graph("chunks", dtype="float64"):
        x = gd.placeholder("x", (4,))
        h = x
        for _ in range(4):
            h = gd.ops.tanh(h * 1.5 + 0.1)
        bad = gd.ops.log(gd.ops.neg(gd.ops.exp(h)))
    ex = gd.compile([h, bad])
    bound = ex.bound_plan({"x": (4,)})
    assert bound.source.count("def chunk_") == -(-len(bound.plan.steps) // 3) > 2
    xv = np.linspace(-1, 1, 4)
    with np.errstate(invalid="ignore"):
        gen = [a.copy() for a in bound.run({"x": xv})]
        loop = [a.copy() for a in bound.run_loop({"x": xv})]
    np.testing.assert_array_equal(gen[0], loop[0])
    with np.errstate(invalid="raise"), pytest.raises(gd.ExecutionError, match=r"log at node 'log'"):
        bound.run({"x": xv})


def test_chunks_with_the_same_code_are_compiled_once_and_errors_name_their_own_node(monkeypatch) -> None:
    import builtins

    from graphdl import executor

    compiled: list[str] = []

    def counting_compile(src, filename, mode):
        compiled.append(filename)
        return builtins.compile(src, filename, mode)

    monkeypatch.setattr(executor, "CHUNK", 2)
    monkeypatch.setattr(executor, "compile", counting_compile, raising=False)
    with gd.Graph("blocks", dtype="float64"):
        x = gd.placeholder("x", (3,))
        h = x
        for c in (0.25, 0.5, 1.0, 0.125, 0.75):  # one chunk per block: sub, then sqrt
            h = gd.ops.sqrt(h - c)
    ex = gd.compile([h])
    bound = ex.bound_plan({"x": (3,)})
    assert [s.op for s in bound.steps] == ["sub", "sqrt"] * 5
    assert bound.source.count("def chunk_") == 5 and len(compiled) == 1
    xv = np.full(3, 100.0)
    with np.errstate(invalid="raise"):
        np.testing.assert_array_equal(bound.run({"x": xv})[0].copy(), bound.run_loop({"x": xv})[0])
    xv = np.full(3, 2.0)  # sqrt(sqrt(2 - .25) - .5) - 1 < 0: the third block's sqrt fails, in chunk 2
    with np.errstate(invalid="raise"), pytest.raises(gd.ExecutionError, match=r"sqrt at node 'sqrt_2' failed"):
        bound.run({"x": xv})


def test_a_traceback_shows_the_generated_line_of_the_failing_step(monkeypatch) -> None:
    """linecache holds each chunk's lines (split from the plan's source when first read)."""
    import linecache
    import traceback

    import graphdl.executor as executor

    monkeypatch.setattr(executor, "CHUNK", 2)
    with gd.Graph("bad", dtype="float64"):
        x = gd.placeholder("x", (3,))
        w = gd.ops.tanh(gd.ops.log(gd.ops.neg(gd.ops.exp(x))))
    ex = gd.compile([w])
    with np.errstate(invalid="raise"), pytest.raises(gd.ExecutionError) as info:
        ex.run({x: np.ones(3)})
    shown = "".join(traceback.format_exception(info.value))
    assert "# log (log)" in shown
    bound = ex.bound_plan({"x": (3,)})
    for filename in bound._filenames:
        lines = linecache.getlines(filename)
        assert lines[0].startswith("def chunk_") and "".join(lines[1:]).count("# ") >= 1
        assert "".join(linecache.getlines(filename)) in bound.source
