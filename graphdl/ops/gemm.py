"""GEMM that accumulates into its output: ``c = alpha * op(a) @ op(b) + beta * c``, in place.

NumPy's ``matmul`` cannot accumulate, so ``W -= lr * x.T @ g`` or ``y = x @ W + b`` would need an
extra pass over memory (and a broadcast add that NumPy runs through a temporary buffer). BLAS's gemm
does both inside the product. NumPy wheels ship OpenBLAS with its CBLAS symbols exported; when that
library is found, kernels call its ``cblas_?gemm`` through ctypes, so they share NumPy's own BLAS
and thread pool (a second BLAS, such as SciPy's, would leave two pools spinning on the same cores).
Otherwise the kernel falls back to NumPy with a preallocated temporary. Results agree to rounding.

While a step holds the threads (graphdl.threads), BLAS runs on one thread and a large GEMM is cut into
k blocks of its result's rows or columns (the longer side), one single-threaded call per thread of
graphdl's pool. Each block sums over the whole inner dimension, so results agree with one call's to
rounding (often to the last bit; OpenBLAS's kernels may group a sum differently for edge rows of a
block) and are the same from run to run for one thread count.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
from collections.abc import Callable

import numpy as np

from graphdl import threads

#: gemm(a, b, c) or gemm(a, b, c, alpha) to override the factory's alpha for this call.
Gemm = Callable[..., None]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


#: Where the fast path looks for NumPy's OpenBLAS: the wheel's bundled-library directory.
PATTERN = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs", "libscipy_openblas64_*.so")
_log = logging.getLogger("graphdl")


def _find_cblas(pattern: str = PATTERN) -> tuple[dict[np.dtype, Callable[..., None]], str | None]:
    """NumPy's bundled OpenBLAS gemm functions by dtype and the library's path, or ({}, None) when
    this NumPy has none we know."""
    for path in sorted(glob.glob(pattern)):
        try:
            lib = ctypes.CDLL(path)
            fns = {np.dtype(np.float32): (lib.scipy_cblas_sgemm64_, ctypes.c_float),
                   np.dtype(np.float64): (lib.scipy_cblas_dgemm64_, ctypes.c_double)}
        except (OSError, AttributeError):
            continue
        found = {}
        for dt, (fn, scalar) in fns.items():
            i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
            fn.argtypes = [i32, i32, i32, i64, i64, i64, scalar, ptr, i64, ptr, i64, scalar, ptr, i64]
            fn.restype = None
            found[dt] = fn
        return found, path
    return {}, None


_CBLAS, _CBLAS_PATH = _find_cblas()
_warned: list[bool] = []  # whether the missing fast path was reported (once per process)


def blas_status() -> dict[str, object]:
    """The GEMM fast path: whether NumPy's OpenBLAS CBLAS was found, the library used, and the
    pattern searched (shown by ``graphdl info --system``)."""
    return {"found": bool(_CBLAS), "library": _CBLAS_PATH, "searched": PATTERN}


def has_blas(dtype: np.dtype) -> bool:
    """Whether ``make_gemm`` calls BLAS for this dtype (else it falls back to NumPy with a temporary)."""
    return np.dtype(dtype) in _CBLAS


def _report_missing() -> None:
    if not _warned:
        _warned.append(True)
        _log.warning("graphdl: NumPy's OpenBLAS CBLAS was not found at %s; GEMMs that accumulate (linear "
                     "layers, fused SGD updates) use a NumPy fallback with an extra pass over memory", PATTERN)


def make_gemm(dtype: np.dtype, c_shape: tuple[int, int], *, alpha: float = 1.0, beta: float = 0.0,
              trans_a: bool = False, trans_b: bool = False, use_blas: bool = True) -> Gemm:
    """A kernel ``gemm(a, b, c)`` for 2-d arrays of ``dtype``: c = alpha op(a) op(b) + beta c.

    Steady-state calls allocate no arrays. ``use_blas=False`` forces the NumPy fallback (tests).
    """
    dtype = np.dtype(dtype)
    tmp = np.empty(c_shape, dtype) if beta != 0.0 else None

    def fallback(a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float = alpha) -> None:
        a_, b_ = (a.T if trans_a else a), (b.T if trans_b else b)
        if tmp is None:
            np.matmul(a_, b_, out=c)
            if alpha != 1.0:
                np.multiply(c, alpha, out=c)
            return
        np.matmul(a_, b_, out=tmp)
        if alpha != 1.0:
            np.multiply(tmp, alpha, out=tmp)
        if beta != 1.0:
            np.multiply(c, beta, out=c)
        np.add(c, tmp, out=c)

    fn = _CBLAS.get(dtype) if use_blas else None
    if fn is None:
        if use_blas and not _CBLAS:
            _report_missing()
        return fallback
    m, n = c_shape
    ta, tb = (_TRANS if trans_a else _NO_TRANS), (_TRANS if trans_b else _NO_TRANS)
    # Bound arrays never move, so each array's data pointer is looked up once and then reused.
    cache: list = [None, None, None, 0, 0, 0]

    def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float = alpha) -> None:
        if a is not cache[0] or b is not cache[1] or c is not cache[2]:
            am, ak = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
            bk, bn = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
            if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous
                    and a.dtype == b.dtype == c.dtype == dtype and c.shape == (m, n) == (am, bn)
                    and ak == bk and a.ndim == b.ndim == 2):
                fallback(a, b, c, alpha)
                return
            cache[:] = [a, b, c, a.ctypes.data, b.ctypes.data, c.ctypes.data]
        k = a.shape[0] if trans_a else a.shape[1]
        if m * n * k >= threads.GEMM_SPLIT_MIN:
            held = threads.holding()
            if held:
                _split_gemm(fn, trans_a, trans_b, m, n, k, alpha, cache[3], a.shape[1], cache[4], b.shape[1],
                            beta, cache[5], dtype.itemsize, held)
                return
        fn(_ROW_MAJOR, ta, tb, m, n, k, alpha, cache[3], a.shape[1], cache[4], b.shape[1], beta,
           cache[5], n)

    return gemm


#: Rows or columns per unit of a split GEMM's blocks: whole tiles of OpenBLAS's kernels, and 64 bytes.
_TILE = 16


def _split_gemm(fn: Callable[..., None], trans_a: bool, trans_b: bool, m: int, n: int, k: int, alpha: float,
                pa: int, lda: int, pb: int, ldb: int, beta: float, pc: int, size: int, held: int) -> None:
    """One (m, n, k) GEMM on pointers as blocks of C's rows (m >= n) or columns, ``held`` threads taking
    the next block when done with one."""
    ta, tb = (_TRANS if trans_a else _NO_TRANS), (_TRANS if trans_b else _NO_TRANS)
    rows = m >= n
    total = m if rows else n
    units = -(-total // _TILE)

    def block(_: int, s: slice) -> None:
        lo, hi = s.start * _TILE, min(total, s.stop * _TILE)
        if rows:  # rows lo:hi of op(a) and of c
            a_at = pa + (lo if trans_a else lo * lda) * size
            fn(_ROW_MAJOR, ta, tb, hi - lo, n, k, alpha, a_at, lda, pb, ldb, beta, pc + lo * n * size, n)
        else:  # columns lo:hi of op(b) and of c
            b_at = pb + (lo * ldb if trans_b else lo) * size
            fn(_ROW_MAJOR, ta, tb, m, hi - lo, k, alpha, pa, lda, b_at, ldb, beta, pc + lo * size, n)

    threads.split_dynamic(block, units, held, min(units, threads.GRAIN * held))


def _rows(a: np.ndarray) -> int | None:
    """The leading dimension (elements between rows) of a 2-d array BLAS reads as is, else None."""
    item = a.itemsize
    if a.ndim != 2 or (a.strides[1] != item and a.shape[1] > 1) or a.strides[0] % item:
        return None
    ld = a.strides[0] // item
    return ld if ld >= max(1, a.shape[1]) else None


def gemm_views(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0) -> None:
    """c = a @ b + beta * c for 2-d arrays whose rows may be strided (column blocks of larger matrices,
    as threads cut them), uncached so threads may call it at once; NumPy when BLAS cannot read them."""
    fn = _CBLAS.get(c.dtype)
    lda, ldb, ldc = _rows(a), _rows(b), _rows(c)
    if fn is None or None in (lda, ldb, ldc) or not a.dtype == b.dtype == c.dtype or c.size == 0:
        if beta == 0.0:
            np.matmul(a, b, out=c)
        else:
            np.multiply(c, beta, out=c)
            c += a @ b
        return
    m, k = a.shape
    fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, c.shape[1], k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, beta,
       c.ctypes.data, ldc)
