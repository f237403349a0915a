"""Side effects are declared on each op (OpDef.effects); passes ask that, never a node's kind or name."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from graphdl.builder import Builder
from graphdl.ir import Node, NodeKind, make_attrs
from graphdl.registry import all_ops, get_op
from passes.constant_fold import fold_constants
from passes.cse import eliminate_common_subexpressions
from passes.dce import eliminate_dead_code
from passes.rewrite import is_pure


def _state(name: str, shape: tuple = (), dtype: str = "int64") -> Node:
    return Node(name, NodeKind.STATE, "state", attrs=make_attrs({"init": "zeros"}), shape=shape, dtype=dtype)


def test_declarations() -> None:
    assert get_op("sgd_update").effects.writes == (0, 3) and not get_op("sgd_update").effects.pure
    assert get_op("dropout").effects.random and get_op("dropout").effects.advances == (1,)
    for name in ("learning_rate", "mul", "sum", "sqrt", "batch_norm"):
        assert get_op(name).effects.pure, name
    for op in all_ops().values():  # the shorthand and the declaration never disagree
        assert op.writes == op.effects.writes, op.name


def test_cse_merges_identical_optimizer_arithmetic_whatever_its_kind() -> None:
    b = Builder("opt")
    t = b.add_node(_state("step"))
    lr1 = b.apply("learning_rate", [t], {"lr": 0.1, "dtype": "float32"}, name="optimizer.lr", kind=NodeKind.UPDATE)
    lr2 = b.apply("learning_rate", [t], {"lr": 0.1, "dtype": "float32"}, name="optimizer.lr_1", kind=NodeKind.UPDATE)
    out = b.apply("add", [lr1, lr2])
    ir = eliminate_dead_code(eliminate_common_subexpressions(b.freeze([out.name])))
    assert [n.name for n in ir.nodes if n.op == "learning_rate"] == ["optimizer.lr"]
    assert ir.node_map()[out.name].inputs == ("optimizer.lr", "optimizer.lr")


def test_constant_folding_ignores_the_kind() -> None:
    b = Builder("fold")
    three = b.apply("mul", [2.0, 1.5], kind=NodeKind.UPDATE)  # e.g. an optimizer's scale factor
    ir = fold_constants(b.freeze([three.name]))
    node = ir.node_map()[three.name]
    assert node.op == "scalar" and node.attr["value"] == 3.0


def test_cse_never_merges_two_dropouts() -> None:
    b = Builder("drop")
    x = b.add_node(Node("x", NodeKind.PLACEHOLDER, "placeholder", shape=(None, 4)))
    c = b.add_node(_state("counter", (1,)))
    d1 = b.apply("dropout", [x, c], {"p": 0.5, "seed": 0, "training": True})
    d2 = b.apply("dropout", [x, c], {"p": 0.5, "seed": 0, "training": True})
    out = b.apply("add", [d1, d2])
    ir = eliminate_common_subexpressions(b.freeze([out.name]))
    assert sum(n.op == "dropout" for n in ir.nodes) == 2
    assert not is_pure(ir.node_map()[d1.name])


def test_dce_keeps_writers_by_their_effects_not_their_kind() -> None:
    b = Builder("w")
    t = b.add_node(_state("step"))
    b.apply("increment", [t], name="bump", kind=NodeKind.OP)  # mislabelled kind: the effect still counts
    b.apply("learning_rate", [t], {"lr": 0.1, "dtype": "float32"}, kind=NodeKind.UPDATE)  # pure: dead
    ir = eliminate_dead_code(b.freeze([]))
    assert [n.name for n in ir.nodes] == ["step", "bump"]


def test_builder_tags_writers_as_updates() -> None:
    b = Builder("k")
    t = b.add_node(_state("step"))
    assert b.apply("increment", [t]).node.kind is NodeKind.UPDATE
    assert b.apply("learning_rate", [t], {"lr": 0.1, "dtype": "float32"}).node.kind is NodeKind.OP


def _dropout_model(shared: bool) -> tuple[gd.Graph, gd.Tensor, gd.Tensor]:
    with gd.Graph("d") as g:
        x = gd.placeholder("x", (None, 6))
        drop = gd.layers.Dropout(0.5)
        h = drop(gd.layers.Linear(6, 6)(x))
        h = (drop if shared else gd.layers.Dropout(0.5))(h)
        loss = gd.ops.mean(h * h)
    return g, x, loss


def test_one_counter_increment_per_counter_from_declared_effects() -> None:
    for shared, counters in ((True, 1), (False, 2)):
        _, x, loss = _dropout_model(shared)
        exe = gd.compile([loss], gd.optim.SGD(0.1))
        states = {n.name for n in exe.ir.nodes if n.kind is NodeKind.STATE and "counter" in n.name}
        incs = [n for n in exe.ir.nodes if n.op == "increment" and n.inputs[0] in states]
        assert len(states) == counters and sorted(n.inputs[0] for n in incs) == sorted(states)
        before = {s: exe.values[s].copy() for s in states}
        exe.run({x: np.ones((4, 6), np.float32)})
        for s in states:
            assert exe.values[s][0] == before[s][0] + 1


def test_recompiling_a_compiled_training_graph_adds_no_second_increment(tmp_path) -> None:
    _, x, loss = _dropout_model(False)
    exe = gd.compile([loss], gd.optim.SGD(0.1))
    path = str(tmp_path / "d.gdl")
    exe.save(path)
    back = gd.load(path)
    assert sum(n.op == "increment" for n in back.ir.nodes) == sum(n.op == "increment" for n in exe.ir.nodes)
