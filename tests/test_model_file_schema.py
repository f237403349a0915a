"""graph.json is checked against a strict schema; the builder checks attributes against the same per-op schema."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import graphdl as gd
from graphdl import serialize
from graphdl.attrs import ABSENT
from graphdl.registry import all_ops, attr_problems
from tests.test_model_file_names import write_model


def test_every_op_declares_an_attribute_schema() -> None:
    missing = [name for name, op in all_ops().items() if op.attr_schema is None]
    assert not missing, f"ops without attr_schema: {missing}"
    for name, op in all_ops().items():
        for key, spec in op.attr_schema.items():
            if not spec.required and spec.default is not ABSENT:
                assert spec.problem(spec.default) is None, (name, key)  # every default fits its own spec


@pytest.fixture
def bn_model():
    with gd.Graph("bn", seed=1) as g:
        x = gd.placeholder("x", (None, 3, 6, 6))
        h = gd.layers.Conv2D(3, 4, 3, padding=1, name="conv")(x)
        h = gd.layers.BatchNorm2D(4, name="bn")(h)
        out = gd.ops.mean(gd.ops.relu(h), axis=(2, 3))
    train = gd.compile([out], training=False)
    return g, train


def _edit_and_load(tmp_path, model, edit):
    data = serialize.graph_to_json(model.ir)
    if model.objective is not None:
        data["objective"] = model.objective
    edit(data)
    write_model(tmp_path / "m.gdl", data, model.values)
    return gd.load(tmp_path / "m.gdl")


def _node(data, name):
    return next(d for d in data["nodes"] if d["name"] == name)


@pytest.mark.parametrize(("key", "bad", "pattern"), [
    ("training", "False", r"'training' must be a bool, got str"),
    ("training", 0, r"'training' must be a bool, got int"),
    ("eps", None, r"'eps' must be a number, got null"),
    ("eps", "1e-5", r"'eps' must be a number"),
    ("eps", -1.0, r"'eps' must be >= 0"),
    ("momentum", [0.1], r"'momentum' must be a number"),
    ("colour", "red", r"unknown attribute 'colour'"),
])
def test_mistyped_attributes_in_a_file_are_refused(tmp_path, bn_model, key, bad, pattern) -> None:
    _, model = bn_model

    def edit(data):
        _node(data, "bn")["attrs"][key] = bad

    with pytest.raises(gd.ModelFileError, match=rf"node 'bn'.*{pattern}"):
        _edit_and_load(tmp_path, model, edit)


def test_a_missing_attribute_is_refused_not_defaulted(tmp_path, bn_model) -> None:
    _, model = bn_model
    with pytest.raises(gd.ModelFileError, match=r"node 'bn'.*attribute 'training' is missing"):
        _edit_and_load(tmp_path, model, lambda data: _node(data, "bn")["attrs"].pop("training"))
    with pytest.raises(gd.ModelFileError, match=r"node 'conv'.*attribute 'kernel' is missing"):
        _edit_and_load(tmp_path, model, lambda data: _node(data, "conv")["attrs"].pop("kernel"))


def test_scalar_value_null_is_refused(tmp_path) -> None:
    with gd.Graph("s"):
        x = gd.placeholder("x", (None, 2))
        y = x * 3.0
    model = gd.compile([y])
    scalar = next(n.name for n in model.ir.nodes if n.op == "scalar")
    with pytest.raises(gd.ModelFileError, match=rf"node '{scalar}'.*'value' must be a number, got null"):
        _edit_and_load(tmp_path, model, lambda data: _node(data, scalar)["attrs"].update(value=None))


def test_sgd_nesterov_as_a_string_is_refused(tmp_path, mlp) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1, momentum=0.9))
    update = next(n.name for n in train.ir.nodes if n.op == "sgd_update")

    def edit(data):
        _node(data, update)["attrs"]["nesterov"] = "false"

    with pytest.raises(gd.ModelFileError, match=r"'nesterov' must be a bool, got str"):
        _edit_and_load(tmp_path, train, edit)


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda d: d.pop("outputs"), r"missing \['outputs'\]"),
    (lambda d: d.update(extra=1), r"unknown \['extra'\]"),
    (lambda d: d.update(nodes={}), r"nodes must be a non-empty list"),
    (lambda d: d["nodes"][0].pop("attrs"), r"node 'x': missing keys \['attrs'\]"),
    (lambda d: d["nodes"][0].update(kind="weird"), r"node 'x': kind must be one of"),
    (lambda d: d["nodes"][0].update(shape=[-1, 64]), r"every dimension must be a non-negative int"),
    (lambda d: d["nodes"][0].update(shape=[None, 64.0]), r"every dimension must be"),
    (lambda d: d["nodes"][0].update(shape="(None, 64)"), r"shape must be a list"),
    (lambda d: d["nodes"][0].update(dtype="object"), r"dtype must be one of"),
    (lambda d: d["nodes"][1].update(shape=[None, 128]), r"node 'fc1.W'.*non-negative int,? \(at most"),
    (lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][1])), r"node name 'fc1.W' appears twice"),
    (lambda d: _node(d, "fc1").update(inputs=["x", "nope", "fc1.b"]), r"reads 'nope', which is not a value"),
    (lambda d: _node(d, "fc1").update(inputs=["x", "fc2.W", "fc1.b"]), r"node 'fc1'.*inconsistent with its inputs"),
    (lambda d: _node(d, "fc1").update(op="os.system"), r"unknown op 'os.system'"),
    (lambda d: _node(d, "fc1").update(op="param"), r"op 'param' belongs to a leaf node"),
    (lambda d: _node(d, "fc1").update(shape=[None, 127]), r"node 'fc1'.*stored as \(\?, 127\).*gives \(\?, 128\)"),
    (lambda d: _node(d, "fc1").update(dtype="float64"), r"node 'fc1'.*float64.*gives .*float32"),
    (lambda d: d.update(outputs=["nope"]), r"outputs must be a non-empty list of distinct values"),
    (lambda d: d.update(objective=3), r"objective '3' is not one of the outputs"),
    (lambda d: _node(d, "relu").update(inputs=["fc2"]), r"cycle"),
])
def test_structural_errors_are_model_file_errors_naming_the_problem(tmp_path, mlp, edit, pattern) -> None:
    with pytest.raises(gd.ModelFileError, match=pattern):
        _edit_and_load(tmp_path, gd.compile([mlp.logits]), edit)


def test_any_exception_of_an_op_rule_is_a_model_file_error_naming_the_node(tmp_path, mlp, monkeypatch) -> None:
    import dataclasses

    import graphdl.registry as registry
    from graphdl.registry import get_op

    def broken(shapes, attrs):
        raise ZeroDivisionError("boom")

    model = gd.compile([mlp.logits])
    monkeypatch.setitem(registry._OPS, "relu", dataclasses.replace(get_op("relu"), shape=broken))
    with pytest.raises(gd.ModelFileError, match=r"node 'relu'.*ZeroDivisionError: boom"):
        _edit_and_load(tmp_path, model, lambda d: None)


def test_nodes_stored_out_of_order_are_sorted_and_behave_the_same(tmp_path, mlp, batch) -> None:
    model = gd.compile([mlp.logits])
    loaded = _edit_and_load(tmp_path, model, lambda d: d["nodes"].reverse())
    assert np.array_equal(loaded.run({"x": batch[0]})[0], model.run({"x": batch[0]})[0])


def test_builder_checks_attributes_against_the_same_schema() -> None:
    with gd.Graph("g"):
        x = gd.placeholder("x", (None, 4))
        with pytest.raises(gd.GraphError, match=r"sum at node 'sum'.*'keepdims' must be a bool, got str"):
            gd.ops._apply("sum", x, axis=1, keepdims="yes")
        with pytest.raises(gd.GraphError, match=r"unknown attribute 'axes' \(op 'softmax' takes: axis\)"):
            gd.ops._apply("softmax", x, axes=1)
        with pytest.raises(gd.GraphError, match=r"'shape' is missing"):
            gd.ops._apply("reshape", x)
        with pytest.raises(gd.GraphError, match=r"'p' must be <= 1.0"):
            gd.ops._apply("dropout", x, x, p=1.5)


def test_attr_problems_for_a_complete_file() -> None:
    op = all_ops()["softmax"]
    assert attr_problems(op, {}) == []
    assert attr_problems(op, {}, complete=True) == ["attribute 'axis' is missing (an int)"]
    assert attr_problems(op, {"axis": True}) == ["attribute 'axis' must be an int, got bool True"]


def test_version_1_files_take_defaults_for_omitted_attributes(tmp_path) -> None:
    with gd.Graph("v1"):
        x = gd.placeholder("x", (None, 4))
        y = gd.ops.softmax(x)
    model = gd.compile([y])
    data = serialize.graph_to_json(model.ir)
    _node(data, "softmax")["attrs"].clear()  # format v1 writers left defaults out
    graph_bytes = json.dumps(data).encode()
    manifest_v1 = {"format": "graphdl-model", "format_version": 1, "graphdl_version": "0.1.0",
                   "members": {"graph.json": serialize.sha256(graph_bytes),
                               "weights.npz": serialize.sha256(_npz({}))}}
    import zipfile

    with zipfile.ZipFile(tmp_path / "v1.gdl", "w") as z:
        z.writestr("manifest.json", json.dumps(manifest_v1))
        z.writestr("graph.json", graph_bytes)
        z.writestr("weights.npz", _npz({}))
    feed = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    assert np.array_equal(gd.load(tmp_path / "v1.gdl").run(feed)[0], model.run(feed)[0])
    manifest_v1["format_version"] = 2
    (tmp_path / "v2.gdl").unlink(missing_ok=True)
    with zipfile.ZipFile(tmp_path / "v2.gdl", "w") as z:
        z.writestr("manifest.json", json.dumps(manifest_v1))
        z.writestr("graph.json", graph_bytes)
        z.writestr("weights.npz", _npz({}))
    with pytest.raises(gd.ModelFileError, match=r"'axis' is missing"):
        gd.load(tmp_path / "v2.gdl")


def _npz(arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
