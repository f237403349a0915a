"""Recurrent layers without an oracle: shape errors, constructor errors, graph structure, dropout modes,
unbatched input, save/load of a compiled LSTM."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers


def test_input_of_wrong_size_or_rank_names_layer_shapes_and_fix() -> None:
    with gd.Graph("m"):
        lstm = layers.LSTM(5, 4, name="enc")
        with pytest.raises(gd.ShapeError, match=r"LSTM 'enc'.*\(7, 2, 3\).*3 features.*input_size=5.*input_size=3"):
            lstm(gd.placeholder("x", (7, 2, 3)))
        with pytest.raises(gd.ShapeError, match=r"LSTM 'enc'.*\(7, 2, 3, 5\).*3-d \(T, N, input_size\)"):
            lstm(gd.placeholder("x4", (7, 2, 3, 5)))
        gru = layers.GRU(5, 4, batch_first=True, name="g")
        with pytest.raises(gd.ShapeError, match=r"GRU 'g'.*\(N, T, input_size\)"):
            gru(gd.placeholder("x1", (5,)))


def test_initial_state_of_wrong_shape_names_layer_shapes_and_fix() -> None:
    with gd.Graph("m"):
        x = gd.placeholder("x", (6, None, 5))
        rnn = layers.RNN(5, 4, num_layers=2, bidirectional=True, name="rnn")
        with pytest.raises(gd.ShapeError, match=r"RNN 'rnn': h0 'h' has shape \(2, \?, 4\).*expected \(4, \?, 4\)"
                                                r".*pass h0 of shape \(4, \?, 4\)"):
            rnn(x, gd.placeholder("h", (2, None, 4)))
        lstm = layers.LSTM(5, 4, name="lstm")
        h0 = gd.placeholder("h0", (1, None, 4))
        with pytest.raises(gd.ShapeError, match=r"LSTM 'lstm': c0 'c0' has shape \(1, \?, 3\)"):
            lstm(x, (h0, gd.placeholder("c0", (1, None, 3))))
        with pytest.raises(gd.GraphError, match=r"LSTM 'lstm': the initial state must be a tuple \(h0, c0\)"):
            lstm(x, h0)


def test_constructor_errors() -> None:
    with gd.Graph("m"):
        with pytest.raises(gd.GraphError, match="nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'"):
            layers.RNN(3, 4, nonlinearity="sigmoid")
        with pytest.raises(gd.GraphError, match="hidden_size must be a positive int"):
            layers.GRU(3, 0)
        with pytest.raises(gd.GraphError, match=r"dropout must be a number in \[0, 1\]"):
            layers.LSTM(3, 4, dropout=1.5)


def test_parameters_have_pytorch_names_shapes_and_init_range() -> None:
    with gd.Graph("m") as g:
        gru = layers.GRU(3, 8, num_layers=2, bidirectional=True, name="gru")
    shapes = {k: g.tensor(t.name).shape for k, t in gru.params.items()}
    assert shapes["weight_ih_l0"] == (24, 3) and shapes["weight_ih_l1_reverse"] == (24, 16)
    assert shapes["weight_hh_l1"] == (24, 8) and shapes["bias_hh_l0_reverse"] == (24,)
    assert list(shapes)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    values = g.parameters()
    bound = 1 / np.sqrt(8)
    assert all(np.abs(values[t.name]).max() <= bound for t in gru.params.values())
    assert max(np.abs(values[t.name]).max() for t in gru.params.values()) > 0.9 * bound


@pytest.mark.parametrize("cls", [layers.RNN, layers.LSTM, layers.GRU])
def test_one_scan_per_layer_and_direction_with_the_input_projection_hoisted(cls: type) -> None:
    with gd.Graph("m") as g:
        x = gd.placeholder("x", (None, 2, 3))  # the time dimension unknown until run time
        out, _ = cls(3, 4, num_layers=2, bidirectional=True, name="rec")(x)
    scans = [n for n in g.nodes.values() if n.op == "scan"]
    assert len(scans) == 4
    for n in scans:  # the body multiplies by W_hh once; W_ih is applied before the loop
        assert [b.op for b in n.attr["body"].nodes].count("matmul") == 1
    ex = gd.compile([out])
    assert ex.run({"x": np.zeros((5, 2, 3), np.float32)})[0].shape == (5, 2, 8)
    assert ex.run({"x": np.zeros((9, 2, 3), np.float32)})[0].shape == (9, 2, 8)


def test_unbatched_input_matches_a_batch_of_one() -> None:
    rng = np.random.default_rng(0)
    xa, ha, ca = rng.standard_normal((5, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    with gd.Graph("m", dtype="float64"):
        x, h, c = gd.placeholder("x", (5, 3)), gd.placeholder("h", (2, 4)), gd.placeholder("c", (2, 4))
        lstm = layers.LSTM(3, 4, num_layers=2)
        out, (hn, cn) = lstm(x, (h, c))
        out1, (hn1, cn1) = lstm(x[:, None], (h[:, None], c[:, None]))
    got = gd.compile([out, hn, cn, out1, hn1, cn1]).run({"x": xa, "h": ha, "c": ca})
    assert got[0].shape == (5, 4) and got[1].shape == (2, 4)
    for a, b in zip(got[:3], got[3:]):
        np.testing.assert_array_equal(a, b.squeeze(1))


def test_dropout_between_layers_only_in_training_plans() -> None:
    xa = np.random.default_rng(0).standard_normal((6, 2, 3))
    with gd.Graph("m", dtype="float64"):
        x = gd.placeholder("x", (6, None, 3))
        out, _ = layers.GRU(3, 16, num_layers=2, dropout=0.5, name="gru")(x)
        plain, _ = layers.GRU(3, 16, num_layers=2, name="plain")(x)
    infer, train = gd.compile([out]), gd.compile([out], training=True)
    a, b = infer.run({"x": xa})[0], infer.run({"x": xa})[0]
    np.testing.assert_array_equal(a, b)
    t1, t2 = train.run({"x": xa})[0], train.run({"x": xa})[0]
    assert not np.allclose(t1, a) and not np.allclose(t1, t2)  # fresh masks each step, none at inference
    assert plain.shape == out.shape


def test_compiled_lstm_saves_and_loads(tmp_path) -> None:
    rng = np.random.default_rng(0)
    xa, ya = rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 5, 2))
    with gd.Graph("m", dtype="float64"):
        x, y = gd.placeholder("x", (None, 5, 3)), gd.placeholder("y", (None, 5, 2))
        out, (h, c) = layers.LSTM(3, 6, num_layers=2, batch_first=True, bidirectional=True, name="lstm")(x)
        pred = layers.Linear(12, 2, name="head")(out)
        loss = gd.losses.MSE()(pred, y)
    model = gd.compile([loss, pred, h, c], gd.optim.Adam(lr=1e-2))
    for _ in range(3):
        model.run({"x": xa, "y": ya})
    model.save(str(tmp_path / "lstm.gdl"))
    back = gd.load(str(tmp_path / "lstm.gdl"))
    assert set(back.parameters()) == set(model.parameters())
    for a, b in zip(model.run({"x": xa, "y": ya}), back.run({"x": xa, "y": ya})):
        np.testing.assert_array_equal(a, b)
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, back.parameters()[k], err_msg=k)


@pytest.mark.parametrize("cls", [layers.RNN, layers.LSTM, layers.GRU])
def test_recurrent_inference_exports_to_onnx(cls: type, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    with gd.Graph("m"):
        x = gd.placeholder("x", (None, 7, 3))
        out, fin = cls(3, 4, num_layers=2, batch_first=True, bidirectional=True, name="rec")(x)
    ex = gd.compile([out, *(fin if isinstance(fin, tuple) else (fin,))])
    gd.onnx.export(ex, str(tmp_path / "rec.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "rec.onnx"), providers=["CPUExecutionProvider"])
    xa = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    for a, b in zip(ex.run({"x": xa}), sess.run(None, {"x": xa}), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
