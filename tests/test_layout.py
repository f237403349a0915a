"""The layout pass (passes/layout.py): convolution chains channel-major inside, NCHW at the edges."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
import passes
from graphdl import layers, losses
from passes.layout import channel_major


def _cnn(dtype: str = "float64", groups: int = 1, stride: int = 1, bn: bool = False, name: str = "cnn"):
    """conv-pool-relu-conv-pool-relu-flatten-linear, as the benchmark's CNN (smaller)."""
    with gd.Graph(name, seed=0, dtype=dtype):
        x = gd.placeholder("x", (None, 2, 12, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Conv2D(2, 4, 3, padding=1, name="conv1")(x)
        if bn:
            h = layers.BatchNorm2D(4, name="bn")(h)
        h = layers.ReLU(name="relu1")(layers.MaxPool2D(2, name="pool1")(h))
        h = layers.Conv2D(4, 6, 3, stride=stride, padding=1, groups=groups, name="conv2")(h)
        if stride == 1:
            h = layers.MaxPool2D(2, name="pool2")(h)
        h = layers.Tanh(name="tanh")(h)
        h = layers.Flatten(name="flat")(h)
        logits = layers.Linear(h.shape[1], 3, name="fc")(h)
        loss = losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    return logits, loss


def _data(batch: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((batch, 2, 12, 12)).astype(dtype), "y": rng.integers(0, 3, batch)}


def _train(monkeypatch: pytest.MonkeyPatch | None, batch: int, **kw) -> tuple[gd.Executable, list[float]]:
    """Three SGD steps; with ``monkeypatch`` the layout pass is switched off."""
    if monkeypatch is not None:
        monkeypatch.setattr(passes, "channel_major", lambda ir: ir)
    logits, loss = _cnn(**kw)
    ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    feeds = _data(batch, kw.get("dtype", "float64"))
    out = [float(ex.run(feeds)[0]) for _ in range(3)]
    if monkeypatch is not None:
        monkeypatch.undo()
    return ex, out


def _layouts(ex: gd.Executable) -> dict[str, bool]:
    return {n.name: bool(n.attr.get("channel_major")) for n in ex.ir.nodes if n.op.startswith("conv2d")}


@pytest.mark.parametrize("kw", [{}, {"groups": 2}, {"groups": 2, "stride": 2}, {"dtype": "float32"}],
                         ids=["plain", "groups", "strided", "float32"])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_channel_major_training_equals_nchw(monkeypatch: pytest.MonkeyPatch, batch: int, kw: dict) -> None:
    ref, expected = _train(monkeypatch, batch, **kw)
    ex, got = _train(None, batch, **kw)
    assert not any(_layouts(ref).values())
    assert all(_layouts(ex).values()) and len(_layouts(ex)) == 5  # 2 convs, their 3 gradients
    tol = 1e-4 if kw.get("dtype") == "float32" else 1e-11
    np.testing.assert_allclose(got, expected, rtol=tol)
    for name, value in ref.parameters().items():
        np.testing.assert_allclose(ex.parameters()[name], value, rtol=tol, atol=tol * 1e-2, err_msg=name)


def test_transposes_only_at_the_chain_edges() -> None:
    logits, loss = _cnn()
    ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    nodes = ex.ir.node_map()
    forward = [n for n in ex.ir.nodes if n.op == "transpose" and n.kind is gd.NodeKind.OP]
    assert [(n.name, n.inputs) for n in forward] == [("x/channel_major", ("x",)), ("tanh/nchw", ("tanh",))]
    assert nodes["conv1"].inputs[0] == "x/channel_major" and nodes["flat"].inputs == ("tanh/nchw",)
    assert nodes["conv1"].shape == (4, None, 12, 12) and nodes["pool1"].extra[0][0] == (4, None, 6, 6)
    # the bias gradient sums a channel-major output gradient over (1, 2, 3)
    sums = [n.attr["axis"] for n in ex.ir.nodes if n.op == "sum" and n.name.startswith("grad/conv")]
    assert sums == [(1, 2, 3), (1, 2, 3)]
    assert channel_major(ex.ir) is ex.ir  # laid out already: nothing more to do


def test_lone_convolution_between_batchnorms_stays_nchw() -> None:
    logits, loss = _cnn(bn=True)
    ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    layouts = _layouts(ex)
    # conv1's output feeds BatchNorm, whose output starts conv2's chain (pool1, relu1, conv2, pool2, tanh):
    # that chain's edges (BatchNorm's 4x12x12 output, tanh's) outweigh conv2's 6x6x6 output, so no transposes
    assert not layouts["conv1"] and not layouts["conv2"]
    assert not any(n.op == "transpose" for n in ex.ir.nodes)


def test_requested_output_keeps_its_layout() -> None:
    with gd.Graph("out", seed=0, dtype="float64"):
        x = gd.placeholder("x", (None, 2, 12, 12))
        h = layers.Conv2D(2, 4, 3, padding=1, name="conv1")(x)
        p = layers.MaxPool2D(2, name="pool1")(h)
        out = layers.Conv2D(4, 4, 3, padding=1, name="conv2")(p)
    ex = gd.compile([out])
    assert not any(_layouts(ex).values())
    assert ex.run({"x": _data(3)["x"]})[0].shape == (3, 4, 6, 6)


def test_inference_save_load_and_onnx(tmp_path) -> None:
    logits, loss = _cnn(dtype="float32")
    ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    feeds = _data(4, "float32")
    ex.run(feeds)
    pred = ex.inference(["fc"])
    assert all(_layouts(pred).values())
    expected = pred.run({"x": feeds["x"]})[0].copy()
    path = tmp_path / "cnn.gdl"
    ex.save(str(path))
    loaded = gd.load(str(path)).inference(["fc"])
    np.testing.assert_array_equal(loaded.run({"x": feeds["x"]})[0], expected)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "cnn.onnx"
    gd.onnx.export(pred, str(onnx_path))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": feeds["x"]})[0], expected, rtol=1e-4, atol=1e-5)
    back = gd.onnx.load(str(onnx_path)).compile()  # Transpose-Conv-Transpose back in: NCHW convs again
    assert "conv1" in {n.name for n in back.ir.nodes if n.op == "conv2d"}
    np.testing.assert_allclose(back.run({"x": feeds["x"]})[0], expected, rtol=1e-4, atol=1e-5)


def test_intermediate_values_of_a_trained_plan_come_in_the_users_layout(tmp_path) -> None:
    """``inference`` and ONNX export of a trained (channel-major, fused) plan, asked for feature maps
    inside a chain: each in the (N, C, H, W) layout of the user's graph, with the values of the user's
    graph compiled as built (they once came back (C, N, H, W), and conv1 blocked, 6-d)."""
    logits, loss = _cnn(dtype="float32")
    graph = loss.graph
    ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    feeds = _data(4, "float32")
    ex.run(feeds)  # trained a step: the user's graph shares the parameters
    names = ["conv1", "pool1", "relu1", "conv2", "pool2", "tanh"]
    reference = gd.compile([gd.Tensor(graph, n) for n in names]).run({"x": feeds["x"]})
    for subset in ([[n] for n in names] + [names]):
        pred = ex.inference(subset)
        assert list(pred.outputs) == subset
        got = pred.run({"x": feeds["x"]})
        for name, value in zip(subset, got):
            expected = reference[names.index(name)]
            assert value.shape == expected.shape, name
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5, err_msg=name)
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "maps.onnx"
    gd.onnx.export(ex, str(path), outputs=names)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for name, value, expected in zip(names, session.run(None, {"x": feeds["x"]}), reference):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("cm", [False, True])
@pytest.mark.parametrize("geometry", [((3, 3), 1, (1, 1, 1, 1), 1), ((3, 2), 2, (1, 0, 2, 1), 1),
                                      ((3, 3), 1, (2, 2, 2, 2), 2), ((1, 1), 1, (0, 0, 0, 0), 1)],
                         ids=["same", "strided", "dilated", "1x1"])
def test_small_columns_are_copied_to_the_same_values(geometry, cm: bool) -> None:
    """Small columns come from one strided copy out of a padded copy of x; larger ones from per-offset
    copies. Both fill the same columns, whatever was in the buffers before."""
    from graphdl.ops.columns import STRIDED_MAX, Columns

    kernel, stride, padding, dilation = geometry
    attrs = {"kernel": kernel, "stride": (stride, stride), "padding": padding, "dilation": (dilation, dilation)}
    shape = (2, 3, 7, 6)
    columns = Columns(shape, attrs)
    assert columns.padded is not None and np.prod(columns.shape) <= STRIDED_MAX
    x = np.random.default_rng(0).standard_normal(shape)
    if cm:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    by_offsets, strided = np.full(columns.shape, np.nan), np.full(columns.shape, np.nan)
    columns.im2col(x, by_offsets, cm)
    columns.im2col(x, strided, cm, np.full(columns.padded, np.nan))
    np.testing.assert_array_equal(strided, by_offsets)
    assert not np.isnan(by_offsets).any()


def test_channel_major_chains_with_remat_train_the_same() -> None:
    feeds = _data(8)
    runs = []
    for remat in (None, 2):
        logits, loss = _cnn()
        ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss, remat=remat)
        assert all(_layouts(ex).values())
        runs.append([float(ex.run(feeds)[0]) for _ in range(3)])
    assert runs[0] == runs[1]
