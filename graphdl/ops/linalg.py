"""Matrix products: matmul with optional transposes (so gradients need no transpose nodes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Bool
from graphdl.ops.common import broadcast
from graphdl.ops.gemm import make_gemm
from graphdl.registry import GradContext, OpDef, fail, register


def _matmul_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    a, b = shapes
    if len(a) < 2 or len(b) < 2:
        fail(f"matmul needs inputs of at least 2 dimensions, got {len(a)}-d and {len(b)}-d",
             "reshape a vector to (1, n) or (n, 1), or use mul and sum")
    m, k = (a[-1], a[-2]) if attrs.get("transpose_a") else (a[-2], a[-1])
    k2, n = (b[-1], b[-2]) if attrs.get("transpose_b") else (b[-2], b[-1])
    if k is not None and k2 is not None and k != k2:
        fail(f"inner dimensions {k} and {k2} differ",
             f"make the left operand's last dimension {k2}, or the right operand's first {k}")
    return (*broadcast(a[:-2], b[:-2]), m, n)


def _matmul_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    ta, tb = attrs.get("transpose_a", False), attrs.get("transpose_b", False)
    if len(in_shapes[0]) == len(in_shapes[1]) == 2:  # BLAS directly: no temporaries, one thread pool
        return make_gemm(dtype, out_shape, trans_a=ta, trans_b=tb)
    if len(in_shapes[1]) == 2 and not ta:  # (..., M, K) @ W: one GEMM over all leading rows
        rows = math.prod(out_shape[:-1])
        gemm = make_gemm(dtype, (rows, out_shape[-1]), trans_b=tb)
        flat: list = [None, None, None, None]  # bound arrays never move: reshape them once

        def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
            if a is not flat[0] or out is not flat[1]:
                flat[:] = [a, out, a.reshape(rows, a.shape[-1]), out.reshape(rows, out.shape[-1])]
            gemm(flat[2], b, flat[3])

        return matmul_rows
    if not ta and not tb:
        return np.matmul

    def matmul_t(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        np.matmul(a.swapaxes(-1, -2) if ta else a, b.swapaxes(-1, -2) if tb else b, out=out)

    return matmul_t


def _matmul_grad(c: GradContext) -> list:
    # C = op(A) @ op(B), op = transpose when flagged; every gradient is again one matmul.
    a, b = c.inputs
    ta, tb = c.attrs.get("transpose_a", False), c.attrs.get("transpose_b", False)
    g = c.gout
    if b.ndim == 2 and a.ndim > 2 and not ta:  # a weight applied to every row: its gradient is one GEMM
        a2 = c.apply("reshape", a, shape=(-1, a.shape[-1]))
        g2 = c.apply("reshape", g, shape=(-1, g.shape[-1]))
        db = c.apply("matmul", g2, a2, transpose_a=True) if tb else c.apply("matmul", a2, g2, transpose_a=True)
        return [c.apply("matmul", g, b, transpose_b=not tb), db]
    da = (c.apply("matmul", b, g, transpose_a=tb, transpose_b=True) if ta
          else c.apply("matmul", g, b, transpose_b=not tb))
    db = (c.apply("matmul", g, a, transpose_a=True, transpose_b=ta) if tb
          else c.apply("matmul", a, g, transpose_a=not ta))
    return [da, db]


register(OpDef("matmul", _matmul_shape, _matmul_kernel, arity=2, grad=_matmul_grad,
               label_attrs=("transpose_a", "transpose_b"),
               attr_schema={"transpose_a": Bool(False), "transpose_b": Bool(False)},
               doc="a @ b (NumPy matmul: batched over leading dims), either operand transposed in its last two dims."))
