"""The set_mode pass on small graphs, without the executor."""

from __future__ import annotations

import graphdl as gd
from graphdl import layers as L
from graphdl.ir import NodeKind
from passes.mode import set_mode


def _ir():
    with gd.Graph("m") as g:
        x = gd.placeholder("x", (None, 4))
        h = L.Dropout(0.5, name="drop")(L.BatchNorm1D(4, name="bn")(x))
        y = L.ReLU(name="act")(h)
    return g.freeze((y.name,))


def test_inference_mode_annotates_and_adds_nothing() -> None:
    ir = _ir()
    out = set_mode(ir, False)
    by = out.node_map()
    assert by["bn"].attr["training"] is False and by["drop"].attr["training"] is False
    assert "training" not in by["act"].attr
    assert len(out.nodes) == len(ir.nodes)
    assert "training" not in ir.node_map()["bn"].attr  # the input IR is not changed


def test_training_mode_adds_one_update_per_state() -> None:
    out = set_mode(_ir(), True)
    updates = {n.name: n for n in out.nodes if n.kind is NodeKind.UPDATE}
    assert set(updates) == {"update/bn", "update/drop.counter"}
    assert updates["update/bn"].op == "batch_norm_update"  # reads the statistics bn computed (bn:1, bn:2)
    assert updates["update/bn"].inputs == ("x", "bn:1", "bn:2", "bn.running_mean", "bn.running_var")
    assert updates["update/drop.counter"].op == "increment"


def test_annotated_graph_passes_through_unchanged() -> None:
    once = set_mode(_ir(), True)
    assert set_mode(once, None) == once
    assert set_mode(once, False) == once  # a reloaded training model keeps its mode
