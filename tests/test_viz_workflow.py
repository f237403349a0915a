"""Pictures: one box per layer for training plans, inference drawn as it runs, a legend matching the labels, the
buffer plan, training curves. SVGs are parsed as XML, PNGs read back as images."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def _size(svg: str) -> tuple[float, float]:
    root = ET.fromstring(svg)
    return float(root.get("width").removesuffix("pt")), float(root.get("height").removesuffix("pt"))


def _cnn():
    with gd.Graph("cnn", seed=0):
        x = gd.placeholder("x", (None, 1, 8, 8))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.ReLU()(layers.BatchNorm2D(8, name="bn1")(layers.Conv2D(1, 8, 3, padding=1, name="conv1")(x)))
        h = layers.MaxPool2D(2, name="pool")(h)
        h = layers.Flatten(name="flatten")(layers.Dropout(0.25, name="dropout")(h))
        logits = layers.Linear(8 * 4 * 4, 10, name="fc")(h)
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return logits, loss


def test_training_plan_is_one_box_per_layer_by_default() -> None:
    logits, loss = _cnn()
    train = gd.compile([loss, logits], optimizer=gd.optim.Adam())
    grouped = gd.viz.to_svg(train)
    full = gd.viz.to_svg(train, group="none")
    texts, full_texts = _texts(grouped), _texts(full)
    boxes = [g.find(f"{SVG}title").text for g in ET.fromstring(grouped).iter(f"{SVG}g") if g.get("class") == "node"]
    # (no "relu": the ReLU runs after the max pooling, as the pool's value, passes/reorder.py)
    layers_ = ("conv1", "bn1", "pool", "dropout", "flatten", "fc", "softmax_cross_entropy", "optimizer", "x", "y")
    assert sorted(b for b in boxes if not b.startswith("legend_")) == sorted(gd.viz._node_id(n) for n in layers_)
    assert not any(t.startswith(("grad/", "update/")) or "/adam_" in t for t in texts)
    assert any(t.startswith("grad/conv1/") for t in full_texts) and "update/fc.W" in full_texts
    assert "2 gradient, 2 param, 4 state, 2 update" in texts  # conv1: W, b, their Adam moments and updates
    gw, gh = _size(grouped)
    fw, fh = _size(full)
    assert gw * gh < 0.35 * fw * fh
    assert "one box per layer" in " ".join(texts)
    assert _texts(gd.viz.to_svg(train, group="layer")) == texts


def test_small_training_plans_and_graphs_stay_in_full(mlp) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1))
    assert "update/fc1.W" in _texts(gd.viz.to_svg(train))
    with pytest.raises(gd.VizError, match="group must be"):
        gd.viz.to_dot(train, group="layers")


def test_hide_optimizer_state(mlp) -> None:
    train = gd.compile([mlp.loss], optimizer=gd.optim.Adam())
    texts = _texts(gd.viz.to_svg(train, group="none", hide=("optimizer_state",)))
    assert "update/fc1.W" in texts and "fc1.W" in texts and "bn" not in texts
    assert not any("/adam_" in t for t in texts) and "optimizer.t" not in texts
    with pytest.raises(gd.VizError, match="unknown hide"):
        gd.viz.to_dot(train, hide=("everything",))


def test_legend_says_input_like_the_nodes(mlp) -> None:
    texts = _texts(gd.viz.to_svg(gd.compile([mlp.logits])))
    assert texts.count("input") == 2  # the node 'x' and its legend entry
    assert "placeholder" not in texts


def test_inference_picture_draws_what_the_plan_runs() -> None:
    logits, loss = _cnn()
    predict = gd.compile([logits])
    root = ET.fromstring(gd.viz.to_svg(predict))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "dropout" not in texts and "dropout.counter" not in texts
    assert "bn1.running_mean" in texts  # BatchNorm reads its running statistics at inference: drawn
    edges = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    # dropout's input goes straight to its consumer; the ReLU runs after the max pooling under the pool's
    # name, the pooling before it as pool/before_relu (passes/reorder.py)
    assert "n_pool->n_flatten" in edges and f"{gd.viz._node_id('pool/before_relu')}->n_pool" in edges
    train_texts = _texts(gd.viz.to_svg(gd.compile([loss], optimizer=gd.optim.SGD(lr=0.1)), group="none"))
    assert "dropout" in train_texts and "dropout.counter" in train_texts


@pytest.mark.slow
def test_memory_plan_rows_bars_and_lower_bound(tmp_path) -> None:
    logits, loss = _cnn()
    train = gd.compile([loss, logits], optimizer=gd.optim.SGD(lr=0.1))
    report = train.memory_report(batch_size=16)
    info = gd.viz.memory_plan(train, tmp_path / "plan.svg", batch_size=16)
    assert info["arena_bytes"] == report["arena_bytes"] and info["lower_bound_bytes"] == report["lower_bound_bytes"]
    assert info["peak_live_bytes"] == report["lower_bound_bytes"]  # the drawn profile reaches the bound exactly
    from passes import specialize

    plan = specialize(train.ir, train._batch_shapes(16))
    rows, live = gd.viz.memory_rows(plan)
    scratch = [s for slots in plan.workspace.values() for s in slots]
    assert len(rows) == info["buffers"] == len({s.offset for s in [*plan.slots.values(), *scratch]})
    assert sum(len(v) for _, v in rows) == len(plan.slots) + len(scratch)
    root = ET.parse(tmp_path / "plan.svg").getroot()
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "lower bound" in texts and f"arena {report['arena_bytes']:,} B" in texts
    assert "conv1" in texts
    gd.viz.memory_plan(train, tmp_path / "plan.png", batch_size=16)
    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "plan.png")
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert len(np.unique(img.reshape(-1, img.shape[2])[:, :3], axis=0)) > 8  # coloured bars, not a blank page


def test_history_curves_png_and_svg(mlp, tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64)).astype("float32")
    y = rng.integers(0, 10, 64)
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.Adam(lr=1e-2))
    h = gd.fit(train, gd.data.DataLoader(x, y, batch_size=16), epochs=3, metrics=["accuracy"],
               validation=(gd.compile([mlp.loss, mlp.logits]), x, y), progress=False)
    names = gd.plot.history(h, tmp_path / "curves.svg")
    assert names == [mlp.loss.name, "accuracy"]
    root = ET.parse(tmp_path / "curves.svg").getroot()
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    h.save(tmp_path / "h.json")
    gd.plot.history(tmp_path / "h.json", tmp_path / "curves.png")
    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "curves.png")
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 200
    with pytest.raises(gd.VizError, match=r"\.png, \.svg"):
        gd.plot.history(h, tmp_path / "curves.gif")
    with pytest.raises(gd.VizError, match="has no"):
        gd.plot.history(h, tmp_path / "c.png", keys=["f1"])
    del texts
