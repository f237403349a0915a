"""ONNX export of the math, indexing and reduction ops against onnxruntime, at two batch sizes from one file."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphdl as gd
from graphdl import ops

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MASK = np.array([True, False, True, True, False, True])

#: name -> build(x) for x of shape (batch, 4, 6)
CASES: dict[str, Callable[[gd.Tensor], gd.Tensor]] = {
    "trig": lambda x: ops.sin(x) + ops.cos(x) + ops.tan(x * 0.3) + ops.atan(x) + ops.sinh(x) + ops.cosh(x)
    + ops.asinh(x) + ops.asin(ops.tanh(x)) + ops.acos(ops.tanh(x)) + ops.atanh(ops.tanh(x) * 0.9)
    + ops.acosh(abs(x) + 1.0),
    "logs": lambda x: ops.log2(abs(x) + 0.1) + ops.log10(abs(x) + 0.1) + ops.log1p(abs(x)) + ops.expm1(x)
    + ops.rsqrt(abs(x) + 0.1) + ops.reciprocal(x + 10.0) + ops.square(x),
    "rounding": lambda x: ops.floor(x * 3) + ops.ceil(x * 3) + ops.round(x * 3) + ops.trunc(x * 3)
    + ops.copysign(x, -x * 0.0 - 1.0) + ops.copysign(x + 1.0, x),
    "int_division": lambda x: (x * 10 // 3.0) + (x * 10 % -3.0) + ops.fmod(x * 10, 3.0)
    + ops.div(x * 10, -3.0, rounding_mode="trunc"),
    "int_ops": lambda x: ((x * 10).astype("int64") // 3 + (x * 10).astype("int64") % -3
                          + ops.div((x * 10).astype("int64"), 3, rounding_mode="trunc")
                          + ops.fmod((x * 10).astype("int64"), 3)).astype(x.dtype) / 7,
    "promotion": lambda x: x * (x > 0).astype("int32") + (x * 4).astype("int64") + 0.5,
    "predicates": lambda x: ops.where(ops.isclose(x, x + 1e-9) & ops.isfinite(x) & ~ops.isnan(x)
                                      & ~ops.isinf(x) | ops.logical_xor(x > 0, x > 1), x, 1.0)
    + ops.where(ops.not_equal(x, 0.0) ^ ops.logical_not(x < 0) & ops.logical_or(x, x), 2.0, x),
    "reductions": lambda x: (ops.min(x, axis=1) + ops.prod(x, dim=1, keepdim=True).sum(axis=1)
                             + ops.logsumexp(x, axis=1) + ops.var(x, axis=1) + ops.std(x, axis=1, correction=0)),
    "reduce_batch": lambda x: x - ops.var(x, axis=0, keepdims=True) + ops.std(x, axis=(0, 1), keepdims=True),
    "any_all_arg": lambda x: (ops.any(x > 1, axis=2).astype(x.dtype) + ops.all(x > -1, axis=2).astype(x.dtype)
                              + ops.argmax(x, axis=2).astype(x.dtype) + ops.argmin(x, axis=2).astype(x.dtype)),
    "sum_bool": lambda x: (x > 0).sum(axis=2).astype(x.dtype) + ops.sum(x > 0.5).astype(x.dtype) + x.sum(axis=2),
    "argmax_flat": lambda x: ops.argmax(x[0]).astype(x.dtype) + ops.argmin(x[0], keepdims=True).astype(x.dtype),
    "scans": lambda x: ops.cumsum(x, axis=2) + ops.cumsum(x, axis=1, reverse=True)
    + ops.cumprod(ops.where(abs(x) < 0.3, 0.0, x), axis=2),
    "indexing": lambda x: x[:, 1:3, ::-2] + x[:, None, -1, 1::2] + x[:, 2:, 0:1],
    "gather": lambda x: x[:, [3, 0, -1]][..., :4] + x[:, :, MASK][:, 1:] + x[:, 2, [0, 5, 5, 1]][:, None],
    "mask_2d": lambda x: x[:, np.arange(24).reshape(4, 6) % 5 == 0],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_math_op_matches_onnxruntime(name: str, dtype: str, tmp_path) -> None:
    with gd.Graph(name, dtype=dtype) as g:
        x = gd.placeholder("x", (None, 4, 6))
        out = CASES[name](x)
    path = str(tmp_path / f"{name}.onnx")
    gd.onnx.export(g, path, outputs=[out])
    onnx.checker.check_model(onnx.load(path), full_check=True)
    exe = gd.compile([out])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except (ort.capi.onnxruntime_pybind11_state.NotImplemented,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph) as e:
        assert dtype == "float64", e
        pytest.skip(f"onnxruntime has no float64 kernel for {name}: {str(e)[:120]}")
    for batch in (2, 5):
        xv = np.random.default_rng(batch).standard_normal((batch, 4, 6)).astype(dtype)
        want = exe.run({"x": xv})[0]
        got = sess.run(None, {"x": xv})[0]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-5 if dtype == "float32" else 1e-12, err_msg=name)


def test_flatten_with_two_unknown_leading_dims_exports(tmp_path) -> None:
    with gd.Graph("flat") as g:
        x = gd.placeholder("x", (None, None, 4, 6))
        out = gd.layers.Flatten(start_dim=2)(x)
    assert g.nodes[out.name].op == "flatten"
    path = str(tmp_path / "flat.onnx")
    gd.onnx.export(g, path, outputs=[out])
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    xv = np.random.default_rng(0).standard_normal((2, 3, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": xv})[0], xv.reshape(2, 3, 24))
