"""The layer and op catalogue the ONNX tests walk: each case builds a small graph around one layer or op."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import graphdl as gd
from graphdl import layers as L
from graphdl import ops

#: name -> (input shape with None for the batch, build(x) -> output)
Case = tuple[tuple[int | None, ...], Callable[[gd.Tensor], gd.Tensor]]


def _bn(layer: L._BatchNorm, x: gd.Tensor) -> gd.Tensor:
    # non-trivial running statistics and affine parameters, so inference mode is really tested
    rng = np.random.default_rng(3)
    c = layer.params["gamma"].shape[0]
    layer.graph.values[layer.buffers["running_mean"].name][...] = rng.standard_normal(c)
    layer.graph.values[layer.buffers["running_var"].name][...] = rng.uniform(0.5, 2.0, c)
    layer.graph.values[layer.params["gamma"].name][...] = rng.uniform(0.5, 1.5, c)
    layer.graph.values[layer.params["beta"].name][...] = rng.standard_normal(c)
    return layer(x)


def _param(x: gd.Tensor, name: str, shape: tuple[int, ...]) -> gd.Tensor:
    value = np.random.default_rng(len(name)).standard_normal(shape) * 0.3
    return x.graph.stored(name, value.astype(x.graph.dtype), gd.NodeKind.PARAM)


def _split(x: gd.Tensor) -> gd.Tensor:
    a, b, c = ops.split(x, [1, 2, 3], axis=1)
    return ops.concat([c, ops.tanh(a), b], axis=1)


def _slice(x: gd.Tensor) -> gd.Tensor:
    return x.graph.apply("slice", [x], {"axis": 1, "start": 1, "stop": 4})


LAYERS: dict[str, Case] = {
    "linear": ((None, 6), lambda x: L.Linear(6, 4)(x)),
    "linear_nobias": ((None, 6), lambda x: L.Linear(6, 4, bias=False)(x)),
    "linear_3d": ((None, 3, 6), lambda x: L.Linear(6, 4)(x)),
    "relu": ((None, 6), lambda x: L.ReLU()(x)),
    "sigmoid": ((None, 6), lambda x: L.Sigmoid()(x)),
    "tanh": ((None, 6), lambda x: L.Tanh()(x)),
    "leaky_relu": ((None, 6), lambda x: L.LeakyReLU(0.2)(x)),
    "elu": ((None, 6), lambda x: L.ELU(0.7)(x)),
    "gelu": ((None, 6), lambda x: L.GELU()(x)),
    "gelu_tanh": ((None, 6), lambda x: L.GELU("tanh")(x)),
    "silu": ((None, 6), lambda x: L.SiLU()(x)),
    "softplus": ((None, 6), lambda x: L.Softplus()(x * 30.0)),
    "softplus_beta": ((None, 6), lambda x: L.Softplus(beta=2.0, threshold=5.0)(x * 4.0)),
    "softmax": ((None, 6), lambda x: L.Softmax()(x)),
    "softmax_axis0": ((None, 6), lambda x: L.Softmax(dim=0)(x)),
    "log_softmax": ((None, 6), lambda x: L.LogSoftmax()(x)),
    "reshape": ((None, 6), lambda x: L.Reshape(-1, 2, 3)(x)),
    "flatten": ((None, 2, 3, 4), lambda x: L.Flatten()(x)),
    "concat": ((None, 6), lambda x: L.Concat()(x, L.Tanh()(x))),
    "dropout": ((None, 6), lambda x: L.Dropout(0.5)(x)),
    "conv2d": ((None, 2, 7, 6), lambda x: L.Conv2D(2, 4, 3, padding=1)(x)),
    "conv2d_strided": ((None, 2, 7, 6), lambda x: L.Conv2D(2, 4, (3, 2), stride=2, padding=(1, 0))(x)),
    "conv2d_dilated_groups": ((None, 4, 7, 7), lambda x: L.Conv2D(4, 6, 3, dilation=2, groups=2, bias=False)(x)),
    "conv2d_same": ((None, 2, 6, 6), lambda x: L.Conv2D(2, 3, 4, padding="same")(x)),
    "max_pool2d": ((None, 2, 6, 6), lambda x: L.MaxPool2D(2)(x)),
    "max_pool2d_padded": ((None, 2, 7, 7), lambda x: L.MaxPool2D(3, stride=2, padding=1)(x)),
    "avg_pool2d": ((None, 2, 6, 6), lambda x: L.AvgPool2D(2)(x)),
    "avg_pool2d_padded": ((None, 2, 7, 7), lambda x: L.AvgPool2D(3, stride=2, padding=1)(x)),
    "global_avg_pool2d": ((None, 3, 5, 5), lambda x: L.GlobalAvgPool2D()(x)),
    "batch_norm1d": ((None, 5), lambda x: _bn(L.BatchNorm1D(5), x)),
    "batch_norm1d_3d": ((None, 5, 4), lambda x: _bn(L.BatchNorm1D(5), x)),
    "batch_norm2d": ((None, 3, 4, 4), lambda x: _bn(L.BatchNorm2D(3), x)),
    "layer_norm": ((None, 3, 6), lambda x: L.LayerNorm(6)(x)),
    "layer_norm_2d": ((None, 3, 6), lambda x: L.LayerNorm((3, 6))(x)),
    "layer_norm_plain": ((None, 6), lambda x: L.LayerNorm(6, elementwise_affine=False)(x)),
    "group_norm": ((None, 6, 4, 5), lambda x: L.GroupNorm(3, 6)(x)),
    "upsample_nearest": ((None, 2, 3, 4), lambda x: L.Upsample(scale_factor=2)(x)),
    "upsample_bilinear": ((None, 2, 3, 4), lambda x: L.Upsample(size=(5, 7), mode="bilinear")(x)),
    "upsample_bilinear_corners": ((None, 2, 3, 4), lambda x: L.Upsample(scale_factor=1.5, mode="bilinear",
                                                                         align_corners=True)(x)),
    "group_norm_plain": ((None, 4, 7), lambda x: L.GroupNorm(2, 4, affine=False)(x)),
    "instance_norm2d": ((None, 3, 4, 4), lambda x: L.InstanceNorm2D(3, affine=True)(x)),
    "embedding": ((None, 5), lambda x: L.Embedding(10, 4)(x)),
    "relu6": ((None, 6), lambda x: ops.relu6(x * 5.0)),
    "hardsigmoid": ((None, 6), lambda x: ops.hardsigmoid(x * 4.0)),
    "hardswish": ((None, 6), lambda x: ops.hardswish(x * 4.0)),
    "selu": ((None, 6), lambda x: ops.selu(x)),
    "celu": ((None, 6), lambda x: ops.celu(x, 0.5)),
    "mish": ((None, 6), lambda x: ops.mish(x)),
    "softsign": ((None, 6), lambda x: ops.softsign(x)),
    "split": ((None, 6), _split),
    "conv1d": ((None, 2, 9), lambda x: ops.conv1d(x, _param(x, "w", (4, 2, 3)), _param(x, "b", (4,)), stride=2,
                                                  padding=(2, 1))),
    "conv_transpose2d": ((None, 3, 4, 5), lambda x: ops.conv_transpose2d(
        x, _param(x, "w", (3, 4, 3, 3)), _param(x, "bias", (4,)), stride=2, padding=1, output_padding=1)),
    # functional ops
    "arith": ((None, 6), lambda x: (x * 2.0 + 1.0) / (ops.abs(x) + 3.0) - x),
    "neg_exp_log": ((None, 6), lambda x: ops.log(ops.exp(-x) + 1.0)),
    "sqrt_pow": ((None, 6), lambda x: ops.sqrt(ops.abs(x)) + ops.pow(ops.abs(x) + 0.5, 1.5)),
    "sign_clip": ((None, 6), lambda x: ops.sign(x) + ops.clip(x, -0.5, 0.7) + ops.clip(x, max=0.1)),
    "max_min": ((None, 6), lambda x: ops.maximum(x, 0.2) + ops.minimum(x, ops.tanh(x))),
    "where_compare": ((None, 6), lambda x: ops.where(ops.greater(x, 0.0), x, 0.0)
                      + ops.where(ops.less_equal(x, 0.1), 1.0, x) + ops.where(ops.equal(x, x), x, 0.0)
                      + ops.where(ops.greater_equal(x, 0.3), x, 2.0) + ops.where(ops.less(x, 0.0), x, 1.0)),
    "erf": ((None, 6), lambda x: ops.erf(x)),
    "reductions": ((None, 4, 6), lambda x: ops.sum(x, axis=1) + ops.mean(x, axis=1) + ops.max(x, axis=1)),
    "reduce_keepdims": ((None, 4, 6), lambda x: x - ops.mean(x, axis=(1, 2), keepdims=True)),
    "reduce_all": ((None, 6), lambda x: ops.sum(x) + ops.mean(x) + ops.max(x)),
    "transpose": ((None, 4, 6), lambda x: ops.transpose(x, (0, 2, 1))),
    "slice": ((None, 6), _slice),
    "matmul_t": ((None, 6), lambda x: ops.matmul(x, gd.constant(np.ones((4, 6)) * 0.3), transpose_b=True)),
    "matmul_ta": ((None, 6), lambda x: ops.matmul(x, x, transpose_a=True)),
    "matmul_3d": ((None, 3, 6), lambda x: ops.matmul(x, ops.transpose(x, (0, 2, 1)))),
}


INT_INPUT = {"embedding", "one_hot"}


def feed(shape: tuple[int | None, ...], batch: int, dtype: str, name: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    concrete = tuple(batch if d is None else d for d in shape)
    if name in INT_INPUT:
        return rng.integers(0, 10, concrete)
    return rng.standard_normal(concrete).astype(dtype)


def build_case(name: str, dtype: str = "float32") -> tuple[gd.Graph, gd.Tensor, gd.Tensor]:
    shape, fn = LAYERS[name] if name in LAYERS else EXPORT_ONLY[name]
    with gd.Graph(name, dtype=dtype, seed=1) as g:
        x = gd.placeholder("x", shape, "int64" if name in INT_INPUT else dtype)
        out = fn(x)
    return g, x, out


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude of the expected output."""
    expected = np.asarray(expected, dtype=np.float64)
    diff = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    return float(diff.max() / max(np.abs(expected).max(), 1e-30)) if diff.size else 0.0


def _index(values: list[list[int]]) -> gd.Tensor:
    return gd.constant(np.array(values, dtype=np.int64))


#: Ops exported to ONNX that the importer does not map back (checked against onnxruntime only).
EXPORT_ONLY: dict[str, Case] = {
    "attention_causal": ((None, 5, 4), lambda x: ops.scaled_dot_product_attention(x, x * 0.5, ops.tanh(x),
                                                                                    is_causal=True)),
    "multihead_attention": ((None, 5, 8), lambda x: L.MultiheadAttention(8, 2, batch_first=True)(
        x, x, x, key_padding_mask=np.array([False] * 4 + [True]))[0]),
    "multihead_attention_weights": ((None, 5, 8), lambda x: L.MultiheadAttention(8, 2)(x, x, x)[1]),
    "transformer_encoder": ((None, 5, 8), lambda x: L.TransformerEncoderLayer(
        8, 2, 16, dropout=0.1, batch_first=True, norm_first=True)(x, src_mask=~np.tril(np.ones((5, 5), bool)))),
    "transformer_decoder": ((None, 5, 8), lambda x: L.TransformerDecoderLayer(8, 2, 16, batch_first=True)(
        x, ops.tanh(x))),
    "positional": ((None, 5, 8), lambda x: L.SinusoidalPositionalEncoding(16, 8)(L.PositionalEmbedding(16, 8)(x))),
    "logsigmoid": ((None, 6), lambda x: ops.logsigmoid(x * 10.0)),
    "expand_squeeze": ((None, 6), lambda x: ops.squeeze(ops.expand_dims(x, (1, 3)), 1) * 2.0),
    "squeeze_all": ((None, 1, 6, 1), lambda x: ops.squeeze(ops.tanh(x), None)),
    "broadcast_to": ((None, 1, 6), lambda x: ops.broadcast_to(x, (None, 3, 6))),
    "reshape_like": ((None, 6), lambda x: x.graph.apply("reshape_like", [ops.reshape(x, (-1, 2, 3)) * 2.0, x])),
    "tril_triu": ((None, 4, 4), lambda x: ops.tril(x, -1) + ops.triu(x, 1)),
    "one_hot": ((None, 5), lambda x: ops.one_hot(x, 10)),
    "einsum": ((None, 3, 4), lambda x: ops.einsum("bij,bkj->bik", x, x)),
    "gather": ((None, 6), lambda x: ops.gather(x, 1, _index([[0, 5, 2], [1, 1, 3]]))),
    "take_along_axis": ((None, 6), lambda x: ops.take_along_axis(x, _index([[0, -1, 2]]), 1)),
    "scatter": ((None, 6), lambda x: ops.scatter(x, 1, _index([[0, 5], [1, 2]]), 7.0)),
    "scatter_src": ((None, 6), lambda x: ops.scatter(x, 1, _index([[0, 5], [1, 2]]), gd.constant(np.ones((2, 2))))),
    "scatter_add": ((None, 6), lambda x: ops.scatter_add(x, 1, _index([[0, 0], [1, 2]]),
                                                         gd.constant(np.ones((2, 2))))),
    "flip": ((None, 4, 6), lambda x: ops.flip(x, (1, 2)) + ops.flip(x, 2)),
    "roll": ((None, 4, 6), lambda x: ops.roll(x, (1, -2, 3), (1, 2, 2))),
    "tile": ((None, 6), lambda x: ops.tile(x, (2, 1, 3))),
    "repeat": ((None, 3, 4), lambda x: ops.repeat(x, 2, axis=1)),
    "repeat_counts": ((None, 3, 4), lambda x: ops.repeat(x, (1, 0, 3), axis=1)),
    "pad_constant": ((None, 3, 4), lambda x: ops.pad(x, (1, 2), value=0.5)),
    "pad_reflect": ((None, 3, 4), lambda x: ops.pad(x, (1, 2, 2, 1), mode="reflect")),
    "pad_replicate": ((None, 3, 4), lambda x: ops.pad(x, (1, 2), mode="replicate")),
    "pad_circular": ((None, 3, 4), lambda x: ops.pad(x, (1, 2, 1, 0), mode="circular")),
}
