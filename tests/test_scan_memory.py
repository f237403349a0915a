"""Memory accounting of plans with scans: the bodies' own arenas and input buffers (nested scans too) and
the stacked per-step outputs, against what binding the plan really allocates."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import executable
from graphdl.errors import ResourceError


def _nested_model(hidden: int = 16) -> gd.Executable:
    """A scan (over a batch-sized outer axis) whose body runs a scan over 5 inner steps; trained."""
    rng = np.random.default_rng(1)
    with gd.Graph("nested_mem", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 5, 2, hidden))
        h0 = gd.placeholder("h0", (2, hidden))
        W = g.stored("W", rng.standard_normal((hidden, hidden)) * 0.2)

        def inner(h, x):
            h = gd.ops.tanh(h @ W + x)
            return h, h * 2.0

        def outer(h, seq):
            h_in, ys = gd.ops.scan(inner, h, seq)
            return h_in * 0.5, gd.ops.sum(ys, axis=0)

        h, ys = gd.ops.scan(outer, h0, xs)
        loss = gd.ops.sum(h * h) + gd.ops.sum(ys * ys)
    return gd.compile([loss], gd.optim.SGD(0.01))


def _flatten(bound) -> list:
    return [bound, *(b for body in bound.bodies for b in _flatten(body))]


def test_memory_report_counts_the_bodies_arenas_nested_scans_included() -> None:
    exe = _nested_model()
    report = exe.memory_report(batch_size=7)
    bound = exe.bound_plan({"xs": (7, 5, 2, 16), "h0": (2, 16)})
    plans = _flatten(bound)
    assert len(plans) >= 4, "forward and reverse outer bodies, each binding an inner body"
    assert any(p.bodies for p in bound.bodies), "an outer body binds the inner scan's body"
    inner = sum(p.arena.nbytes for p in plans[1:])
    assert inner > 0 and report["body_bytes"] >= inner
    assert report["body_bytes"] == sum(b.bytes() for b in bound.bodies)
    assert report["plan_bytes"] == bound.bytes() == report["arena_bytes"] + report["body_bytes"] + report["feed_bytes"]
    assert report["feed_bytes"] == (7 * 5 * 2 * 16 + 2 * 16) * 8


def test_history_bytes_are_the_stacked_ys_and_residuals() -> None:
    exe = _nested_model()
    infer = exe.inference([exe.objective])
    a, b = exe.memory_report(batch_size=4), exe.memory_report(batch_size=12)
    # The outer forward scan stacks its y (2 x 16 floats a step) and the residuals of each step for the gradient.
    assert b["history_bytes"] - a["history_bytes"] > 8 * 2 * 16 * 8
    assert b["history_bytes"] <= b["arena_bytes"]
    only = infer.memory_report(batch_size=12)
    assert only["history_bytes"] == 12 * 2 * 16 * 8, "an inference plan stacks only its y"


def test_the_memory_check_counts_the_bodies(monkeypatch) -> None:
    exe = _nested_model(hidden=64)
    report = exe.memory_report(batch_size=3)
    stored = sum(v.nbytes for v in exe.values.values())
    # Enough for the outer arena and the parameters, not for the bodies as well: refused before allocating.
    monkeypatch.setattr(executable, "available_memory",
                        lambda: report["arena_bytes"] + stored + report["body_bytes"] // 2)
    with pytest.raises(ResourceError, match="nested_mem"):
        exe.bound_plan({"xs": (3, 5, 2, 64), "h0": (2, 64)})
    monkeypatch.setattr(executable, "available_memory",
                        lambda: report["arena_bytes"] + stored + report["body_bytes"])
    exe.bound_plan({"xs": (3, 5, 2, 64), "h0": (2, 64)})
