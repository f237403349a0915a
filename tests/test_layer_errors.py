"""Mistakes with the new layers are reported at the user's line, naming the node, the shapes and a fix."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS


def test_conv_channel_mismatch_names_node_and_fix() -> None:
    with gd.Graph("e"):
        x = gd.placeholder("x", (None, 3, 8, 8))
        with pytest.raises(gd.ShapeError, match=r"conv2d at node 'conv2' .*input has 3 channels but the weight "
                                                r"expects 4.*make the previous layer output 4 channels"):
            L.Conv2D(4, 8, 3, name="conv2")(x)


def test_conv_needs_nchw() -> None:
    with gd.Graph("e"):
        x = gd.placeholder("x", (None, 64))
        with pytest.raises(gd.ShapeError, match=r"conv2d at node 'c'.*4-d \(batch, channels, height, width\)"):
            L.Conv2D(1, 2, 3, name="c")(x)


def test_pooling_a_too_small_image_says_so() -> None:
    with gd.Graph("e"):
        x = gd.placeholder("x", (None, 2, 3, 3))
        with pytest.raises(gd.ShapeError, match=r"max_pool2d at node 'pool3'.*3x3 input.*smaller than the 4x4 kernel"):
            L.MaxPool2D(4, name="pool3")(x)


def test_same_padding_with_stride_is_refused_as_in_torch() -> None:
    with gd.Graph("e"), pytest.raises(gd.GraphError, match=r"padding='same' needs stride 1"):
        L.Conv2D(1, 2, 3, stride=2, padding="same")


def test_concat_mismatch_and_batchnorm_rank() -> None:
    with gd.Graph("e"):
        a = gd.placeholder("a", (None, 3, 4))
        b = gd.placeholder("b", (None, 2, 5))
        with pytest.raises(gd.ShapeError, match=r"concat at node 'cat'.*differ outside the concatenation axis"):
            L.Concat(dim=1, name="cat")(a, b)
        with pytest.raises(gd.GraphError, match=r"BatchNorm2D 'bn' takes 4-d input, got 3-d"):
            L.BatchNorm2D(3, name="bn")(a)


def test_loss_shape_and_reduction_errors() -> None:
    with gd.Graph("e"):
        p = gd.placeholder("p", (None, 3))
        t = gd.placeholder("t", (None,))
        with pytest.raises(gd.GraphError, match=r"MSE: prediction 'p' .* and target 't' .* same shape"):
            LS.MSE("sum")(p, t)
        with pytest.raises(gd.GraphError, match=r"reduction must be one of"):
            LS.L1("avg")


def test_embedding_id_out_of_range_names_the_node() -> None:
    with gd.Graph("e"):
        ids = gd.placeholder("ids", (None,), dtype="int64")
        out = L.Embedding(4, 2, name="emb")(ids)
    with pytest.raises(gd.ExecutionError, match=r"embedding at node 'emb' failed"):
        gd.compile([out]).run({ids: np.array([1, 7])})


@pytest.mark.parametrize("make, message", [
    (lambda: L.Linear("8", 3), r"Linear: in_features must be a whole number >= 1, got '8'"),
    (lambda: L.Linear(8, None), r"Linear: out_features must be a whole number >= 1, got None"),
    (lambda: L.Conv2D(3.0, 4, 3), r"Conv2D: in_channels must be a whole number >= 1, got 3.0"),
    (lambda: L.Conv2D(3, 0, 3), r"Conv2D: out_channels must be a whole number >= 1, got 0"),
    (lambda: L.Dropout("0.5"), r"Dropout: p must be a number in \[0, 1\], got '0.5'"),
    (lambda: L.Dropout(1.5), r"Dropout: p must be a number in \[0, 1\], got 1.5"),
    (lambda: L.BatchNorm2D("3"), r"BatchNorm2D: num_features must be a whole number >= 1"),
    (lambda: L.BatchNorm2D(3, momentum=2), r"BatchNorm2D: momentum must be a number in \[0, 1\]"),
    (lambda: L.BatchNorm2D(3, eps=0), r"BatchNorm2D: eps must be a number > 0"),
    (lambda: L.Embedding(-3, 4), r"Embedding: num_embeddings must be a whole number >= 1, got -3"),
    (lambda: L.MultiheadAttention(8, 0), r"MultiheadAttention: num_heads must be a whole number >= 1"),
    (lambda: gd.placeholder("q", (None, 2), dtype="float17"), r"placeholder 'q': dtype must be one of .*'float17'"),
])
def test_constructor_arguments_of_the_wrong_kind_are_named(make, message) -> None:
    """Sizes, probabilities and dtypes are checked when the layer is made, naming the argument."""
    with gd.Graph("args"):
        with pytest.raises(gd.GraphDLError, match=message):
            make()
        assert L.Linear(np.int64(8), 3).in_features == 8  # NumPy's ints are whole numbers too


def test_group_and_instance_norm_mistakes_name_the_layer() -> None:
    with gd.Graph("e"):
        x = gd.placeholder("x", (None, 6, 4, 4))
        with pytest.raises(gd.GraphError, match="num_channels 6 must be divisible by num_groups 4"):
            L.GroupNorm(4, 6)
        with pytest.raises(gd.GraphError, match=r"GroupNorm 'gn' takes \(N, 8, ...\) input, got 'x'"):
            L.GroupNorm(2, 8, name="gn")(x)
        with pytest.raises(gd.GraphError, match=r"InstanceNorm1D 'in1' takes 3-d"):
            L.InstanceNorm1D(6, name="in1")(x)
        with pytest.raises(gd.GraphError, match="track_running_stats=True .* not supported"):
            L.InstanceNorm2D(6, track_running_stats=True)
        y = gd.placeholder("y", (None, 6, None))
        with pytest.raises(gd.ShapeError, match=r"group_norm at node 'g'.*every size past the batch known"):
            L.GroupNorm(3, 6, name="g")(y)
