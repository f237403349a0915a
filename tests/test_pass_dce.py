"""Dead-code elimination and the pipeline."""

from __future__ import annotations

import pytest

import graphdl as gd
from passes import PIPELINE, CompileSpec, compile_graph
from passes.dce import eliminate_dead_code


def test_only_what_outputs_and_updates_need_stays(mlp) -> None:
    ir = mlp.g.freeze(("fc1",))
    kept = {n.name for n in eliminate_dead_code(ir).nodes}
    assert kept == {"x", "fc1.W", "fc1.b", "fc1"}


def test_pipeline_is_an_ordered_list_of_named_passes() -> None:
    names = [name for name, _ in PIPELINE]
    assert names.index("add_training") < names.index("eliminate_dead_code") < names.index("toposort")


def test_failing_pass_is_named(mlp) -> None:
    with mlp.g:
        h = gd.ops.sum(mlp.logits, axis=1)  # not a scalar
    with pytest.raises(gd.CompileError) as e:
        compile_graph(mlp.g.freeze(), CompileSpec((h.name,), gd.optim.SGD()))
    assert "must be a scalar" in str(e.value)
    notes = "".join(e.value.__notes__)
    assert ("compiler pass 'add_training' (after: select_outputs, set_mode, pool_before_relu, channel_major, "
            "pool_blocks, user_layout_outputs)") in notes
