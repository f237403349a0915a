"""Node names never become code: validated when built and loaded, escaped in generated source."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest

import graphdl as gd
from graphdl import serialize
from graphdl.codegen import generate_source
from graphdl.executor import BoundPlan
from passes import specialize


def write_model(path, graph: dict, weights: dict[str, np.ndarray]) -> None:
    """A model file with the given graph.json data and arrays, and valid checksums."""
    graph_bytes = json.dumps(graph).encode()
    buf = io.BytesIO()
    np.savez(buf, **weights)
    manifest = {"format": "graphdl-model", "format_version": serialize.FORMAT_VERSION, "graphdl_version": "0",
                "members": {"graph.json": serialize.sha256(graph_bytes),
                            "weights.npz": serialize.sha256(buf.getvalue())}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("graph.json", graph_bytes)
        z.writestr("weights.npz", buf.getvalue())


def _payload(marker) -> str:
    return f"relu\nopen({str(marker)!r}, 'w').write('pwned')\n#"


def test_a_node_name_carrying_python_is_refused_on_load_and_nothing_runs(mlp, tmp_path) -> None:
    marker = tmp_path / "pwned.txt"
    predict = gd.compile([mlp.logits])
    data = serialize.graph_to_json(predict.ir)
    evil = _payload(marker)
    for d in data["nodes"]:
        d["inputs"] = [evil if i == "relu" else i for i in d["inputs"]]
        if d["name"] == "relu":
            d["name"] = evil
    write_model(tmp_path / "evil.gdl", data, predict.values)
    with pytest.raises(gd.ModelFileError, match=r"node name .* has characters outside"):
        m = gd.load(tmp_path / "evil.gdl")
        m.run({"x": np.zeros((2, 64), np.float32)})
    assert not marker.exists()


def test_generated_source_escapes_names_even_if_validation_were_bypassed(mlp, tmp_path) -> None:
    """Defence in depth: an IR whose names were never validated still cannot inject code."""
    marker = tmp_path / "pwned.txt"
    ir = gd.compile([mlp.logits]).ir
    evil = _payload(marker)
    nodes = tuple(dataclasses.replace(n, name=evil if n.name == "relu" else n.name,
                                      inputs=tuple(evil if i == "relu" else i for i in n.inputs)) for n in ir.nodes)
    ir = ir.replace(nodes=nodes)
    plan = specialize(ir, {"x": (2, 64)})
    bound = BoundPlan(plan, ir, mlp.g.values)
    bound.run({"x": np.ones((2, 64), np.float32)})
    assert not marker.exists()
    step_lines = [line for src, _ in generate_source(plan, list(bound.arrays)) for line in src.splitlines()
                  if "  # " in line]
    assert len(step_lines) == len(plan.steps)  # the name did not split its step's line
    assert "relu\\nopen(" in bound.source and all(line.isascii() and line.isprintable()
                                                   for line in bound.source.splitlines())


@pytest.mark.parametrize("bad", ["a\nb", "", "x" * 201, "a:0", ".hidden", "/abs", "-x", "a b", "é", "a;b", "a\u2028b"])
def test_builder_refuses_bad_node_names(bad) -> None:
    with gd.Graph("g"):
        with pytest.raises(gd.GraphError, match=r"node name|reserved|must not be empty"):
            gd.placeholder(bad, (None, 3))


def test_colon_is_reserved_and_the_error_says_so() -> None:
    with gd.Graph("g"):
        with pytest.raises(gd.GraphError, match=r"':'.*reserved.*multi-output"):
            gd.placeholder("x:1", (None, 3))


def test_legal_but_odd_names_build_save_load_and_render_safely(tmp_path) -> None:
    odd = "block-1/conv.a_B/9"
    with gd.Graph("odd") as g:
        x = gd.placeholder("in/put-1.x", (None, 4))
        h = gd.layers.Linear(4, 3, name=odd)(x)
        y = g.apply("relu", [h], name="x" * 200)
    m = gd.compile([y])
    src = m.source(batch_size=2)
    assert f"# {odd} (linear)" in src and f"# {'x' * 200} (relu)" in src
    m.save(tmp_path / "odd.gdl")
    loaded = gd.load(tmp_path / "odd.gdl")
    feed = {"in/put-1.x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    assert np.array_equal(loaded.run(feed)[0], m.run(feed)[0])
