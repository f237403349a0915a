"""The gradient-check table: at least one case per differentiable op in the op table.

``test_gradients.py`` fails if a registered op is neither here nor in NO_GRADIENT, so a new op
cannot escape the check.
"""

from __future__ import annotations

import numpy as np

from tests.gradcheck import Case


def _labels(n: int, k: int):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, k)), rng.integers(0, k, n)]

    return make


CASES: list[Case] = [
    Case("add", [(3, 4), (3, 4)]),
    Case("add", [(3, 4), (4,)], id="add-broadcast-row"),
    Case("add", [(2, 1, 4), (3, 1)], id="add-broadcast-both"),
    Case("sub", [(3, 4), (3, 1)]),
    Case("mul", [(3, 4), (1, 4)]),
    Case("mul", [(5,), ()], id="mul-scalar"),
    Case("div", [(3, 4), (3, 4)], make=lambda r: [r.standard_normal((3, 4)), np.abs(r.standard_normal((3, 4))) + 1]),
    Case("div", [(2, 3), (3,)], make=lambda r: [r.standard_normal((2, 3)), np.abs(r.standard_normal(3)) + 1],
         id="div-broadcast"),
    Case("neg", [(4, 3)]),
    Case("exp", [(4, 3)]),
    Case("log", [(4, 3)], positive=True),
    Case("relu", [(5, 6)], make=lambda r: [r.choice([-1, 1], (5, 6)) * (np.abs(r.standard_normal((5, 6))) + 0.1)]),
    Case("relu_grad", [(5, 6), (5, 6)]),
    Case("sigmoid", [(4, 5)]),
    Case("tanh", [(4, 5)]),
    Case("softmax", [(3, 5)]),
    Case("softmax", [(2, 3, 4)], {"axis": 1}, id="softmax-axis1"),
    Case("matmul", [(3, 4), (4, 5)]),
    Case("matmul", [(4, 3), (4, 5)], {"transpose_a": True}, id="matmul-ta"),
    Case("matmul", [(3, 4), (5, 4)], {"transpose_b": True}, id="matmul-tb"),
    Case("matmul", [(4, 3), (5, 4)], {"transpose_a": True, "transpose_b": True}, id="matmul-tatb"),
    Case("matmul", [(2, 3, 4), (4, 5)], id="matmul-batched"),
    Case("linear", [(4, 3), (3, 5), (5,)]),
    Case("linear", [(4, 3), (3, 5)], id="linear-nobias"),
    Case("linear", [(2, 4, 3), (3, 5), (5,)], id="linear-3d"),
    Case("sum", [(3, 4)]),
    Case("sum", [(3, 4, 2)], {"axis": 1}, id="sum-axis1"),
    Case("sum", [(3, 4, 2)], {"axis": (0, 2), "keepdims": True}, id="sum-keepdims"),
    Case("mean", [(3, 4)]),
    Case("mean", [(3, 4, 2)], {"axis": -1}, id="mean-last"),
    Case("broadcast_like", [(3,), (3, 4)], {"axis": 1}),
    Case("broadcast_like", [(), (3, 4)], {"mean": True}, id="broadcast_like-mean"),
    Case("sum_to", [(3, 4)], {"shape": (1, 4)}),
    Case("sum_to", [(2, 3, 4)], {"shape": (4,)}, id="sum_to-lead"),
    Case("expand_like", [(4,), (3, 4)]),
    Case("reshape", [(3, 4)], {"shape": (2, 6)}),
    Case("reshape", [(3, 4)], {"shape": (-1,)}, id="reshape-flat"),
    Case("softmax_cross_entropy", make=_labels(6, 4), kind="loss"),
    Case("mse", [(5, 3), (5, 3)], kind="loss"),
]

#: Ops with no gradient rule, and why.
NO_GRADIENT: dict[str, str] = {
    "scalar": "a constant",
    "softmax_cross_entropy_grad": "first-order gradient helper; second order is not supported",
    "sgd_update": "optimizer update (writes in place)",
    "adam_update": "optimizer update (writes in place)",
    "increment": "step counter update",
}

# Fused ops the compiler substitutes (graphdl/ops/fused.py).
NO_GRADIENT["matmul_sgd_update"] = "fused optimizer update (writes in place)"
