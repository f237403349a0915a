"""The ONNX subcommands: graphdl export / import, and .onnx files for info and viz."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphdl as gd
from graphdl.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_export_import_info_viz(mlp, tmp_path, capsys) -> None:
    gdl = tmp_path / "m.gdl"
    gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.Adam()).save(gdl)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(gdl), "-o", str(onnx_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)

    back = tmp_path / "back.gdl"
    assert main(["import", str(onnx_path), "-o", str(back)]) == 0
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    expected = gd.compile([mlp.logits]).run({"x": x})[0]
    np.testing.assert_array_equal(gd.load(back).run({"x": x})[0], expected)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-6)

    capsys.readouterr()
    assert main(["info", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    for text in ("ONNX model", "opset 21", "producer graphdl", "(?, 64)", "fc1.W", "(64, 128)"):
        assert text in out, text
    svg = tmp_path / "m.svg"
    assert main(["viz", str(onnx_path), "-o", str(svg)]) == 0
    ET.parse(svg)


def test_bad_onnx_is_a_clean_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a model")
    assert main(["info", str(bad)]) == 1
    assert "graphdl: error:" in capsys.readouterr().err
    assert main(["import", str(bad), "-o", str(tmp_path / "x.gdl")]) == 1
    assert not (tmp_path / "x.gdl").exists()
