"""What keeps compile time linear: verification only of changed IRs, no young collection of the whole
graph after a pause, shape rules evaluated once per distinct input, plans that skip no check."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest

import graphdl as gd
import passes
from graphdl.gctools import paused_gc
from graphdl.ir import IR, replace_node
from passes import PIPELINE, CompileSpec, compile_graph
from passes.shapes import concrete_shapes, infer_shapes


def _chain(n: int = 6) -> tuple[gd.Graph, gd.Tensor]:
    with gd.Graph("chain", dtype="float64") as g:
        h = gd.placeholder("x", (None, 3))
        for _ in range(n):
            h = gd.ops.tanh(h * 2.0 + 1.0)
    return g, h


def test_verify_runs_only_after_passes_that_changed_the_ir(monkeypatch) -> None:
    g, h = _chain()
    seen: list[int] = []
    real = passes.verify
    monkeypatch.setattr(passes, "verify", lambda ir: seen.append(id(ir)) or real(ir))
    identity = [(f"same_{k}", lambda ir, spec: ir) for k in range(3)]
    copy = [("copy", lambda ir, spec: ir.replace(nodes=tuple(ir.nodes)))]  # new tuple, same nodes
    compile_graph(g.freeze(), CompileSpec((h.name,)), pipeline=(*PIPELINE[:1], *identity, *copy))
    assert len(seen) == 1  # select_outputs changed the outputs; nothing after it changed anything


def test_a_pass_that_breaks_the_ir_is_named_even_after_passes_that_change_nothing() -> None:
    g, h = _chain()

    def drop_first_tanh(ir: IR, spec: CompileSpec) -> IR:
        first = next(n.name for n in ir.nodes if n.op == "tanh")
        return ir.replace(nodes=tuple(n for n in ir.nodes if n.name != first))

    pipeline = (*PIPELINE[:1], ("same", lambda ir, spec: ir), ("broken", drop_first_tanh),
                ("same_again", lambda ir, spec: ir))
    with pytest.raises(gd.CompileError, match=r"reads 'tanh' before it is defined") as e:
        compile_graph(g.freeze(), CompileSpec((h.name,)), pipeline=pipeline)
    assert "compiler pass 'broken' (after: select_outputs, same)" in "".join(e.value.__notes__)


def test_a_pass_that_swaps_in_an_equal_but_broken_node_is_verified() -> None:
    g, h = _chain()

    def wrong_arity(ir: IR, spec: CompileSpec) -> IR:
        nodes = tuple(replace_node(n, inputs=(*n.inputs, n.inputs[0])) if n.op == "tanh" else n for n in ir.nodes)
        return ir.replace(nodes=nodes)

    with pytest.raises(gd.CompileError, match=r"has 2 inputs; tanh takes 1"):
        compile_graph(g.freeze(), CompileSpec((h.name,)), pipeline=(*PIPELINE[:1], ("arity", wrong_arity)))


def test_replace_node_equals_dataclasses_replace() -> None:
    g, h = _chain(1)
    n = g.freeze().nodes[-1]
    assert replace_node(n, inputs=("x",), shape=(None, 4)) == dataclasses.replace(n, inputs=("x",), shape=(None, 4))
    assert replace_node(n) == n and replace_node(n) is not n


def test_objects_alive_after_a_pause_skip_young_collections_but_cycles_are_still_freed() -> None:
    class Cycle:
        pass

    gc.collect()
    with paused_gc():
        a = Cycle()
        a.me = a
        kept = [Cycle() for _ in range(1000)]
    assert gc.isenabled()
    assert not any(gc.is_tracked(x) and x in gc.get_objects(generation=0) for x in (a, kept[0]))
    assert a in gc.get_objects(generation=2)
    del a
    assert gc.collect() >= 1  # a full collection still reclaims the cycle made during the pause


def test_a_process_that_froze_objects_keeps_them_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            _ = [object() for _ in range(10)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_paused_gc_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_shape_rules_run_once_per_distinct_input_and_errors_still_name_the_node(monkeypatch) -> None:
    from graphdl import registry

    g, h = _chain(8)
    ir = g.freeze((h.name,))
    calls: list[str] = []
    tanh = registry.get_op("tanh")
    monkeypatch.setitem(registry._OPS, "tanh", dataclasses.replace(
        tanh, shape=lambda shapes, attrs: calls.append("s") or tanh.shape(shapes, attrs)))
    assert infer_shapes(ir) is ir  # nothing changed: the same IR back
    assert calls == ["s"]  # eight tanh nodes, one (shape, dtype) combination
    calls.clear()
    shapes = concrete_shapes(ir, {"x": (5, 3)})
    assert calls == ["s"] and shapes[h.name] == (5, 3)
    with gd.Graph("bad") as bad:
        x = gd.placeholder("x", (None, 3))
        y = gd.ops.reshape(x, (-1, 3))
        z = gd.ops.reshape(y, (2, -1))
    with pytest.raises(gd.ShapeError, match=r"reshape at node 'reshape_1'"):
        concrete_shapes(bad.freeze((z.name,)), {"x": (5, 3)})


def test_dead_code_elimination_does_not_depend_on_the_node_order() -> None:
    from passes.dce import eliminate_dead_code

    g, h = _chain(3)
    with g:
        unused = gd.ops.exp(h)
    ir = g.freeze((h.name,))
    kept = [n.name for n in eliminate_dead_code(ir).nodes]
    assert unused.name not in kept and h.name in kept
    shuffled = ir.replace(nodes=tuple(reversed(ir.nodes)))  # every input after its reader
    assert {n.name for n in eliminate_dead_code(shuffled).nodes} == set(kept)
    assert eliminate_dead_code(eliminate_dead_code(ir)) == eliminate_dead_code(ir)


def test_builder_checks_each_attribute_set_once_and_shares_the_frozen_tuple(monkeypatch) -> None:
    import graphdl.builder as builder_module

    calls: list[str] = []
    real = builder_module.attr_problems
    monkeypatch.setattr(builder_module, "attr_problems", lambda op, attrs: calls.append(op.name) or real(op, attrs))
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 3))
        sums = [g.apply("sum", [x], {"axis": (0,), "keepdims": False}) for _ in range(4)]
    assert calls.count("sum") == 1
    assert len({id(s.node.attrs) for s in sums}) == 1
    assert len({id(s.node.shape) for s in sums}) == 1


@pytest.mark.parametrize("bad", [True, np.True_, (True,), "0", 0.0, np.float64(0.0)])
def test_a_checked_attribute_does_not_admit_a_lookalike_of_another_type(bad) -> None:
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 3))
        g.apply("sum", [x], {"axis": (0,), "keepdims": False})
        g.apply("sum", [x], {"axis": 0, "keepdims": False})
        with pytest.raises(gd.GraphError, match=r"sum at node 'bad'.*attribute 'axis'"):
            g.apply("sum", [x], {"axis": bad, "keepdims": False}, name="bad")


@pytest.mark.parametrize("axis", [np.int64(0), (np.int64(0),), [np.int32(0)]])
def test_numpy_integers_are_stored_as_python_ints(axis) -> None:
    """A NumPy integer is the whole number it holds (np.argmax's result, say): stored as a Python int."""
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 3))
        g.apply("sum", [x], {"axis": 0, "keepdims": False})
        value = dict(g.apply("sum", [x], {"axis": axis, "keepdims": False}).node.attrs)["axis"]
    assert value in (0, (0,)) and all(type(v) is int for v in (value if isinstance(value, tuple) else (value,)))


def test_float_zeros_keep_their_sign_after_a_cached_check() -> None:
    with gd.Graph("g") as g:
        a = g.apply("scalar", [], {"value": 0.0, "dtype": "float32"})
        b = g.apply("scalar", [], {"value": -0.0, "dtype": "float32"})
    assert np.copysign(1.0, a.node.attr["value"]) == 1.0
    assert np.copysign(1.0, b.node.attr["value"]) == -1.0
