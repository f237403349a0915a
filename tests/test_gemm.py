"""The accumulating GEMM kernel: BLAS path and NumPy fallback against NumPy, all transposes."""

from __future__ import annotations

import numpy as np
import pytest

from graphdl.ops.gemm import _CBLAS, make_gemm


@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.1, 1.0), (2.0, 0.5)])
def test_gemm_matches_numpy(use_blas, dtype, ta, tb, alpha, beta) -> None:
    rng = np.random.default_rng(0)
    m, k, n = 5, 7, 3
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = alpha * ((a.T if ta else a) @ (b.T if tb else b)) + beta * c
    gemm = make_gemm(np.dtype(dtype), (m, n), alpha=alpha, beta=beta, trans_a=ta, trans_b=tb, use_blas=use_blas)
    gemm(a, b, c)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)
    c2 = c.copy()  # a second call through the cached pointers sees the new contents of c
    gemm(a, b, c)
    np.testing.assert_allclose(c, alpha * ((a.T if ta else a) @ (b.T if tb else b)) + beta * c2,
                               rtol=1e-5, atol=1e-5)


def test_gemm_falls_back_for_non_contiguous_arrays() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 6)).astype(np.float32)[:, ::2]  # (8, 3), strided
    b = rng.standard_normal((3, 4)).astype(np.float32)
    c = np.zeros((8, 4), np.float32)
    make_gemm(np.dtype(np.float32), (8, 4))(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)


def test_blas_is_found_for_this_numpy() -> None:
    # Not a timing test: it records whether the fast path is active where the suite runs.
    if not _CBLAS:
        pytest.skip("this NumPy build exports no OpenBLAS CBLAS we know; the NumPy fallback is used")
    assert set(_CBLAS) == {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_views_on_column_blocks_of_larger_matrices(dtype: type) -> None:
    """gemm_views multiplies into a column block of a larger matrix (strided rows, as a thread's slice of
    the batch is) with beta 0 and 1, and leaves the other columns alone; NumPy for unreadable strides."""
    from graphdl.ops.gemm import gemm_views

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((7, 12)).astype(dtype)
    c = rng.standard_normal((5, 12)).astype(dtype)
    before = c.copy()
    gemm_views(a, b[:, 3:9], c[:, 3:9], beta=1.0)
    np.testing.assert_allclose(c[:, 3:9], before[:, 3:9] + a @ b[:, 3:9], rtol=1e-5)
    np.testing.assert_array_equal(c[:, :3], before[:, :3])
    np.testing.assert_array_equal(c[:, 9:], before[:, 9:])
    gemm_views(a, b[:, ::2], c[:, ::2])  # every other column: no unit stride, NumPy's matmul
    np.testing.assert_allclose(c[:, ::2], a @ b[:, ::2], rtol=1e-5)
