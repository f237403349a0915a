"""ONNX import: round trips, models exported by PyTorch (load, match, fine-tune, save, export back), hostile files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphdl as gd
from tests.onnx_cases import EXPORT_ONLY, LAYERS, build_case, feed, rel_err

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from graphdl.onnx import UnsupportedOpError  # noqa: E402
from tests.test_onnx_math import CASES as MATH_CASES  # noqa: E402

#: float64 cases exported as several ONNX ops (ONNX's float32 constants would cost precision), so the
#: reimported graph computes the same formula in other steps: equal to a few ulp, not bit for bit.
SPELLED_OUT_F64 = {"gelu_tanh", "layer_norm", "layer_norm_2d", "layer_norm_plain", "celu", "group_norm",
                   "group_norm_plain", "instance_norm2d",
                   "transformer_encoder", "transformer_decoder"}  # (their LayerNorms)
#: Exported as a composition of ONNX ops in every dtype (log sigmoid = -softplus(-x)).
SPELLED_OUT = {"logsigmoid"}
#: Exported as ONNX ops the importer does not map back (Shape, Gather of computed data).
NOT_IMPORTED = {"reshape_like", "repeat_counts"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(LAYERS) + sorted(set(EXPORT_ONLY) - NOT_IMPORTED))
def test_round_trip_is_bit_identical(name: str, dtype: str, tmp_path) -> None:
    g, x, out = build_case(name, dtype)
    path = tmp_path / "m.onnx"
    gd.onnx.export(g, path, outputs=[out])
    imported = gd.onnx.load(path)
    assert [t.name for t in imported.outputs] == [out.name]
    exe, ref = imported.compile(), gd.compile([out])
    for batch in (2, 5):
        xv = feed(x.shape, batch, dtype, name, seed=batch)
        actual, expected = exe.run({"x": xv})[0], ref.run({"x": xv})[0]
        if name in SPELLED_OUT or (dtype == "float64" and name in SPELLED_OUT_F64):
            assert rel_err(actual, expected) <= (1e-6 if dtype == "float32" else 1e-15)
        else:
            np.testing.assert_array_equal(actual, expected)


def test_round_trip_keeps_names_and_kinds(tmp_path) -> None:
    from examples.train_digits_cnn import build

    logits, _ = build()
    g = logits.graph
    gd.onnx.export(g, tmp_path / "cnn.onnx", outputs=[logits])
    imported = gd.onnx.load(tmp_path / "cnn.onnx")
    ig = imported.graph
    assert set(ig.parameters()) == set(g.parameters())
    assert set(ig.state()) == {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var",
                               "dropout.counter"}
    for name in ("conv1", "bn1", "conv2", "bn2", "fc"):
        assert ig.nodes[name].op == g.nodes[name].op
    # the export compiles the graph: the ReLU before the max pooling runs after it, under the pool's name
    assert (ig.nodes["pool"].op, ig.nodes["pool/before_relu"].op) == ("relu", "max_pool2d")


torch = pytest.importorskip("torch")
nn = torch.nn


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _torch_export(module: nn.Module, example: torch.Tensor, path: str) -> None:
    """TorchScript-based exporter (dynamo=False), batch axis dynamic."""
    module.eval()
    torch.onnx.export(module, (example,), path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False, opset_version=17)


def _digits_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))


def _finetune_cycle(module: nn.Module, shape: tuple[int, ...], tmp_path) -> None:
    """Load a PyTorch export, match PyTorch, fine-tune, save .gdl, reload, export back, run in onnxruntime."""
    rng = np.random.default_rng(0)
    if any(isinstance(m, nn.BatchNorm2d) for m in module.modules()):
        module.train()
        with torch.no_grad():  # running statistics away from 0 and 1
            for _ in range(5):
                module(torch.from_numpy(rng.standard_normal((32, *shape)).astype(np.float32) * 2 + 0.5))
    path = str(tmp_path / "torch.onnx")
    _torch_export(module, torch.zeros((2, *shape)), path)
    imported = gd.onnx.load(path)
    assert imported.graph.nodes["x"].shape == (None, *shape)
    predict = imported.compile()
    for batch in (1, 9):
        xv = rng.standard_normal((batch, *shape)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(xv)).numpy()
        assert rel_err(predict.run({"x": xv})[0], expected) <= 1e-5

    # fine-tune: a loss on the imported logits, every initializer a trainable parameter
    g, logits = imported.graph, imported.outputs[0]
    with g:
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    train = imported.compile(gd.optim.Adam(lr=1e-2), loss=loss)
    xt = rng.standard_normal((64, *shape)).astype(np.float32)
    yt = rng.integers(0, 10, 64)
    before = {k: v.copy() for k, v in g.parameters().items()}
    losses = [float(train.run({"x": xt, "y": yt})[0]) for _ in range(8)]
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(before[k], v) for k, v in g.parameters().items())
    tuned = predict.run({"x": xt})[0]

    gdl = str(tmp_path / "tuned.gdl")
    train.save(gdl)
    reloaded = gd.load(gdl)
    back = str(tmp_path / "tuned.onnx")
    gd.onnx.export(reloaded, back, outputs=[logits.name])
    sess = ort.InferenceSession(back, providers=["CPUExecutionProvider"])
    for batch in (64, 3):
        xv = xt[:batch]
        assert rel_err(sess.run(None, {"x": xv})[0], tuned[:batch]) <= 1e-5


def test_torch_mlp(tmp_path) -> None:
    _finetune_cycle(_mlp(), (64,), tmp_path)


def test_torch_digits_cnn_with_batchnorm(tmp_path) -> None:
    _finetune_cycle(_digits_cnn(), (1, 8, 8), tmp_path)


def test_torch_gemm_weights_keep_their_names(tmp_path) -> None:
    module = _mlp()
    _torch_export(module, torch.zeros((2, 64)), str(tmp_path / "m.onnx"))
    params = gd.onnx.load(tmp_path / "m.onnx").graph.parameters()
    np.testing.assert_array_equal(params["0.weight"], module[0].weight.detach().numpy().T)  # stored (in, out)
    np.testing.assert_array_equal(params["0.bias"], module[0].bias.detach().numpy())


# -- refusing what cannot be imported ---------------------------------------------------------
def _model(nodes: list, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: onnx.ModelProto, path) -> str:
    path = str(path)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def test_constant_nodes(tmp_path) -> None:
    shape = helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([-1, 2, 2])))
    half = helper.make_node("Constant", [], ["half"], value_float=0.5)
    nodes = [shape, half, helper.make_node("Reshape", ["x", "shape"], ["r"], name="r"),
             helper.make_node("Mul", ["r", "half"], ["m"], name="m"),
             helper.make_node("Flatten", ["m"], ["y"], name="flat")]
    imported = gd.onnx.load(_save(_model(nodes), tmp_path / "c.onnx"))
    xv = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(imported.compile().run({"x": xv})[0], xv * 0.5)
    assert not imported.graph.parameters()  # constants are not trainable


def test_shape_arithmetic_feeding_reshape(tmp_path) -> None:
    """x.view(x.size(0), -1) as the TorchScript exporter writes it, with a dynamic batch; then a row pick."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="view"),
             helper.make_node("Gather", ["flat", "cols"], ["picked"], name="pick", axis=1),
             helper.make_node("Mul", ["picked", "two"], ["y"], name="y")]
    inits = [i64("zero", 0), i64("axes", [0]), i64("minus1", [-1]), i64("cols", [3, 0, 1]),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    exe = gd.onnx.load(_save(model, tmp_path / "view.onnx")).compile()
    for batch in (1, 4):
        xv = np.random.default_rng(batch).standard_normal((batch, 2, 2)).astype(np.float32)
        np.testing.assert_array_equal(exe.run({"x": xv})[0], xv.reshape(batch, -1)[:, [3, 0, 1]] * 2)


def test_unsupported_op_is_refused_up_front(tmp_path, monkeypatch) -> None:
    from graphdl.onnx import importers

    built = []
    monkeypatch.setattr(importers.ImportContext, "build", lambda self: built.append(1))
    model = _model([helper.make_node("Relu", ["x"], ["h"], name="act"),
                    helper.make_node("Hardmax", ["h"], ["y"], name="wave")])
    with pytest.raises(UnsupportedOpError, match=r"op .Hardmax. at node .wave."):
        gd.onnx.load(_save(model, tmp_path / "cos.onnx"))
    with pytest.raises(UnsupportedOpError, match="opset-17") as info:
        gd.onnx.load(tmp_path / "cos.onnx")
    assert "'Hardmax'" in str(info.value) and "'wave'" in str(info.value)
    assert not built  # refused before anything was built


def test_unsupported_variant_names_node_and_opset(tmp_path) -> None:
    model = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")],
                   [numpy_helper.from_array(np.array(0.5, np.float32), "r"),
                    numpy_helper.from_array(np.array(True), "t")])
    with pytest.raises(UnsupportedOpError, match=r"node 'drop' \(Dropout, opset 17\).*training_mode"):
        gd.onnx.load(_save(model, tmp_path / "d.onnx"))


def test_old_opset_is_refused(tmp_path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], opset=9)
    with pytest.raises(UnsupportedOpError, match="opset 9"):
        gd.onnx.load(_save(model, tmp_path / "old.onnx"))


def _relu_with_weight(tensor: TensorProto) -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [tensor])


def test_hostile_files(tmp_path) -> None:
    with pytest.raises(gd.ModelFileError, match="not a readable ONNX model"):
        gd.onnx.load(_save_bytes(tmp_path / "junk.onnx", b"\xff\x00garbage" * 10))
    good = _relu_with_weight(numpy_helper.from_array(np.ones(4, np.float32), "w")).SerializeToString()
    with pytest.raises(gd.ModelFileError):
        gd.onnx.load(_save_bytes(tmp_path / "cut.onnx", good[: len(good) // 2]))
    with pytest.raises(gd.ModelFileError, match="more than the limit"):
        gd.onnx.load(_save_bytes(tmp_path / "big.onnx", good), max_bytes=len(good) - 1)
    with pytest.raises(gd.ModelFileError, match="not an ONNX model|not a readable"):
        gd.onnx.load(_save_bytes(tmp_path / "empty.onnx", b""))

    huge = _raw_tensor([2**20, 2**20], b"\x00" * 16)
    with pytest.raises(gd.ModelFileError, match="more than the limit"):
        gd.onnx.load(_save(_relu_with_weight(huge), tmp_path / "huge.onnx"))
    short = _raw_tensor([4], b"\x00" * 8)
    with pytest.raises(gd.ModelFileError, match="negative"):
        gd.onnx.load(_save(_relu_with_weight(_raw_tensor([-4], b"")), tmp_path / "neg.onnx"))
    with pytest.raises(gd.ModelFileError, match="needs 16 bytes of data but has 8"):
        gd.onnx.load(_save(_relu_with_weight(short), tmp_path / "short.onnx"))

    external = _raw_tensor([4], b"")
    external.data_location = TensorProto.EXTERNAL
    entry = external.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    with pytest.raises(gd.ModelFileError, match="external"):
        gd.onnx.load(_save(_relu_with_weight(external), tmp_path / "ext.onnx"))

    with pytest.raises(gd.ModelFileError, match="cannot be read"):
        gd.onnx.load(tmp_path)  # a directory
    with pytest.raises(FileNotFoundError):
        gd.onnx.load(tmp_path / "missing.onnx")
    assert not (tmp_path / "etc").exists()
    gd.onnx.load(_save_bytes(tmp_path / "good.onnx", good))  # the well-formed one loads


def _raw_tensor(dims: list[int], raw: bytes) -> TensorProto:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, raw_data=raw)
    t.dims.extend(dims)
    return t


def _save_bytes(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("make, shape", [(_mlp, (64,)), (_digits_cnn, (1, 8, 8))], ids=["mlp", "cnn"])
def test_torch_dynamo_exporter(make, shape, tmp_path) -> None:
    """The torch.export-based exporter (dynamo=True) loads too; it folds BatchNorm into the convolution."""
    module = make().eval()
    path = str(tmp_path / "dynamo.onnx")
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(module, (torch.zeros((2, *shape)),), path, input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
    exe = gd.onnx.load(path).compile()
    for n in (1, 7):
        xv = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(xv)).numpy()
        assert rel_err(exe.run({"x": xv})[0], expected) <= 1e-5


@pytest.mark.slow
def test_torch_transformer_encoder_layer(tmp_path) -> None:
    """nn.TransformerEncoderLayer through the dynamo exporter (the TorchScript one fails inside PyTorch on
    scaled_dot_product_attention): shape arithmetic (Shape, Gather, Slice, Concat feeding Reshape) is
    followed symbolically, so the batch stays dynamic; then fine-tune, save, reload, export back."""
    torch.manual_seed(0)
    module = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    path = str(tmp_path / "encoder.onnx")
    torch.onnx.export(module, (torch.zeros(2, 5, 16),), path, input_names=["x"], output_names=["y"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False)
    imported = gd.onnx.load(path)
    predict = imported.compile()
    rng = np.random.default_rng(0)
    for batch in (1, 6):
        xv = rng.standard_normal((batch, 5, 16)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(xv)).numpy()
        assert rel_err(predict.run({"x": xv})[0], expected) <= 1e-5
    g, y = imported.graph, imported.outputs[0]
    with g:
        target = gd.placeholder("target", (None, 5, 16))
        loss = gd.losses.MSE(name="loss")(y, target)
    train = imported.compile(gd.optim.Adam(lr=1e-2), loss=loss)
    xt, tt = rng.standard_normal((8, 5, 16)).astype(np.float32), rng.standard_normal((8, 5, 16)).astype(np.float32)
    losses = [float(train.run({"x": xt, "target": tt})[0]) for _ in range(5)]
    assert losses[-1] < losses[0]
    tuned = predict.run({"x": xt})[0]
    train.save(tmp_path / "encoder.gdl")
    back = str(tmp_path / "back.onnx")
    gd.onnx.export(gd.load(tmp_path / "encoder.gdl"), back, outputs=[y.name])
    sess = ort.InferenceSession(back, providers=["CPUExecutionProvider"])
    assert rel_err(sess.run(None, {"x": xt})[0], tuned) <= 1e-5
    assert rel_err(sess.run(None, {"x": xt[:3]})[0], tuned[:3]) <= 1e-5


#: Math cases exported as compositions (log2 = log / log 2, cumprod through sign and log-abs sums): close.
MATH_SPELLED_OUT = {"logs", "scans"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(set(MATH_CASES) - {"reduce_batch"}))
def test_math_round_trip(name: str, dtype: str, tmp_path) -> None:
    with gd.Graph(name, dtype=dtype) as g:
        x = gd.placeholder("x", (None, 4, 6))
        out = MATH_CASES[name](x)
    gd.onnx.export(g, tmp_path / "m.onnx", outputs=[out])
    exe, ref = gd.onnx.load(tmp_path / "m.onnx").compile(), gd.compile([out])
    for batch in (2, 5):
        xv = np.random.default_rng(batch).standard_normal((batch, 4, 6)).astype(dtype)
        actual, expected = exe.run({"x": xv})[0], ref.run({"x": xv})[0]
        if name in MATH_SPELLED_OUT:
            np.testing.assert_allclose(actual, expected, rtol=1e-5 if dtype == "float32" else 1e-13, atol=1e-6)
        else:
            np.testing.assert_array_equal(actual, expected)


def test_run_time_sizes_used_as_data_are_refused(tmp_path) -> None:
    with gd.Graph("g") as g:
        x = gd.placeholder("x", (None, 4, 6))
        out = MATH_CASES["reduce_batch"](x)  # var over the batch: the count is a run-time size
    gd.onnx.export(g, tmp_path / "m.onnx", outputs=[out])
    with pytest.raises(UnsupportedOpError, match=r"ReduceProd, opset 21\).*shape with sizes only known at run time"):
        gd.onnx.load(tmp_path / "m.onnx")


@pytest.mark.parametrize("op, include_pad", [("MaxPool", 0), ("AveragePool", 0), ("AveragePool", 1)])
def test_ceil_mode_pooling_matches_onnxruntime(op: str, include_pad: int, tmp_path) -> None:
    """ceil_mode=1 imports as graphdl's ceil_mode (PyTorch's rounding, which onnxruntime's kernels follow):
    rectangular images, strides 1-3, symmetric and lopsided padding, with and without padding in the mean."""
    checked = 0
    for h, k, s, pads in [(5, 2, 2, [0, 0, 0, 0]), (6, 3, 2, [1, 1, 1, 1]), (7, 3, 3, [1, 0, 1, 1]),
                          (4, 3, 2, [0, 1, 1, 0]), (8, 2, 3, [1, 1, 0, 0]), (3, 3, 1, [1, 0, 0, 1])]:
        attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": pads, "ceil_mode": 1}
        if op == "AveragePool":
            attrs["count_include_pad"] = include_pad
        graph = helper.make_graph(
            [helper.make_node(op, ["x"], ["y"], **attrs)], "pool",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, h, h + 1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, None, None])])
        path = str(tmp_path / f"{op}{h}.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)
        xv = np.random.default_rng(h).standard_normal((2, 1, h, h + 1)).astype(np.float32)
        expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
        got = gd.onnx.load(path).compile().run({"x": xv})[0]
        assert got.shape == expected.shape and rel_err(got, expected) <= 1e-6, (h, k, s, pads)
        checked += 1
    assert checked == 6


def test_constant_index_arithmetic_is_folded_while_importing(tmp_path) -> None:
    """PyTorch's TorchScript exporter computes Pad's pads with ConstantOfShape, Concat, Reshape, Slice,
    Transpose and Cast of constants: folded at import (onnx.reference), so the Pad imports. The weights
    stay trainable parameters."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(2, 3, 3), nn.ELU()).eval()
    path = str(tmp_path / "pad.onnx")
    _torch_export(module, torch.zeros((2, 2, 5, 5)), path)
    assert "ConstantOfShape" in {n.op_type for n in onnx.load(path).graph.node}
    imported = gd.onnx.load(path)
    xv = np.random.default_rng(0).standard_normal((3, 2, 5, 5)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(xv)).numpy()
    assert rel_err(imported.compile().run({"x": xv})[0], expected) <= 1e-5
    assert sorted(v.shape for v in imported.graph.parameters().values()) == [(3,), (3, 2, 3, 3)]


def test_filled_tensors_of_run_time_or_huge_shapes_are_refused(tmp_path) -> None:
    def model(shape_input: list, nodes: list) -> str:
        graph = helper.make_graph(nodes, "fill", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], shape_input)
        path = str(tmp_path / f"fill{len(nodes)}.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    fill = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    run_time = model([], [helper.make_node("Shape", ["x"], ["s"]),
                          helper.make_node("ConstantOfShape", ["s"], ["z"], value=fill),
                          helper.make_node("Add", ["x", "z"], ["y"])])
    with pytest.raises(UnsupportedOpError, match=r"node .y. \(Add.*zero-filled tensor of shape \[None, 3\].*run time"):
        gd.onnx.load(run_time)
    huge = model([numpy_helper.from_array(np.array([1 << 20, 1 << 20], dtype=np.int64), "s")],
                 [helper.make_node("ConstantOfShape", ["s"], ["z"], value=fill),
                  helper.make_node("Add", ["x", "z"], ["y"])])
    with pytest.raises(UnsupportedOpError, match="too large to build while importing"):
        gd.onnx.load(huge)


class _RecurrentHead(nn.Module):
    def __init__(self, cell: type, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.rnn = cell(6, 8, num_layers=2, batch_first=batch_first, bidirectional=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.batch_first else out[-1])


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_torch_recurrent_models_load_match_and_fine_tune(cell: str, tmp_path) -> None:
    """Two bidirectional layers exported by PyTorch (zero initial states of the run-time batch size through
    ConstantOfShape and Slice): the same outputs at two batch sizes; the weights train."""
    torch.manual_seed(0)
    batch_first = cell != "GRU"
    module = _RecurrentHead(getattr(nn, cell), batch_first).eval()
    path = str(tmp_path / "rnn.onnx")
    torch.onnx.export(module, (torch.zeros((2, 5, 6) if batch_first else (5, 2, 6)),), path, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0 if batch_first else 1: "batch"}},
                      dynamo=False, opset_version=17)
    imported = gd.onnx.load(path)
    predict = imported.compile()
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        xv = rng.standard_normal((batch, 5, 6) if batch_first else (5, batch, 6)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(xv)).numpy()
        assert rel_err(predict.run({"x": xv})[0], expected) <= 1e-5
    assert len(imported.graph.parameters()) == 2 * 2 * 4 + 2  # layers * directions * (W_ih, W_hh, b_ih, b_hh)
    with imported.graph:
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(imported.outputs[0], y)
    train = imported.compile(gd.optim.Adam(lr=1e-2), loss=loss)
    xt = rng.standard_normal((16, 5, 6) if batch_first else (5, 16, 6)).astype(np.float32)
    yt = rng.integers(0, 10, 16)
    losses = [float(train.run({"x": xt, "y": yt})[0]) for _ in range(10)]
    assert losses[-1] < losses[0]


def _recurrent_model(op: str, layout: int, tmp_path, **attrs: Any) -> tuple[str, dict[str, np.ndarray]]:
    """One ONNX RNN/GRU/LSTM node: bidirectional, hidden 4, biases, initial states fed as inputs."""
    hidden, features, steps, batch, gates = 4, 3, 5, 2, {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((2, gates * hidden, n)).astype(np.float32) * 0.5, k)
             for k, n in (("W", features), ("R", hidden))]
    inits.append(numpy_helper.from_array(rng.standard_normal((2, 2 * gates * hidden)).astype(np.float32), "B"))
    states = ["h0", "c0"] if op == "LSTM" else ["h0"]
    x_dims, h_dims = ([steps, "n", features], [2, "n", hidden]) if layout == 0 else (["n", steps, features],
                                                                                       ["n", 2, hidden])
    value = lambda name, dims: helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
    outputs = ["Y", "Y_h", "Y_c"][: 1 + len(states)]
    y_dims = [steps, 2, "n", hidden] if layout == 0 else ["n", steps, 2, hidden]
    node = helper.make_node(op, ["x", "W", "R", "B", "", *states], outputs, hidden_size=hidden,
                            direction="bidirectional", layout=layout, **attrs)
    graph = helper.make_graph([node], op.lower(), [value("x", x_dims)] + [value(s, h_dims) for s in states],
                              [value("Y", y_dims)] + [value(o, h_dims) for o in outputs[1:]], inits)
    path = str(tmp_path / f"{op}{layout}.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    feeds = {"x": rng.standard_normal((steps, batch, features) if layout == 0 else (batch, steps, features))}
    for s in states:
        feeds[s] = rng.standard_normal((2, batch, hidden) if layout == 0 else (batch, 2, hidden))
    return path, {k: v.astype(np.float32) for k, v in feeds.items()}


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_ops_match_the_onnx_reference(op: str, layout: int, tmp_path) -> None:
    """Every output (Y, Y_h, Y_c) in both layouts against onnx.reference (and onnxruntime, which runs
    layout 0 only)."""
    from onnx.reference import ReferenceEvaluator

    path, feeds = _recurrent_model(op, layout, tmp_path, **({"linear_before_reset": 1} if op == "GRU" else {}))
    expected = ReferenceEvaluator(path).run(None, feeds)
    if layout == 0:
        runtime = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
        assert all(rel_err(a, b) <= 1e-5 for a, b in zip(runtime, expected, strict=True))
    imported = gd.onnx.load(path)
    got = imported.compile().run({imported.inputs[k]: v for k, v in feeds.items()})
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert all(rel_err(g, e) <= 1e-5 for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("op, attrs, pattern", [
    ("GRU", {}, "linear_before_reset=0"),
    ("LSTM", {"clip": 1.0}, "attribute 'clip'"),
    ("LSTM", {"input_forget": 1}, "input_forget=1"),
    ("RNN", {"activations": ["Sigmoid", "Sigmoid"]}, r"activations \['sigmoid', 'sigmoid'\]"),
])
def test_recurrent_variants_graphdl_does_not_compute_are_refused(op, attrs, pattern, tmp_path) -> None:
    path, _ = _recurrent_model(op, 0, tmp_path, **attrs)
    with pytest.raises(UnsupportedOpError, match=rf"node .*\({op}, opset 17\): {pattern}"):
        gd.onnx.load(path)


@pytest.mark.parametrize("module, shape", [(lambda: nn.GroupNorm(2, 4), (4, 3, 3)),
                                           (lambda: nn.InstanceNorm2d(4, affine=True), (4, 3, 3)),
                                           (lambda: nn.InstanceNorm1d(4), (4, 5))],
                         ids=["groupnorm", "instancenorm2d", "instancenorm1d"])
def test_torch_group_and_instance_norm(module, shape, tmp_path) -> None:
    """PyTorch writes GroupNorm as Reshape, InstanceNormalization, Reshape, Mul, Add: it imports to graphdl's
    group_norm (one channel per group) and gives PyTorch's values."""
    torch.manual_seed(0)
    m = module().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    path = str(tmp_path / "norm.onnx")
    torch.onnx.export(m, (torch.zeros((2, *shape)),), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False, opset_version=17)
    imported = gd.onnx.load(path)
    assert "group_norm" in {n.op for n in imported.graph.nodes.values()}
    xv = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32) * 3 + 1
    with torch.no_grad():
        expected = m(torch.from_numpy(xv)).numpy()
    assert rel_err(imported.compile().run({"x": xv})[0], expected) <= 1e-5


@pytest.mark.parametrize("kwargs", [{"scale_factor": 2}, {"size": (7, 5), "mode": "bilinear"},
                                    {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
                                    {"scale_factor": 1.5}, {"size": (3, 4)}],
                         ids=["nearest", "bilinear", "bilinear-corners", "nearest-1.5", "nearest-down"])
def test_torch_upsample(kwargs, tmp_path) -> None:
    """PyTorch's Upsample exports as Resize; it imports as graphdl's resize2d with PyTorch's values."""
    module = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Upsample(**kwargs)).eval()
    path = str(tmp_path / "up.onnx")
    torch.onnx.export(module, (torch.zeros((2, 2, 4, 6)),), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False, opset_version=17)
    imported = gd.onnx.load(path)
    assert "resize2d" in {n.op for n in imported.graph.nodes.values()}
    xv = np.random.default_rng(0).standard_normal((3, 2, 4, 6)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(xv)).numpy()
    assert rel_err(imported.compile().run({"x": xv})[0], expected) <= 1e-5


def test_group_normalization_matches_onnxruntime(tmp_path) -> None:
    """Opset 21's GroupNormalization (scale and bias per channel) imports as group_norm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), k) for k in ("scale", "bias")]
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], num_groups=3, epsilon=1e-3)
    value = [helper.make_tensor_value_info(k, TensorProto.FLOAT, ["n", 6, 4, 5]) for k in ("x", "y")]
    path = str(tmp_path / "gn.onnx")
    onnx.save(helper.make_model(helper.make_graph([node], "gn", value[:1], value[1:], inits),
                                opset_imports=[helper.make_opsetid("", 21)]), path)
    xv = rng.standard_normal((2, 6, 4, 5)).astype(np.float32) * 2 + 1
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    imported = gd.onnx.load(path)
    assert [n.op for n in imported.graph.nodes.values() if n.op == "group_norm"] == ["group_norm"]
    assert rel_err(imported.compile().run({"x": xv})[0], expected) <= 1e-5
