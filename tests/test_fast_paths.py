"""No silent slow paths: erf without SciPy, the GEMM fast path (found or reported), BLAS threads."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

import graphdl as gd
from graphdl.cli import main
from graphdl.ops import gemm, special
from graphdl.ops.elementwise import erf_function


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(ref.dtype) + np.finfo(ref.dtype).tiny)


def _erf_inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.standard_normal(20000) * 2, rng.uniform(-7, 7, 20000), np.logspace(-300, 0.9, 2000),
                           -np.logspace(-20, 0.9, 2000), np.arange(-6.5, 6.5, 0.125),
                           [0.0, -0.0, 6.0, np.inf, -np.inf]])


def test_numpy_erf_matches_scipy_to_a_few_ulp() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    x = _erf_inputs()
    ulps = _ulps(special.erf(x), scipy_special.erf(x))
    assert ulps.max() <= 4 and np.mean(ulps <= 1) >= 0.98, (ulps.max(), np.mean(ulps <= 1))
    x32 = x.astype(np.float32)
    got32 = special.erf(x32)
    assert got32.dtype == np.float32
    assert _ulps(got32, scipy_special.erf(x32)).max() <= 1


def test_numpy_erf_special_values_and_out() -> None:
    x = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 7.0, -7.0])
    got = special.erf(x)
    np.testing.assert_array_equal(got[1:], [-0.0, 0.0, 1.0, -1.0, 1.0, -1.0])
    assert np.isnan(got[0]) and np.signbit(got[1])
    out = np.empty(3, np.float32)
    assert special.erf(np.array([0.5, 1.0, 2.0], np.float32), out) is out
    np.testing.assert_allclose(out, [0.5204999, 0.8427008, 0.9953223], rtol=1e-7)


def test_without_scipy_erf_and_gelu_use_the_numpy_erf(monkeypatch) -> None:
    import math

    monkeypatch.setitem(sys.modules, "scipy.special", None)  # "import scipy.special" now fails
    monkeypatch.setitem(sys.modules, "scipy", None)
    fn = erf_function()
    assert fn is special.erf
    with gd.Graph("gelu", dtype="float64"):
        x = gd.placeholder("x", (None, 5))
        y = gd.ops.gelu(x)
    ex = gd.compile([y])
    xb = np.linspace(-3, 3, 10).reshape(2, 5)
    expected = np.array([[v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in row] for row in xb])
    # 1 + erf(x) cancels for negative x: compare absolutely at the level of erf's own rounding
    np.testing.assert_allclose(ex.run({"x": xb})[0], expected, rtol=1e-13, atol=1e-15)


def test_gemm_fast_path_status_names_the_library() -> None:
    status = gemm.blas_status()
    assert status["searched"] == gemm.PATTERN
    if status["found"]:
        assert str(status["library"]).endswith(".so") and "openblas" in str(status["library"])
    else:
        assert status["library"] is None


def test_missing_gemm_fast_path_is_reported_once_and_falls_back(monkeypatch, caplog, tmp_path) -> None:
    assert gemm._find_cblas(str(tmp_path / "libnothing*.so")) == ({}, None)
    monkeypatch.setattr(gemm, "_CBLAS", {})
    monkeypatch.setattr(gemm, "_CBLAS_PATH", None)
    monkeypatch.setattr(gemm, "_warned", [])
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    with caplog.at_level(logging.WARNING, logger="graphdl"):
        k1 = gemm.make_gemm(np.float64, (4, 5))
        k2 = gemm.make_gemm(np.float64, (4, 5), beta=1.0)
    warnings = [r for r in caplog.records if "OpenBLAS CBLAS was not found" in r.getMessage()]
    assert len(warnings) == 1 and gemm.PATTERN in warnings[0].getMessage()
    c = np.empty((4, 5))
    k1(a, b, c)
    np.testing.assert_allclose(c, a @ b)
    k2(a, b, c)
    np.testing.assert_allclose(c, 2 * (a @ b))
    assert not gemm.blas_status()["found"]


def test_info_system_prints_blas_and_fast_paths(capsys) -> None:
    assert main(["info", "--system"]) == 0
    text = capsys.readouterr().out
    assert "GEMM fast path" in text and "erf:" in text and "BLAS threads:" in text


def test_info_without_file_or_system_is_an_error() -> None:
    with pytest.raises(SystemExit):
        main(["info"])


def test_blas_threads_set_and_restored() -> None:
    before = gd.get_num_threads()
    with gd.num_threads(1):
        assert gd.get_num_threads() == 1
    assert gd.get_num_threads() == before
    try:
        gd.set_num_threads(1)
        assert gd.get_num_threads() == 1
    finally:
        gd.set_num_threads(before)
    assert gd.get_num_threads() == before
    with pytest.raises(gd.GraphError, match="integer >= 1"):
        gd.set_num_threads(0)


@pytest.mark.parametrize("shape", [(4, 64, 32), (3, 5, 7)], ids=["rows", "scalar"])
def test_relu_and_relu_grad_row_and_scalar_paths_agree(shape: tuple) -> None:
    """relu compares against a row of constants when the size allows (4*64*32 = 8192), else against
    scalars (105 elements): same values, NaN kept. relu_grad is g * (y > 0) as PyTorch's
    threshold_backward: negative, zero and NaN y masked (a NaN forward fails the step's finite check
    anyway), aliasing allowed."""
    from graphdl.registry import get_op

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[[0, 7]] = [np.nan, -0.0]
    g = rng.standard_normal(shape).astype(np.float32)
    dtype = np.dtype(np.float32)
    relu = get_op("relu").kernel({}, (shape,), shape, dtype)
    out = np.empty_like(x)
    relu(x, out)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    relu_grad = get_op("relu_grad").kernel({}, (shape, shape), shape, dtype)
    expected = np.where(x > 0, g, 0).astype(np.float32)
    got = g.copy()
    relu_grad(got, x, got)  # in place over g, y arbitrary (negative values too)
    np.testing.assert_array_equal(got, expected)
    strided = np.empty((*shape[:-1], 2 * shape[-1]), np.float32)[..., ::2]  # not contiguous: the scalar path
    relu(x, strided)
    np.testing.assert_array_equal(strided, np.maximum(x, 0))


@pytest.mark.parametrize(("shape", "axis", "keepdims", "middle"), [
    ((6, 4, 5, 7), (0, 2, 3), False, True),  # a convolution's bias gradient: products with ones + workspace
    ((6, 4, 5, 7), (0, 2, 3), True, True),
    ((6, 4, 5, 7), (0, 3), False, True),
    ((3, 4, 5), (0, 2), False, True),
    ((0, 4, 5), (0, 2), False, True),  # nothing to sum: zeros
    ((6, 4, 5, 7), (0, 2), False, False),  # not a leading and a trailing block: NumPy's reduction
    ((6, 4, 5, 7), (1, 2), False, False),
])
@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_over_leading_and_trailing_axes_agree_with_numpy(shape, axis, keepdims, middle, op, dtype) -> None:
    from graphdl.ops.reduce import _reduce_workspace
    from graphdl.registry import get_op

    if op == "mean" and 0 in shape:
        return  # the mean of nothing is nan: NumPy's own path, tested with the op cases
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    attrs = {"axis": axis, "keepdims": keepdims}
    want = getattr(np, op)(x.astype(np.float64), axis=axis, keepdims=keepdims)
    declared = _reduce_workspace(op)(attrs, (shape,), want.shape, np.dtype(dtype))
    assert len(declared) == int(middle)
    # the planner's workspace holds garbage from other steps: the kernel must not read it before writing
    workspace = [np.full(np.dtype(dt).itemsize * int(np.prod(s)), 255, np.uint8) for s, dt in declared]
    kernel = get_op(op).kernel(attrs, (shape,), want.shape, np.dtype(dtype), workspace=workspace)
    out = np.full(want.shape, np.nan, dtype)
    kernel(x, out)
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
