"""New layers are drawn with their attributes, and `graphdl info` lists their parameters and state."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS


def _model():
    with gd.Graph("zoo") as g:
        x = gd.placeholder("x", (None, 3, 9, 9))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = L.Conv2D(3, 8, 3, stride=2, padding=1, dilation=1, groups=1, name="conv")(x)
        h = L.LeakyReLU(0.2, name="act")(L.BatchNorm2D(8, name="bn")(h))
        a = L.MaxPool2D(2, stride=1, name="maxpool")(h)
        b = L.AvgPool2D(3, stride=1, padding=1, name="avgpool")(h)
        h = L.Concat(dim=1, name="cat")(a, L.MaxPool2D(2, stride=1, name="maxpool2")(b))
        h = L.Dropout(0.3, name="drop")(L.GELU("tanh", name="gelu")(h))
        h = L.LayerNorm(16, name="ln")(L.Flatten(name="flat")(L.GlobalAvgPool2D(name="gap")(h)))
        logits = L.Linear(16, 4, name="fc")(h)
        loss = LS.SoftmaxCrossEntropy(label_smoothing=0.1, name="ce")(logits, y)
    return g, logits, loss


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_new_layers_are_drawn_with_their_attributes(tmp_path) -> None:
    _, _, loss = _model()
    train = gd.compile([loss], optimizer=gd.optim.SGD(lr=0.1, momentum=0.9))
    texts = _texts(gd.viz.to_svg(train, tmp_path / "zoo.svg", group="none"))
    expected = [
        "dilation=(1, 1) groups=1 kernel=(3, 3) padding=(1, 1, 1, 1) stride=(2, 2)",  # attributes sorted by name
        "kernel=(2, 2) padding=(0, 0, 0, 0) stride=(1, 1)",
        "kernel=(3, 3) padding=(1, 1, 1, 1) stride=(1, 1)",
        "eps=1e-05 momentum=0.1 training=True",
        "negative_slope=0.2", "approximate=tanh", "p=0.3 training=True", "axis=1",
    ]
    for line in expected:
        assert line in texts, line
    for name in ("conv", "bn", "maxpool", "avgpool", "cat", "drop", "gap", "ln", "update/bn", "update/drop.counter"):
        assert name in texts, name


def test_graphdl_info_lists_new_parameters_and_state(tmp_path, capsys) -> None:
    from graphdl.cli import main

    _, logits, _ = _model()
    path = tmp_path / "zoo.gdl"
    gd.compile([logits]).save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for name in ("conv.W", "conv.b", "bn.gamma", "bn.beta", "ln.gamma", "ln.beta", "fc.W",
                 "bn.running_mean", "bn.running_var", "drop.counter"):
        assert name in out, name
