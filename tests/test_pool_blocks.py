"""Blocked pooling (passes/pool_blocks.py, graphdl/ops/pool_blocks.py, graphdl/ops/conv_pool.py): in
training plans a first convolution that only a tiling max pooling reads is fused with it, its output blocked,
(C, N, bh, bw, H/bh, W/bw), and pooled in chunks of samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd
import passes
from graphdl import layers, losses
from graphdl.ops import conv_pool
from graphdl.registry import get_op
from passes.pool_blocks import pool_blocks, unfuse


def _cnn(dtype: str = "float64", pool: int = 2, cout: int = 10):
    """conv(1 -> cout)-pool-relu-conv-pool-tanh-flatten-linear over 1x12x12 images: conv1's 3x3 columns
    (9 rows) are no more than its output channels, so its pooling is blocked."""
    with gd.Graph("cnn", seed=0, dtype=dtype):
        x = gd.placeholder("x", (None, 1, 12, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Conv2D(1, cout, 3, padding=1, name="conv1")(x)
        h = layers.ReLU(name="relu1")(layers.MaxPool2D(pool, name="pool1")(h))
        h = layers.Conv2D(cout, 6, 3, padding=1, name="conv2")(h)
        flat = layers.Flatten(name="flat")(layers.Tanh(name="tanh")(layers.MaxPool2D(2, name="pool2")(h)))
        logits = layers.Linear(flat.shape[1], 3, name="fc")(flat)
        return logits, losses.SoftmaxCrossEntropy(name="loss")(logits, y)


def _data(batch: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    images = np.random.default_rng(1).standard_normal((batch, 1, 12, 12))
    return {"x": images.astype(dtype), "y": np.arange(batch) % 3}


def _train(blocked: bool, batch: int, monkeypatch: pytest.MonkeyPatch, **kw) -> tuple[gd.Executable, list[float]]:
    """Three SGD steps, with the pool_blocks pass or without it."""
    with monkeypatch.context() as m:
        if not blocked:
            m.setattr(passes, "pool_blocks", lambda ir, training: ir)
        logits, loss = _cnn(**kw)
        ex = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    feeds = _data(batch, kw.get("dtype", "float64"))
    return ex, [float(ex.run(feeds)[0]) for _ in range(3)]


def _ops(ex: gd.Executable) -> dict[str, str]:
    return {n.name: n.op for n in ex.ir.nodes}


@pytest.mark.parametrize("kw", [{}, {"dtype": "float32"}, {"pool": 3}], ids=["2x2", "float32", "3x3"])
@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("chunk", [None, 2], ids=["chunks-default", "chunks-of-2"])
def test_blocked_training_equals_plain(monkeypatch: pytest.MonkeyPatch, batch: int, kw: dict, chunk) -> None:
    """Chunks of 2 samples (5 = 2 + 2 + 1: a smaller last chunk); batch 64 splits them over threads."""
    ref, expected = _train(False, batch, monkeypatch, **kw)
    if chunk is not None:  # bytes of chunk samples' conv1 output (10 channels, 12x12 pixels)
        monkeypatch.setattr(conv_pool, "CHUNK_BYTES", chunk * 10 * 144 * np.dtype(kw.get("dtype", "float64")).itemsize)
    with gd.num_threads(2):
        ex, got = _train(True, batch, monkeypatch, **kw)
    assert "max_pool_blocks" not in _ops(ref).values()
    assert _ops(ex)["pool1"] == "conv2d_pool_blocks" and _ops(ex)["pool2"] == "max_pool2d"
    assert "conv1" not in _ops(ex)  # fused into pool1
    tol = 1e-4 if kw.get("dtype") == "float32" else 1e-11
    np.testing.assert_allclose(got, expected, rtol=tol)
    for name, value in ref.parameters().items():
        np.testing.assert_allclose(ex.parameters()[name], value, rtol=tol, atol=tol * 1e-2, err_msg=name)


def test_only_a_first_layer_with_narrow_columns_is_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _ = _train(True, 4, monkeypatch)
    nodes = ex.ir.node_map()
    assert nodes["pool1"].op == "conv2d_pool_blocks" and nodes["pool1"].inputs == ("x/channel_major", "conv1.W",
                                                                                    "conv1.b")
    assert nodes["pool1"].attr["pool_blocks"] == (2, 2) and nodes["pool1"].attr["conv"] == "conv1"
    assert "pool_blocks" not in nodes["conv2"].attr  # its input comes from conv1's weights
    assert nodes["pool1"].shapes == ((10, None, 6, 6), (10, None, 6, 6))
    split = unfuse(ex.ir).node_map()  # the pair again, under the user's names
    assert split["conv1"].op == "conv2d" and split["conv1"].shape == (10, None, 2, 2, 6, 6)
    assert split["pool1"].op == "max_pool_blocks" and split["pool1"].inputs == ("conv1",)
    grads = {n.op for n in ex.ir.nodes if n.name.startswith("grad/pool1/")}
    assert grads == {"max_pool_blocks_grad", "conv2d_weight_grad", "sum"}  # the images need no gradient
    sums = [n.attr["axis"] for n in ex.ir.nodes if n.op == "sum" and n.name.startswith("grad/pool1")]
    assert sums == [(1, 2, 3)]  # the bias gradient sums the pooled gradient
    assert pool_blocks(ex.ir, True) is ex.ir  # fused already: nothing more to do
    # 9 columns per pixel for 8 output channels: the strided im2col would cost more than it saves
    narrow, _ = _train(True, 4, monkeypatch, cout=8)
    assert not {"max_pool_blocks", "conv2d_pool_blocks"} & set(_ops(narrow).values())


def test_inference_save_load_and_onnx_unblock(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _ = _train(True, 4, monkeypatch, dtype="float32")
    feeds = _data(4, "float32")
    pred = ex.inference(["fc"])
    assert not {"max_pool_blocks", "conv2d_pool_blocks"} & set(_ops(pred).values())
    assert not any("pool_blocks" in n.attr for n in pred.ir.nodes)
    expected = pred.run({"x": feeds["x"]})[0].copy()
    # the fused convolution can be asked for by its own name: a plain NCHW convolution again
    conv1 = ex.inference(["conv1"])  # channel-major inside, then NCHW under its own name
    assert [n.op for n in conv1.ir.nodes if n.kind is gd.NodeKind.OP] == ["transpose", "conv2d", "transpose"]
    assert "pool_blocks" not in conv1.ir.node_map()["conv1/channel_major"].attr
    w, b = ex.parameters()["conv1.W"], ex.parameters()["conv1.b"]
    xp = np.pad(feeds["x"], ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, 1, 12, 12, 3, 3)
    reference = np.einsum("nchwij,ocij->nohw", windows, w) + b[:, None, None]
    np.testing.assert_allclose(conv1.run({"x": feeds["x"]})[0], reference, rtol=1e-5, atol=1e-5)
    path = tmp_path / "cnn.gdl"
    ex.save(str(path))  # the training plan, fused
    loaded = gd.load(str(path))
    assert _ops(loaded)["pool1"] == "conv2d_pool_blocks"
    np.testing.assert_array_equal(loaded.inference(["fc"]).run({"x": feeds["x"]})[0], expected)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "cnn.onnx"
    gd.onnx.export(ex, str(onnx_path), outputs=["fc"])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": feeds["x"]})[0], expected, rtol=1e-4, atol=1e-5)
    # the fused layers' own values, by the user's names and in the user's layout
    gd.onnx.export(ex, str(onnx_path), outputs=["conv1", "pool1"])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    maps = session.run(None, {"x": feeds["x"]})
    np.testing.assert_allclose(maps[0], reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(maps[1], reference.reshape(4, 10, 6, 2, 6, 2).max(axis=(3, 5)), rtol=1e-4, atol=1e-5)


def _kernel(op: str, attrs: dict, in_shapes: tuple, out_shape, dtype) -> object:
    opdef = get_op(op)
    ws = [np.empty(s, d) for s, d in opdef.workspace(attrs, in_shapes, out_shape, dtype)]
    return opdef.kernel(attrs, in_shapes, out_shape, dtype, ws)


@pytest.mark.parametrize("blocks", [(2, 2), (3, 2)])
def test_same_maxima_and_indices_as_max_pool2d(blocks: tuple[int, int]) -> None:
    """Values to the bit and indices, with ties, signed zeros and NaN in windows."""
    bh, bw = blocks
    c, n, h, w = 3, 4, 5, 6
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, (c, n, h * bh, w * bw)).astype(np.float32)  # many ties
    x[0, 0, 0, 1] = np.nan
    x[1, 2, :bh, :bw] = -0.0
    x[1, 2, 0, 0] = 0.0
    x[2, 3, 1, 0] = np.nan
    pooled = (c, n, h, w)
    attrs = {"kernel": blocks, "stride": blocks, "padding": (0, 0, 0, 0), "dilation": (1, 1), "training": True}
    f32, u8 = np.dtype(np.float32), np.dtype(np.uint8)
    plain = _kernel("max_pool2d", attrs, (x.shape,), (pooled, pooled), (f32, u8))
    out, idx = np.empty(pooled, np.float32), np.empty(pooled, np.uint8)
    plain(x, out, idx)
    xb = np.ascontiguousarray(x.reshape(c, n, h, bh, w, bw).transpose(0, 1, 3, 5, 2, 4))
    blocked = _kernel("max_pool_blocks", {"blocks": blocks}, (xb.shape,), (pooled, pooled), (f32, u8))
    out_b, idx_b = np.empty(pooled, np.float32), np.empty(pooled, np.uint8)
    blocked(xb, out_b, idx_b)
    np.testing.assert_array_equal(out_b.view(np.uint32), out.view(np.uint32))
    np.testing.assert_array_equal(idx_b, idx)
    # the gradient routes g to the same input as max_pool2d's
    g = rng.standard_normal(pooled).astype(np.float32)
    grad = _kernel("max_pool2d_grad", attrs, (pooled, x.shape, pooled), x.shape, f32)
    dx = np.empty(x.shape, np.float32)
    grad(g, x, idx, dx)
    grad_b = _kernel("max_pool_blocks_grad", {"blocks": blocks}, (pooled, pooled), xb.shape, f32)
    dxb = np.empty(xb.shape, np.float32)
    grad_b(g, idx_b, dxb)
    np.testing.assert_array_equal(dxb.transpose(0, 1, 4, 2, 5, 3).reshape(x.shape), dx)


def test_blocked_convolution_writes_the_blocked_image() -> None:
    """The GEMM over columns taken in blocked pixel order writes the same pixels, moved into blocks; with
    the batch split over threads each slice builds its own padded copy."""
    rng = np.random.default_rng(0)
    for n in (1, 3, 64):
        x = rng.standard_normal((1, n, 8, 6)).astype(np.float32)
        w = rng.standard_normal((12, 1, 3, 3)).astype(np.float32)
        b = rng.standard_normal(12).astype(np.float32)
        base = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1,
                "channel_major": True}
        outs = []
        for extra in ({}, {"pool_blocks": (2, 3)}):
            attrs = {**base, **extra}
            shapes = (x.shape, w.shape, b.shape)
            out_shape = get_op("conv2d").shape(shapes, attrs)
            out = np.full(out_shape, np.nan, np.float32)
            with gd.num_threads(2):
                _kernel("conv2d", attrs, shapes, out_shape, np.dtype(np.float32))(x, w, b, out)
            outs.append(out)
        plain, blocked = outs
        assert blocked.shape == (12, n, 2, 3, 4, 2)
        np.testing.assert_allclose(blocked.transpose(0, 1, 4, 2, 5, 3).reshape(plain.shape), plain, rtol=1e-6,
                                   atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 3), per_group=st.integers(2, 12), grouped=st.booleans(), k=st.integers(1, 3),
       stride=st.integers(1, 2), dilation=st.integers(1, 2), pad=st.integers(0, 2), pool=st.integers(2, 3),
       hw=st.integers(6, 17), batch=st.integers(1, 6), one_per_chunk=st.booleans())
def test_any_first_layer_trains_as_unblocked(cin: int, per_group: int, grouped: bool, k: int, stride: int,
                                             dilation: int, pad: int, pool: int, hw: int, batch: int,
                                             one_per_chunk: bool) -> None:
    """Whatever the first convolution's geometry, fused and blocked or not, in chunks of one sample or of
    the whole batch, two SGD steps give the unblocked plan's losses and parameters."""
    groups = cin if grouped else 1
    pad = min(pad, k // 2)

    def build():
        with gd.Graph("fuzz", seed=0, dtype="float64"):
            x = gd.placeholder("x", (None, cin, hw, hw))
            y = gd.placeholder("y", (None,), dtype="int64")
            h = layers.Conv2D(cin, per_group * groups, k, stride=stride, padding=pad, groups=groups,
                              dilation=dilation, name="conv1")(x)
            h = layers.Conv2D(per_group * groups, 4, 3, padding=1, name="conv2")(
                layers.ReLU()(layers.MaxPool2D(pool, name="pool1")(h)))
            logits = layers.Linear(4 * h.shape[2] * h.shape[3], 3, name="fc")(layers.Flatten()(h))
            return losses.SoftmaxCrossEntropy()(logits, y)

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((batch, cin, hw, hw)), "y": rng.integers(0, 3, batch)}
    runs = []
    with pytest.MonkeyPatch.context() as m:
        if one_per_chunk:
            m.setattr(conv_pool, "CHUNK_BYTES", 1)
        for blocked in (True, False):
            if not blocked:
                m.setattr(passes, "pool_blocks", lambda ir, training: ir)
            try:
                ex = gd.compile([build()], gd.optim.SGD(0.1))
            except gd.GraphDLError:  # a geometry too small for the pooling: nothing to compare
                return
            runs.append(([float(ex.run(feeds)[0]) for _ in range(2)], ex.parameters()))
    (got, params), (expected, ref) = runs
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    for name, value in ref.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
