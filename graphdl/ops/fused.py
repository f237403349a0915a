"""Fused ops the compiler substitutes to save passes over memory (see passes/fuse.py).

``matmul_sgd_update(p, a, b, lr)``: ``p -= lr * op(a) @ op(b)`` as one accumulating GEMM, so a weight gradient is
never stored and the update costs no extra pass over the weight. (Linear's bias is already added
inside its GEMM, and a ReLU after it runs in place, so a Linear+ReLU op would save no pass.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.attrs import Bool
from graphdl.ops.gemm import make_gemm
from graphdl.ops.linalg import _matmul_shape
from graphdl.registry import OpDef, fail, register


def _matmul_update_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    p, a, b, lr = shapes
    if len(p) != 2 or len(a) != 2 or len(b) != 2:
        fail(f"matmul_sgd_update takes 2-d operands, got {p}, {a}, {b}")
    if lr != ():
        fail(f"the learning rate must be a scalar, got {lr}")
    product = _matmul_shape((a, b), attrs)
    if tuple(product) != tuple(p):
        fail(f"the product {product} does not match the parameter {p}")
    return ()


def _matmul_update_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    gemm = make_gemm(dtype, in_shapes[0], beta=1.0,
                     trans_a=attrs.get("transpose_a", False), trans_b=attrs.get("transpose_b", False))

    def matmul_sgd_update(p: np.ndarray, a: np.ndarray, b: np.ndarray, lr: np.ndarray) -> None:
        gemm(a, b, p, -float(lr))

    return matmul_sgd_update


register(OpDef("matmul_sgd_update", _matmul_update_shape, _matmul_update_kernel, dtype=lambda d, a: d[0],
               arity=4, writes=(0,), nondiff=(0, 1, 2, 3),
               doc="p -= lr * op(a) @ op(b): plain SGD fused with the matmul computing its gradient.",
               attr_schema={"transpose_a": Bool(False), "transpose_b": Bool(False)}))
