"""Ops that may overwrite their input (``inplace``) give the same result when the planner aliases them.

Each op reads a computed value that dies at it, so the buffer planner hands the op its input's buffer;
the result must equal a plan without any reuse.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.executor import BoundPlan
from graphdl.registry import all_ops
from passes import specialize

ATTRS = {"leaky_relu": {"negative_slope": 0.1}, "clip": {"min": -0.3, "max": 0.4}, "gelu": {"approximate": "tanh"},
         "dropout": {"p": 0.5, "seed": 3, "training": True}, "log_softmax": {"axis": 1}, "softmax": {"axis": 1}}
UNARY = ["sqrt", "sign", "abs", "clip", "erf", "leaky_relu", "elu", "gelu", "silu", "softplus", "log_softmax",
         "softmax", "exp", "log", "relu", "sigmoid", "tanh", "neg"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]


def _run(op: str, reuse: bool) -> tuple[np.ndarray, bool]:
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((4, 6))
    with gd.Graph("alias", dtype="float64") as g:
        x = gd.placeholder("x", (4, 6))
        t = gd.ops.exp(x) * 0.7  # computed, dies at the op below
        if op == "dropout":
            counter = g.stored("counter", np.zeros(1, dtype=np.int64), gd.NodeKind.STATE)
            y = g.apply(op, [t, counter], ATTRS[op])
        elif op in BINARY:
            y = g.apply(op, [t, gd.ops.exp(x * 0.5)], ATTRS.get(op, {}))
        else:
            y = g.apply(op, [t], ATTRS.get(op, {}))
        out = gd.ops.sum(y * 1.0, axis=1)
    exe = gd.compile([out])
    plan = specialize(exe.ir, {"x": (4, 6)}, reuse=reuse)
    aliased = plan.slots[y.name].offset == plan.slots[t.name].offset
    return BoundPlan(plan, exe.ir, exe.values).run({"x": xv})[0].copy(), aliased


@pytest.mark.parametrize("op", [*UNARY, *BINARY, "dropout"])
def test_inplace_op_matches_plan_without_reuse(op: str) -> None:
    assert all_ops()[op].inplace, f"{op} is not declared in place"
    got, aliased = _run(op, reuse=True)
    assert aliased, "the planner did not alias the op with its input; the test checks nothing"
    expected, _ = _run(op, reuse=False)
    np.testing.assert_array_equal(got, expected)
