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


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 from 0, so finite differences never straddle a kink."""
    return rng.choice([-1, 1], shape) * (np.abs(rng.standard_normal(shape)) + 0.1)


def _away_from(rng: np.random.Generator, shape: tuple[int, ...], kinks: tuple[float, ...]) -> np.ndarray:
    x = rng.standard_normal(shape)
    for k in kinks:
        x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
    return x


def _bn_inputs(shape: tuple[int, ...]):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        c = shape[1]
        return [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(c), rng.standard_normal(c),
                rng.standard_normal(c), rng.random(c) + 0.5]

    return make


def _conv_attrs(k: tuple[int, int], stride: int = 1, pad: tuple[int, ...] = (0, 0, 0, 0), dil: int = 1,
                groups: int = 1) -> dict:
    return {"kernel": k, "stride": (stride, stride), "padding": pad, "dilation": (dil, dil), "groups": groups}


def _distinct(shape: tuple[int, ...]):
    """A permutation of well-separated values: max pooling has a unique maximum per window."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.permutation(np.prod(shape)).reshape(shape) * 0.1]

    return make


CONV_CASES: list[Case] = [
    Case("conv2d", [(2, 3, 5, 6), (4, 3, 3, 3), (4,)], _conv_attrs((3, 3))),
    Case("conv2d", [(1, 4, 7, 5), (6, 2, 3, 2)], _conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2), id="conv2d-s2-pad-g2"),
    Case("conv2d", [(2, 2, 7, 7), (3, 2, 3, 3), (3,)], _conv_attrs((3, 3), 1, (2, 2, 2, 2), 2), id="conv2d-dilated"),
    Case("conv2d_input_grad", [(2, 4, 2, 3), (4, 3, 3, 3), (2, 3, 5, 6)], _conv_attrs((3, 3), 2, (1, 0, 1, 1))),
    Case("conv2d_weight_grad", [(1, 4, 7, 5), (1, 6, 4, 3)], _conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2)),
    Case("max_pool2d", make=_distinct((2, 3, 5, 7)), attrs=_conv_attrs((2, 2), 2)),
    Case("max_pool2d", make=_distinct((1, 2, 7, 6)), attrs=_conv_attrs((3, 3), 2, (1, 1, 1, 1)),
         id="max_pool2d-pad"),
    Case("max_pool2d_grad", make=lambda r: [r.standard_normal((1, 2, 4, 3)), *_distinct((1, 2, 7, 6))(r)],
         attrs=_conv_attrs((3, 3), 2, (1, 1, 1, 1))),
    Case("max_pool2d_pick", make=lambda r: [r.standard_normal((2, 3, 5, 7)), *_distinct((2, 3, 5, 7))(r)],
         attrs=_conv_attrs((2, 2), 2)),
    Case("avg_pool2d", [(2, 3, 5, 7)], _conv_attrs((2, 2), 2)),
    Case("avg_pool2d", [(1, 2, 7, 6)], _conv_attrs((3, 3), 2, (1, 1, 1, 1)), id="avg_pool2d-pad"),
    Case("avg_pool2d_grad", [(1, 2, 4, 3), (1, 2, 7, 6)], _conv_attrs((3, 3), 2, (1, 1, 1, 1))),
]

def _unique_rows(n: int, m: int, cols: int):
    """An (m, cols) index into an axis of size n with no repeats within a column (scatter writes once)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.permutation(n)[:m] for _ in range(cols)], axis=1)

    return make


STRUCTURAL_CASES: list[Case] = [
    Case("expand_dims", [(3, 4)], {"axis": (0, 2)}),
    Case("squeeze", [(3, 1, 4, 1)], {"axis": None}),
    Case("squeeze", [(3, 1, 4, 1)], {"axis": (1,)}, id="squeeze-axis"),
    Case("broadcast_to", [(3, 1)], {"shape": (2, 3, 4)}),
    Case("tril", [(2, 4, 3)], {"k": -1}),
    Case("triu", [(4, 5)], {"k": 1}),
    Case("flip", [(3, 4, 2)], {"axis": (0, 2)}),
    Case("flip", [(3, 4)], {"axis": None}, id="flip-all"),
    Case("roll", [(3, 5)], {"shift": (2, -1), "axis": (1, 0)}),
    Case("repeat", [(3, 4)], {"repeats": 2, "axis": 1}),
    Case("repeat", [(3, 4)], {"repeats": (0, 2, 1), "axis": 0}, id="repeat-counts"),
    Case("tile", [(2, 3)], {"reps": (2, 1, 3)}),
    Case("pad", [(2, 3, 4)], {"pad": (1, 2, 0, 1), "mode": "constant", "value": 0.5}),
    Case("pad", [(2, 3, 4)], {"pad": (2, 3, 1, 2), "mode": "reflect"}, id="pad-reflect"),
    Case("pad", [(2, 3, 4)], {"pad": (3, 1), "mode": "replicate"}, id="pad-replicate"),
    Case("pad", [(2, 3, 4)], {"pad": (4, 2, 3, 0), "mode": "circular"}, id="pad-circular"),
    Case("remap_adjoint", [(2, 8), (2, 4)], {"of": "pad", "pad": (2, 2), "mode": "reflect"}),
    Case("remap_adjoint", [(2, 6, 4), (3, 4)], {"of": "tile", "reps": (2, 2, 1)}, id="remap_adjoint-tile"),
    Case("einsum", [(2, 3, 4), (2, 4, 5)], {"equation": "bij,bjk->bik"}),
    Case("einsum", [(3, 4), (4,)], {"equation": "ij,j->"}, id="einsum-to-scalar"),
    Case("einsum", [(3, 4, 2)], {"equation": "ijk->ki"}, id="einsum-sum-one-operand"),
    Case("einsum", [(3,), (4,), (3, 5)], {"equation": "i,j,ik->jk"}, id="einsum-outer"),
    Case("gather", make=lambda r: [r.standard_normal((4, 3)), r.integers(0, 4, (5, 2))], attrs={"axis": 0}),
    Case("gather", make=lambda r: [r.standard_normal((2, 3, 4)), r.integers(-4, 4, (2, 3, 6))],
         attrs={"axis": 2, "wrap": True}, id="gather-wrap"),
    Case("gather_adjoint", make=lambda r: [r.standard_normal((5, 2)), r.integers(0, 4, (5, 2)),
                                           r.standard_normal((4, 3))], attrs={"axis": 0}),
    Case("scatter", make=lambda r: [r.standard_normal((4, 3)), _unique_rows(4, 2, 3)(r), r.standard_normal((2, 3))],
         attrs={"axis": 0}),
    Case("scatter", make=lambda r: [r.standard_normal((3, 4)), _unique_rows(4, 2, 3)(r).T],
         attrs={"axis": 1, "value": 1.5}, id="scatter-value"),
    Case("scatter_add", make=lambda r: [r.standard_normal((4, 3)), r.integers(0, 4, (5, 3)),
                                        r.standard_normal((5, 3))], attrs={"axis": 0}),
]

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
    Case("reshape_like", [(3, 4), (2, 6)]),
    # elementwise
    Case("where", make=lambda r: [r.random((3, 4)) > 0.5, r.standard_normal((3, 4)), r.standard_normal((4,))]),
    Case("where", make=lambda r: [r.random((2, 1, 4)) > 0.5, r.standard_normal((3, 1)), r.standard_normal(())],
         id="where-broadcast"),
    Case("sqrt", [(4, 3)], positive=True),
    Case("pow", [(3, 4), (3, 4)], positive=True),
    Case("pow", [(2, 3), ()], make=lambda r: [np.abs(r.standard_normal((2, 3))) + 0.5, np.array(2.5)],
         id="pow-scalar-exponent"),
    Case("sign", [(4, 3)]),
    Case("abs", [(5,)], make=lambda r: [_away_from_zero(r, (5,))]),
    Case("clip", make=lambda r: [_away_from(r, (4, 5), (-0.5, 0.7))], attrs={"min": -0.5, "max": 0.7}),
    Case("clip", make=lambda r: [_away_from(r, (4, 5), (0.2,))], attrs={"min": 0.2}, id="clip-min-only"),
    Case("maximum", [(3, 4), (4,)]),
    Case("minimum", [(2, 1, 3), (4, 1)]),
    Case("erf", [(3, 4)]),
    Case("leaky_relu", make=lambda r: [_away_from_zero(r, (4, 5))], attrs={"negative_slope": 0.2}),
    Case("elu", make=lambda r: [_away_from_zero(r, (4, 5))], attrs={"alpha": 1.3}),
    Case("gelu", [(4, 5)]),
    Case("gelu", [(4, 5)], {"approximate": "tanh"}, id="gelu-tanh"),
    Case("silu", [(4, 5)]),
    Case("softplus", [(4, 5)]),
    Case("softplus", [(4, 5)], {"beta": 2.0, "threshold": 1.0}, id="softplus-threshold",
         make=lambda r: [_away_from(r, (4, 5), (0.5,))]),
    # reductions and layout
    Case("max", [(3, 4)], {"axis": 1}),
    Case("max", [(3, 4, 2)], {"axis": (0, 2), "keepdims": True}, id="max-keepdims"),
    Case("max", [(3, 4)], id="max-all"),
    Case("transpose", [(2, 3, 4)], {"axes": (1, 2, 0)}),
    Case("transpose", [(2, 3)], id="transpose-reverse"),
    Case("concat", [(2, 3, 2), (2, 1, 2), (2, 4, 2)], {"axis": 1}),
    Case("concat", [(1, 3), (2, 3)], {"axis": 0}, id="concat-axis0"),
    Case("slice", [(3, 5)], {"axis": 1, "start": 1, "stop": 4}),
    Case("unslice", [(3, 2), (3, 5)], {"axis": 1, "start": 2, "stop": 4}),
    *STRUCTURAL_CASES,
    # convolution and pooling (odd sizes, stride > 1, padding, dilation, groups, batch 1)
    *CONV_CASES,
    # neural-network ops
    Case("log_softmax", [(3, 5)]),
    Case("log_softmax", [(2, 3, 4)], {"axis": 1}, id="log_softmax-axis1"),
    Case("dropout", make=lambda r: [r.standard_normal((4, 6)), np.array(3)], attrs={"p": 0.4, "seed": 7,
                                                                                  "training": True}),
    Case("dropout", make=lambda r: [r.standard_normal((4, 6)), np.array(0)], attrs={"p": 0.4, "training": False},
         id="dropout-inference"),
    Case("batch_norm", make=_bn_inputs((5, 3)), attrs={"training": True}),
    Case("batch_norm", make=_bn_inputs((2, 3, 3, 5)), attrs={"training": True, "eps": 1e-3}, id="batch_norm-2d"),
    Case("batch_norm", make=_bn_inputs((1, 3, 4)), attrs={"training": True}, id="batch_norm-1d-batch1"),
    Case("batch_norm", make=_bn_inputs((2, 3, 3, 5)), attrs={"training": False}, id="batch_norm-inference"),
    Case("layer_norm", [(3, 4, 5), (4, 5), (4, 5)], {"ndim": 2}),
    Case("layer_norm", [(3, 6)], {"ndim": 1}, id="layer_norm-no-affine"),
    Case("embedding", make=lambda r: [r.integers(0, 5, (2, 3)), r.standard_normal((5, 4))]),
    Case("embedding_grad", make=lambda r: [r.integers(0, 5, (2, 3)), r.standard_normal((2, 3, 4)),
                                           r.standard_normal((5, 4))]),
    Case("pick", make=_labels(6, 4)),
    Case("unpick", make=lambda r: [r.standard_normal(6), r.integers(0, 4, 6), r.standard_normal((6, 4))]),
    Case("softmax_cross_entropy", make=_labels(6, 4), kind="loss"),
    Case("mse", [(5, 3), (5, 3)], kind="loss"),
]

#: Ops with no gradient rule, and why.
NO_GRADIENT: dict[str, str] = {
    "scalar": "a constant",
    "softmax_cross_entropy_grad": "first-order gradient helper; second order is not supported",
    "batch_norm_stats": "running-statistics update (writes in place)",
    "batch_norm_grad": "first-order gradient helper; second order is not supported",
    "greater": "comparison (boolean output)",
    "greater_equal": "comparison (boolean output)",
    "less": "comparison (boolean output)",
    "less_equal": "comparison (boolean output)",
    "equal": "comparison (boolean output)",
    "sgd_update": "optimizer update (writes in place)",
    "adam_update": "optimizer update (writes in place)",
    "increment": "step counter update",
    "rmsprop_update": "optimizer update (writes in place)",
    "adagrad_update": "optimizer update (writes in place)",
    "learning_rate": "a function of the integer step counter",
    "one_hot": "integer ids in, constants out",
}

# Fused ops the compiler substitutes (graphdl/ops/fused.py).
NO_GRADIENT["matmul_sgd_update"] = "fused optimizer update (writes in place)"
