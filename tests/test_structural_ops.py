"""The structural ops, conv1d / conv_transpose2d, the activations and the loss options without PyTorch:
shapes with an unknown batch dimension, mistakes named at the node, run-time index checks, save and load."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS

ops = gd.ops


def test_structural_ops_keep_the_batch_dimension_unknown() -> None:
    with gd.Graph("batch", dtype="float64"):
        x = gd.placeholder("x", (None, 3, 4))
        i = gd.placeholder("i", (None, 2, 4), dtype="int64")
        shapes = {name: t.shape for name, t in {
            "stack": ops.stack([x, x], 1), "flip": ops.flip(x, 0), "pad": ops.pad(x, (1, 1)),
            "gather": ops.gather(x, 1, i), "tile": ops.tile(x, (1, 2, 1)), "einsum": ops.einsum("bij->bji", x),
            "broadcast_to": ops.broadcast_to(ops.unsqueeze(x, 1), (None, 5, 3, 4)),
        }.items()}
    assert shapes == {"stack": (None, 2, 3, 4), "flip": (None, 3, 4), "pad": (None, 3, 6), "gather": (None, 2, 4),
                      "tile": (None, 6, 4), "einsum": (None, 4, 3), "broadcast_to": (None, 5, 3, 4)}


@pytest.mark.parametrize("build, message", [
    (lambda x, i: ops.squeeze(x, 1), r"squeeze at node 'squeeze'.*axis 1 of \(3, 4\).*size is 4"),
    (lambda x, i: ops.pad(x, (4, 0), "reflect"), r"pad at node 'pad'.*smaller than its size 4"),
    (lambda x, i: ops.pad(x, (1, 1), "wrap"), r"pad at node 'pad'.*mode 'wrap'"),
    (lambda x, i: ops.einsum("ii->i", x), r"einsum at node 'einsum'.*repeat a letter"),
    (lambda x, i: ops.einsum("ij,jk->ik", x, x), r"einsum at node 'einsum'.*axis 'j' has size 4.*3"),
    (lambda x, i: ops.gather(x, 0, x), r"gather at node 'gather'.*index must be integers"),
    (lambda x, i: ops.broadcast_to(x, (3, 5)), r"broadcast_to at node 'broadcast_to'.*size 4 is neither 1 nor 5"),
])
def test_structural_mistakes_name_the_node(build: Any, message: str) -> None:
    with gd.Graph("bad"):
        x = gd.placeholder("x", (3, 4))
        i = gd.placeholder("i", (3, 4), dtype="int64")
        with pytest.raises(gd.ShapeError if "integers" not in message else gd.DTypeError, match=message):
            build(x, i)


def test_out_of_range_index_fails_at_run_time_naming_the_node() -> None:
    with gd.Graph("oob", dtype="float64"):
        x = gd.placeholder("x", (3, 2))
        i = gd.placeholder("i", (2, 2), dtype="int64")
        y = ops.gather(x, 0, i)
    exe = gd.compile([y])
    with pytest.raises(gd.ExecutionError, match=r"gather.*out of range"):
        exe.run({x: np.zeros((3, 2)), i: np.array([[0, 3], [1, 2]])})


def test_ignored_label_outside_the_classes_is_fine_but_others_are_not() -> None:
    with gd.Graph("ce", dtype="float64"):
        x = gd.placeholder("x", (3, 4))
        y = gd.placeholder("y", (3,), dtype="int64")
        loss = LS.SoftmaxCrossEntropy(ignore_index=-100)(x, y)
    exe = gd.compile([loss])
    (value,) = exe.run({x: np.zeros((3, 4)), y: np.array([1, -100, 2])})
    assert np.isclose(value, np.log(4))
    with pytest.raises(gd.ExecutionError, match=r"holds label 7 at index 1, outside \[0, 4\).*ignore_index -100"):
        exe.run({x: np.zeros((3, 4)), y: np.array([1, 7, 2])})


def test_model_with_the_new_ops_saves_and_loads_to_the_same_result(tmp_path: Any) -> None:
    with gd.Graph("m", dtype="float64"):
        x = gd.placeholder("x", (None, 3, 8))
        i = gd.placeholder("i", (None, 3, 2), dtype="int64")
        h = ops.pad(L.Conv1D(3, 4, 3, padding=1)(x), (1, 1), "reflect")
        h = ops.repeat(ops.flip(ops.roll(h, 1, 2), 1), (1, 2, 0, 1), 1)
        h = ops.squeeze(ops.unsqueeze(ops.einsum("bcl->bl", h), 1))
        picked = ops.gather(x, 2, i)
        t = L.ConvTranspose2D(3, 2, 2, stride=2)(ops.unsqueeze(x, 2))
        p = L.AvgPool2D(2, ceil_mode=True, count_include_pad=False)(t)
        y = (ops.sum(h) + ops.sum(p) + ops.sum(L.Mish()(x))
             + ops.sum(ops.one_hot(i, 8) * ops.unsqueeze(picked, -1)))
    exe = gd.compile([y])
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 8)),
             "i": np.random.default_rng(1).integers(0, 8, (2, 3, 2))}
    path = os.path.join(tmp_path, "m.gdl")
    exe.save(path)
    assert gd.load(path).run(feeds)[0] == exe.run(feeds)[0]
