"""ONNX export: op-table coverage, checker-valid models, onnxruntime agreement at two batch sizes from one file."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.registry import all_ops
from tests.onnx_cases import EXPORT_ONLY, LAYERS, build_case, feed, rel_err

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from graphdl.onnx.export import ExportError  # noqa: E402
from graphdl.onnx.exporters import EXPORTERS, TRAINING_ONLY  # noqa: E402


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def test_every_op_has_an_exporter_or_is_training_only() -> None:
    ops = set(all_ops())
    missing = sorted(ops - set(EXPORTERS) - TRAINING_ONLY)
    assert not missing, f"ops with neither an ONNX exporter nor a training-only mark: {missing}"
    assert not set(EXPORTERS) & TRAINING_ONLY
    assert not (set(EXPORTERS) | TRAINING_ONLY) - ops, "exporters or marks for ops that do not exist"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(LAYERS) + sorted(EXPORT_ONLY))
def test_layer_matches_onnxruntime(name: str, dtype: str, tmp_path) -> None:
    g, x, out = build_case(name, dtype)
    path = str(tmp_path / f"{name}.onnx")
    model = gd.onnx.export(g, path, outputs=[out])
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    exe = gd.compile([out])
    try:
        sess = session(path)
    except ort.capi.onnxruntime_pybind11_state.NotImplemented as e:
        assert dtype == "float64", e
        pytest.skip(f"onnxruntime has no float64 kernel for {name}: {str(e)[:120]}")
    tol = 1e-5 if dtype == "float32" else 1e-12
    for batch in (2, 5):  # one file, two batch sizes
        xv = feed(x.shape, batch, dtype, name, seed=batch)
        expected = exe.run({"x": xv})[0]
        actual = sess.run(None, {"x": xv})[0]
        assert actual.shape == expected.shape and actual.dtype == expected.dtype
        assert rel_err(actual, expected) <= tol, (name, batch, rel_err(actual, expected))


def test_parameters_become_initializers_with_their_names(tmp_path) -> None:
    from tests.models import mlp

    g, x, y, loss = mlp()
    logits = gd.Tensor(g, "fc2")
    model = gd.onnx.export(gd.compile([logits]), tmp_path / "m.onnx")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, value in g.parameters().items():
        np.testing.assert_array_equal(inits[name], value)
    assert [n.name for n in model.graph.node] == ["fc0", "act0", "fc1", "act1", "fc2"]
    assert [o.name for o in model.graph.output] == ["fc2"]


def test_training_executable_exports_its_inference_plan(tmp_path) -> None:
    from examples.train_digits_cnn import build

    logits, loss = build()
    train = gd.compile([loss, logits], optimizer=gd.optim.SGD(lr=0.1))
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 16)
    train.run({"x": x, "y": y})  # running statistics move away from 0 and 1
    path = str(tmp_path / "cnn.onnx")
    model = gd.onnx.export(train, path)  # default outputs: the monitors, not the objective
    assert [o.name for o in model.graph.output] == ["fc"]
    kinds = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" in kinds and "Dropout" in kinds
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert not any(a.name == "training_mode" and a.i for a in bn.attribute)
    drop = next(n for n in model.graph.node if n.op_type == "Dropout")
    mode = next(t for t in model.graph.initializer if t.name == drop.input[2])
    assert not onnx.numpy_helper.to_array(mode)  # training_mode written as false, explicitly
    assert "dropout.counter" not in {t.name for t in model.graph.initializer}
    predict = gd.compile([logits])
    sess = session(path)
    for batch in (1, 64):
        xv = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
        assert rel_err(sess.run(None, {"x": xv})[0], predict.run({"x": xv})[0]) <= 1e-5


def test_digits_mlp_example_with_constants(tmp_path) -> None:
    from examples.train_digits import build

    x_train = np.random.default_rng(0).uniform(0, 16, (50, 64)).astype(np.float32)
    g, x, y, logits, loss = build(x_train)
    path = str(tmp_path / "mlp.onnx")
    model = gd.onnx.export(g, path, outputs=[logits])
    tags = {t.name: t.doc_string for t in model.graph.initializer}
    assert tags["input_mean"] == "graphdl:constant" and tags["fc1.W"] == "graphdl:param"
    exe, sess = gd.compile([logits]), session(path)
    for batch in (1, 33):
        xv = np.random.default_rng(batch).uniform(0, 16, (batch, 64)).astype(np.float32)
        assert rel_err(sess.run(None, {"x": xv})[0], exe.run({"x": xv})[0]) <= 1e-5


@pytest.mark.parametrize("loss_name", ["sce", "mse", "nll", "sce_weighted", "nll_ignore"])
def test_losses_export(loss_name: str, tmp_path) -> None:
    with gd.Graph("losses") as g:
        x = gd.placeholder("x", (None, 5))
        if loss_name == "mse":
            t = gd.placeholder("t", (None, 5))
            loss = gd.losses.MSE()(gd.layers.Linear(5, 5)(x), t)
        else:
            t = gd.placeholder("t", (None,), dtype="int64")
            logits = gd.layers.Linear(5, 5)(x)
            weight = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
            loss = {"sce": lambda: gd.losses.SoftmaxCrossEntropy()(logits, t),
                    "nll": lambda: gd.losses.NLL()(gd.ops.log_softmax(logits), t),
                    "sce_weighted": lambda: gd.losses.SoftmaxCrossEntropy(weight=weight, ignore_index=2)(logits, t),
                    "nll_ignore": lambda: gd.losses.NLL(ignore_index=1, reduction="sum")(
                        gd.ops.log_softmax(logits), t)}[loss_name]()
    path = str(tmp_path / "loss.onnx")
    gd.onnx.export(g, path, outputs=[loss])
    exe, sess = gd.compile([loss]), session(path)
    rng = np.random.default_rng(0)
    for batch in (3, 8):
        feeds = {"x": rng.standard_normal((batch, 5)).astype(np.float32),
                 "t": rng.standard_normal((batch, 5)).astype(np.float32) if loss_name == "mse"
                 else rng.integers(0, 5, batch)}
        assert rel_err(sess.run(None, feeds)[0], exe.run(feeds)[0]) <= 1e-5


def test_training_only_op_is_refused_up_front(tmp_path) -> None:
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 3))
        h = gd.layers.ReLU(name="act")(x)
        (dx,) = gd.grad(h.sum(), [x])
    with pytest.raises(ExportError, match=r"relu_grad.*training-only"):
        gd.onnx.export(g, tmp_path / "g.onnx", outputs=[dx])
    assert not (tmp_path / "g.onnx").exists()


def test_export_errors(tmp_path) -> None:
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 3))
        y = gd.layers.ReLU()(x)
    with pytest.raises(ExportError, match="opset 7"):
        gd.onnx.export(g, tmp_path / "g.onnx", outputs=[y], opset=7)
    with pytest.raises(ExportError, match="'nope' is not a node"):
        gd.onnx.export(g, tmp_path / "g.onnx", outputs=["nope"])
    with pytest.raises(ExportError, match="Executable or a Graph"):
        gd.onnx.export(object(), tmp_path / "g.onnx")
    with gd.Graph("h") as h:
        z = gd.layers.GELU()(gd.placeholder("x", (None, 3)))
    with pytest.raises(ExportError, match="Gelu needs opset 20"):
        gd.onnx.export(h, tmp_path / "h.onnx", outputs=[z], opset=17)


def test_several_outputs_of_one_node(tmp_path) -> None:
    with gd.Graph("parts") as g:
        x = gd.placeholder("x", (None, 6))
        a, b = gd.ops.split(x * 2.0, [2, 4], axis=1)
    model = gd.onnx.export(g, tmp_path / "parts.onnx", outputs=[b, a])
    assert [o.name for o in model.graph.output] == [b.name, a.name]
    sess = ort.InferenceSession(str(tmp_path / "parts.onnx"), providers=["CPUExecutionProvider"])
    xv = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    expected = gd.compile([b, a]).run({"x": xv})
    for actual, want in zip(sess.run(None, {"x": xv}), expected):
        np.testing.assert_array_equal(actual, want)
    back = gd.onnx.load(tmp_path / "parts.onnx")
    for actual, want in zip(back.compile().run({"x": xv}), expected):
        np.testing.assert_array_equal(actual, want)
