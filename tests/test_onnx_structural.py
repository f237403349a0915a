"""ONNX export of the structural ops, conv1d / conv_transpose2d, the PyTorch activations and the class-loss
options: each model passes onnx.checker and onnxruntime computes what graphdl computes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ops = gd.ops


def _f(*shapes: tuple[int, ...]) -> Callable[[np.random.Generator], list[np.ndarray]]:
    return lambda r: [r.standard_normal(s).astype(np.float32) for s in shapes]


def _fi(x_shape: tuple[int, ...], i_shape: tuple[int, ...], high: int) -> Callable:
    return lambda r: [r.standard_normal(x_shape).astype(np.float32), r.integers(0, high, i_shape)]


def _kinks(r: np.random.Generator) -> list[np.ndarray]:
    x = (r.standard_normal((3, 8)) * 4).astype(np.float32)
    x[0, :4] = [-3, 0, 3, 6]
    return [x]


CASES = {
    "stack": (_f((2, 3), (2, 3)), lambda a, b: ops.stack([a, b], 1)),
    "squeeze-unsqueeze": (_f((2, 1, 3)), lambda x: ops.unsqueeze(ops.squeeze(x), 0)),
    "broadcast_to": (_f((3, 1)), lambda x: ops.broadcast_to(x, (2, 3, 4))),
    "tril-triu": (_f((2, 4, 5)), lambda x: ops.tril(x, 1) + ops.triu(x, -1)),
    "flip-roll": (_f((3, 4, 5)), lambda x: ops.roll(ops.flip(x, (0, 2)), (2, -1), (1, 2))),
    "repeat-tile": (_f((2, 3)), lambda x: ops.tile(ops.repeat(x, (1, 0, 2), 1), (2, 1, 2))),
    "pad-constant": (_f((2, 3, 4)), lambda x: ops.pad(x, (1, 2, 0, 1), value=0.5)),
    "pad-reflect": (_f((2, 3, 4)), lambda x: ops.pad(x, (2, 3, 1, 2), "reflect")),
    "pad-replicate": (_f((2, 3, 4)), lambda x: ops.pad(x, (3, 1), "replicate")),
    "pad-circular": (_f((2, 3, 4)), lambda x: ops.pad(x, (4, 2, 3, 0), "circular")),
    "einsum": (_f((2, 3, 4), (4, 5)), lambda a, b: ops.einsum("...ij,jk", a, b)),
    "gather": (_fi((4, 3), (5, 2), 4), lambda x, i: ops.gather(x, 0, i)),
    "take_along_axis-negative": (lambda r: [r.standard_normal((3, 5)).astype(np.float32), r.integers(-5, 5, (3, 2))],
                                 lambda x, i: ops.take_along_axis(x, i, 1)),
    "scatter": (lambda r: [r.standard_normal((4, 3)).astype(np.float32), np.array([[0, 1, 2], [3, 2, 1]]),
                           r.standard_normal((2, 3)).astype(np.float32)], lambda x, i, s: ops.scatter(x, 0, i, s)),
    "scatter-value": (lambda r: [r.standard_normal((4, 3)).astype(np.float32), np.array([[0, 1, 2], [3, 2, 1]])],
                      lambda x, i: ops.scatter(x, 0, i, 2.5)),
    "scatter_add": (lambda r: [r.standard_normal((4, 3)).astype(np.float32), r.integers(0, 4, (6, 3)),
                               r.standard_normal((6, 3)).astype(np.float32)],
                    lambda x, i, s: ops.scatter_add(x, 0, i, s)),
    "one_hot": (lambda r: [r.integers(0, 5, (2, 3))], lambda i: ops.one_hot(i, 5)),
    "conv1d": (_f((2, 4, 11)), lambda x: L.Conv1D(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)(x)),
    "conv_transpose2d": (_f((2, 4, 3, 5)), lambda x: L.ConvTranspose2D(4, 6, 3, stride=2, padding=1,
                                                                        output_padding=1, groups=2)(x)),
    **{f"maxpool-ceil-{k}-{st}-{p}": (_f((2, 3, 7, 8)), lambda x, k=k, st=st, p=p: L.MaxPool2D(
        k, st, p, ceil_mode=True)(x)) for k, st, p in ((2, 2, 0), (3, 2, 1), (2, 3, 1))},
    **{f"avgpool-ceil{c}-inc{i}-{k}-{st}-{p}": (_f((2, 3, 7, 8)), lambda x, k=k, st=st, p=p, c=c, i=i: L.AvgPool2D(
        k, st, p, ceil_mode=c, count_include_pad=i)(x))
       for k, st, p in ((2, 2, 0), (3, 2, 1), (2, 3, 1)) for c in (False, True) for i in (False, True)},
    "activations": (_kinks, lambda x: ops.concat([f(x) for f in (
        ops.relu6, ops.hardsigmoid, ops.hardswish, ops.selu, lambda v: ops.celu(v, 0.7), ops.mish, ops.softsign,
        ops.logsigmoid)], 1)),
    "ce-weight-ignore-kdim": (lambda r: [r.standard_normal((2, 4, 3)).astype(np.float32),
                                         np.array([[0, -100, 3], [2, 1, -100]])],
                              lambda x, y: LS.SoftmaxCrossEntropy(weight=[0.5, 2.0, 1.0, 1.5],
                                                                  ignore_index=-100)(x, y)),
    "nll-none": (_fi((5, 4), (5,), 4), lambda x, y: LS.NLL("none")(x, y)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_matches_onnxruntime(name: str, tmp_path) -> None:
    make, build = CASES[name]
    arrays = make(np.random.default_rng(0))
    with gd.Graph(name, dtype="float32") as g:
        xs = [gd.placeholder(f"x{k}", a.shape, dtype=str(a.dtype)) for k, a in enumerate(arrays)]
        out = build(*xs)
    path = str(tmp_path / f"{name}.onnx")
    gd.onnx.export(g, path, outputs=[out])
    onnx.checker.check_model(onnx.load(path), full_check=True)
    (expected,) = gd.compile([out]).run(dict(zip(xs, arrays)))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (actual,) = sess.run(None, {f"x{k}": a for k, a in enumerate(arrays)})
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_average_pool_without_the_padding_in_the_mean_round_trips(tmp_path) -> None:
    xv = np.random.default_rng(0).standard_normal((2, 3, 7, 8)).astype(np.float32)
    with gd.Graph("pool", dtype="float32") as g:
        x = gd.placeholder("x", (None, 3, 7, 8))
        out = L.AvgPool2D(3, 2, 1, count_include_pad=False)(x)
    path = tmp_path / "pool.onnx"
    gd.onnx.export(g, path, outputs=[out])
    imported = gd.onnx.load(path)
    assert [n.attr.get("count_include_pad") for n in imported.graph.nodes.values() if n.op == "avg_pool2d"] == [False]
    np.testing.assert_array_equal(imported.compile().run({"x": xv})[0], gd.compile([out]).run({x: xv})[0])
