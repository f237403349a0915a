"""Common-subexpression elimination on small hand-built graphs."""

from __future__ import annotations

import graphdl as gd
from graphdl.ir import NodeKind
from passes.cse import eliminate_common_subexpressions


def _ops(ir) -> list[str]:
    return [n.op for n in ir.nodes]


def test_duplicates_merge_and_readers_follow() -> None:
    with gd.Graph("cse", dtype="float64") as g:
        x = gd.placeholder("x", (3,))
        a = gd.ops.exp(x)
        b = gd.ops.exp(x)          # same as a
        c = gd.ops.tanh(a) + gd.ops.tanh(b)  # the two tanh merge once a and b have
    ir = eliminate_common_subexpressions(g.freeze([c.name]))
    assert _ops(ir).count("exp") == 1 and _ops(ir).count("tanh") == 1
    add = next(n for n in ir.nodes if n.op == "add")
    assert add.inputs[0] == add.inputs[1]


def test_different_attributes_or_outputs_are_kept() -> None:
    with gd.Graph("cse", dtype="float64") as g:
        x = gd.placeholder("x", (3, 4))
        s0 = gd.ops.sum(x, axis=0)
        s1 = gd.ops.sum(x, axis=1)
        e1 = gd.ops.exp(x)
        e2 = gd.ops.exp(x)
    ir = eliminate_common_subexpressions(g.freeze([s0.name, s1.name, e1.name, e2.name]))
    assert _ops(ir).count("sum") == 2 and _ops(ir).count("exp") == 2  # both exp are requested outputs


def test_equal_scalar_constants_merge_but_updates_never() -> None:
    with gd.Graph("cse", dtype="float64") as g:
        x = gd.placeholder("x", (3,))
        y = (x * 2.0) + (x * 2.0)
    ir = eliminate_common_subexpressions(g.freeze([y.name]))
    scalars = [n for n in ir.nodes if n.op == "scalar"]
    assert len(scalars) == 1 and _ops(ir).count("mul") == 1



def test_identical_updates_both_stay() -> None:
    import numpy as np

    with gd.Graph("cse") as g:
        t = g.stored("t", np.zeros((), np.int64), NodeKind.STATE)
        g.apply("increment", [t], name="inc1", kind=NodeKind.UPDATE)
        g.apply("increment", [t], name="inc2", kind=NodeKind.UPDATE)
    ir = eliminate_common_subexpressions(g.freeze())
    assert [n.name for n in ir.nodes if n.kind is NodeKind.UPDATE] == ["inc1", "inc2"]


def test_random_ops_are_never_merged() -> None:
    with gd.Graph("cse") as g:
        x = gd.placeholder("x", (4, 3))
        drop = gd.layers.Dropout(0.5, seed=3)
        a = drop(x)
        b = g.apply("dropout", [x, drop.buffers["counter"]], {"p": 0.5, "seed": 3})  # same op, inputs, attrs
        y = a + b
    ir = eliminate_common_subexpressions(g.freeze([y.name]))
    assert sum(n.op == "dropout" for n in ir.nodes) == 2
