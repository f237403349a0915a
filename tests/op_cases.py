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


def _uniform(lo: float, hi: float, *shapes: tuple[int, ...]):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.uniform(lo, hi, s) for s in shapes]

    return make


def _off_integer_ratio(shape: tuple[int, ...]):
    """(a, b) with b in [0.5, 2] or [-2, -0.5] and a / b at least 0.2 from an integer: // and % are smooth there."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        b = rng.choice([-1, 1], shape) * rng.uniform(0.5, 2.0, shape)
        return [(rng.integers(-3, 3, shape) + rng.uniform(0.2, 0.8, shape)) * b, b]

    return make


def _with_zeros(shape: tuple[int, ...]):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        x = rng.standard_normal(shape)
        x.reshape(-1)[:: 3] = 0.0
        return [x]

    return make


def _slice_index(*entries: tuple) -> dict:
    return {"index": entries}


S = "slice"


CONV_CASES: list[Case] = [
    Case("conv2d", [(2, 3, 5, 6), (4, 3, 3, 3), (4,)], _conv_attrs((3, 3))),
    Case("conv2d", [(1, 4, 7, 5), (6, 2, 3, 2)], _conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2), id="conv2d-s2-pad-g2"),
    Case("conv2d", [(2, 2, 7, 7), (3, 2, 3, 3), (3,)], _conv_attrs((3, 3), 1, (2, 2, 2, 2), 2), id="conv2d-dilated"),
    Case("conv2d_input_grad", [(2, 4, 2, 3), (4, 3, 3, 3), (2, 3, 5, 6)], _conv_attrs((3, 3), 2, (1, 0, 1, 1))),
    Case("conv2d_weight_grad", [(1, 4, 7, 5), (1, 6, 4, 3)], _conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2)),
    # channel-major (C, N, H, W) images, as the layout pass (passes.layout) makes them
    Case("conv2d", [(3, 2, 5, 6), (4, 3, 3, 3), (4,)], {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True},
         id="conv2d-channel-major-same"),
    Case("conv2d", [(4, 2, 7, 5), (6, 2, 3, 2)], {**_conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2), "channel_major": True},
         id="conv2d-channel-major-s2-g2"),
    Case("conv2d_input_grad", [(4, 2, 5, 6), (4, 3, 3, 3), (3, 2, 5, 6)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True}, id="conv2d_input_grad-channel-major"),
    Case("conv2d_input_grad", [(4, 2, 2, 3), (4, 3, 3, 3), (3, 2, 5, 6)],
         {**_conv_attrs((3, 3), 2, (1, 0, 1, 1)), "channel_major": True}, id="conv2d_input_grad-channel-major-s2"),
    Case("conv2d_weight_grad", [(4, 3, 7, 5), (6, 3, 4, 3)],
         {**_conv_attrs((3, 2), 2, (1, 1, 0, 1), 1, 2), "channel_major": True}, id="conv2d_weight_grad-channel-major"),
    Case("conv2d_weight_grad", [(3, 1, 6, 5), (3, 12, 6, 5)], _conv_attrs((3, 3), 1, (1, 1, 1, 1)),
         id="conv2d_weight_grad-per-sample"),
    Case("conv2d_weight_grad", [(2, 3, 5, 4), (10, 3, 4, 3)], {**_conv_attrs((2, 2), 1, (0, 0, 0, 0), 1, 2),
         "channel_major": True}, id="conv2d_weight_grad-per-sample-channel-major-g2"),
    Case("conv2d_weight_grad", [(3, 2, 5, 6), (4, 2, 5, 6)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True}, id="conv2d_weight_grad-channel-major-same"),
    # blocked outputs, (C, N, bh, bw, H/bh, W/bw), as the pool_blocks layout pass makes them
    Case("conv2d", [(2, 3, 6, 4), (4, 2, 3, 3), (4,)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True, "pool_blocks": (2, 2)},
         id="conv2d-pool-blocks"),
    Case("conv2d", [(1, 2, 7, 6), (3, 1, 2, 2)],
         {**_conv_attrs((2, 2)), "channel_major": True, "pool_blocks": (3, 1)}, id="conv2d-pool-blocks-3x1"),
    Case("conv2d_input_grad", [(4, 2, 2, 2, 3, 2), (4, 3, 3, 3), (3, 2, 6, 4)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True, "pool_blocks": (2, 2)},
         id="conv2d_input_grad-pool-blocks"),
    Case("conv2d_weight_grad", [(3, 2, 6, 4), (4, 2, 2, 2, 3, 2)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True, "pool_blocks": (2, 2)},
         id="conv2d_weight_grad-pool-blocks"),
    Case("conv2d_weight_grad", [(1, 3, 6, 4), (12, 3, 2, 2, 3, 2)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True, "pool_blocks": (2, 2)},
         id="conv2d_weight_grad-pool-blocks-per-sample"),
    # the fused convolution + blocked pooling (graphdl/ops/conv_pool.py); random values tie within eps never
    Case("conv2d_pool_blocks", [(2, 3, 6, 4), (4, 2, 3, 3), (4,)],
         {**_conv_attrs((3, 3), 1, (1, 1, 1, 1)), "channel_major": True, "pool_blocks": (2, 2), "conv": "c"},
         outputs=(0,), id="conv2d_pool_blocks"),
    Case("conv2d_pool_blocks", [(1, 2, 7, 6), (3, 1, 2, 2)],
         {**_conv_attrs((2, 2)), "channel_major": True, "pool_blocks": (3, 1), "conv": "c"}, outputs=(0,),
         id="conv2d_pool_blocks-3x1-no-bias"),
    Case("max_pool_blocks", make=_distinct((2, 3, 2, 2, 3, 4)), attrs={"blocks": (2, 2)}, outputs=(0,)),
    Case("max_pool_blocks", make=_distinct((2, 2, 3, 2, 2, 3)), attrs={"blocks": (3, 2)}, outputs=(0,),
         id="max_pool_blocks-3x2"),
    Case("max_pool_blocks_grad", make=lambda r: [r.standard_normal((2, 3, 3, 4)), r.integers(0, 4, (2, 3, 3, 4))],
         attrs={"blocks": (2, 2)}),
    Case("max_pool_blocks_pick", make=lambda r: [r.standard_normal((2, 3, 2, 2, 3, 4)), r.integers(0, 4, (2, 3, 3, 4))],
         attrs={"blocks": (2, 2)}),
    Case("max_pool2d", make=_distinct((2, 3, 5, 7)), attrs=_conv_attrs((2, 2), 2)),
    Case("max_pool2d", make=_distinct((1, 2, 7, 6)), attrs=_conv_attrs((3, 3), 2, (1, 1, 1, 1)),
         id="max_pool2d-pad"),
    Case("max_pool2d", make=_distinct((2, 3, 5, 7)), attrs={**_conv_attrs((2, 2), 2), "training": True},
         outputs=(0,), id="max_pool2d-training"),
    Case("max_pool2d", make=_distinct((1, 2, 7, 6)), attrs={**_conv_attrs((3, 3), 2, (1, 1, 1, 1)), "training": True},
         outputs=(0,), id="max_pool2d-pad-training"),
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
    Case("flatten", [(2, 3, 4, 2)], {"start_dim": 2}),
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
    # math (graphdl/ops/math.py)
    *[Case(op, [(3, 4)]) for op in ("sin", "cos", "atan", "sinh", "cosh", "asinh", "expm1", "square")],
    Case("tan", make=_uniform(-1.2, 1.2, (3, 4))),
    *[Case(op, make=_uniform(-0.9, 0.9, (3, 4))) for op in ("asin", "acos", "atanh")],
    Case("acosh", make=_uniform(1.2, 3.0, (3, 4))),
    *[Case(op, [(3, 4)], positive=True) for op in ("log2", "log10", "rsqrt")],
    Case("log1p", make=_uniform(-0.8, 2.0, (3, 4))),
    Case("reciprocal", make=lambda r: [_away_from_zero(r, (3, 4))]),
    *[Case(op, make=lambda r: [r.integers(-3, 3, (3, 4)) + r.uniform(0.1, 0.4, (3, 4))])
      for op in ("floor", "ceil", "round", "trunc")],
    Case("copysign", make=lambda r: [_away_from_zero(r, (3, 4)), r.standard_normal((4,))]),
    Case("floor_divide", make=_off_integer_ratio((3, 4))),
    Case("trunc_divide", make=_off_integer_ratio((3, 4))),
    Case("remainder", make=_off_integer_ratio((3, 4))),
    Case("fmod", make=_off_integer_ratio((3, 4))),
    Case("astype", [(3, 4)], {"dtype": "float64"}),
    # indexing (graphdl/ops/indexing.py)
    Case("slice", [(4, 5, 3)], _slice_index((S, None, None, -2), ("int", 1), ("new",), (S, -2, None, 1)),
         id="slice-step-int-new"),
    Case("unslice", [(2, 2), (4, 5)], _slice_index((S, 3, None, -2), (S, 1, None, 2)), id="unslice-steps"),
    Case("index", make=lambda r: [r.standard_normal((3, 5, 2)), np.array([[4, 0], [-1, 4]])], attrs={"axis": 1}),
    Case("index", make=lambda r: [r.standard_normal((2, 3, 4)), np.array([0, 5, 11, 5])], attrs={"axis": 1, "span": 2},
         id="index-span2"),
    Case("index_grad", make=lambda r: [r.standard_normal((3, 4)), np.array([1, 1, 0, 2]), r.standard_normal((3, 3))],
         attrs={"axis": 1}),
    # reductions and scans (graphdl/ops/reduce.py, graphdl/ops/stats.py)
    Case("min", make=_distinct((3, 4)), attrs={"axis": 0}),
    Case("min", [(3, 4, 2)], {"axis": (0, 2), "keepdims": True}, id="min-keepdims"),
    Case("prod", make=_with_zeros((3, 4)), attrs={"axis": 1}),
    Case("prod", [(2, 3, 2)], {"axis": (0, 2), "keepdims": True}, id="prod-keepdims"),
    Case("prod", make=lambda r: [r.uniform(0.5, 1.5, (2, 3))], id="prod-all"),
    Case("var", [(3, 4)], {"axis": 1, "correction": 1.0}),
    Case("var", [(3, 4, 2)], {"axis": (0, 2), "correction": 0.0, "keepdims": True}, id="var-biased"),
    Case("std", [(3, 4)], {"axis": 0, "correction": 1.0}),
    Case("std", [(3, 4)], {"correction": 0.0}, id="std-all"),
    Case("logsumexp", [(3, 4)], {"axis": 1}),
    Case("logsumexp", [(3, 4, 2)], {"axis": (0, 2), "keepdims": True}, id="logsumexp-keepdims"),
    Case("cumsum", [(3, 4)], {"axis": 1}),
    Case("cumsum", [(3, 4)], {"axis": 0, "reverse": True}, id="cumsum-reverse"),
    Case("cumprod", make=_with_zeros((3, 4)), attrs={"axis": 1}),
    Case("cumprod", [(3, 2)], {"axis": 0}, id="cumprod-axis0"),
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
    Case("batch_norm", make=_bn_inputs((5, 3)), attrs={"training": True}, outputs=(0,)),
    Case("batch_norm", make=_bn_inputs((2, 3, 3, 5)), attrs={"training": True, "eps": 1e-3}, outputs=(0,),
         id="batch_norm-2d"),
    Case("batch_norm", make=_bn_inputs((1, 3, 4)), attrs={"training": True}, outputs=(0,), id="batch_norm-1d-batch1"),
    Case("batch_norm", make=_bn_inputs((2, 3, 3, 5)), attrs={"training": False}, outputs=(0,),
         id="batch_norm-inference"),
    Case("layer_norm", [(3, 4, 5), (4, 5), (4, 5)], {"ndim": 2}),
    Case("layer_norm", [(3, 6)], {"ndim": 1}, id="layer_norm-no-affine"),
    Case("group_norm", [(2, 6, 3, 2), (6,), (6,)], {"groups": 3}),
    Case("resize2d", [(2, 2, 3, 4)], {"size": (6, 8)}, id="resize2d-nearest-2x"),
    Case("resize2d", [(1, 2, 5, 4)], {"size": (3, 6), "mode": "nearest-exact"}, id="resize2d-nearest-exact"),
    Case("resize2d", [(2, 1, 3, 4)], {"size": (4, 10), "mode": "bilinear", "scale_h": 1.5, "scale_w": 2.5},
         id="resize2d-bilinear-scale"),
    Case("resize2d", [(1, 2, 4, 3)], {"size": (3, 5), "mode": "bilinear", "align_corners": True},
         id="resize2d-bilinear-corners"),
    Case("resize2d_adjoint", [(2, 1, 4, 7), (2, 1, 3, 3)], {"size": (4, 7), "mode": "bilinear"}),
    Case("group_norm", [(3, 4, 5)], {"groups": 4, "eps": 1e-3}, id="group_norm-instance-no-affine"),
    Case("embedding", make=lambda r: [r.integers(0, 5, (2, 3)), r.standard_normal((5, 4))]),
    Case("embedding_grad", make=lambda r: [r.integers(0, 5, (2, 3)), r.standard_normal((2, 3, 4)),
                                           r.standard_normal((5, 4))]),
    Case("pick", make=_labels(6, 4)),
    Case("unpick", make=lambda r: [r.standard_normal(6), r.integers(0, 4, 6), r.standard_normal((6, 4))]),
    Case("softmax_cross_entropy", make=_labels(6, 4), kind="loss"),
    Case("mse", [(5, 3), (5, 3)], kind="loss"),
    Case("split", [(4, 7)], {"sizes": (2, 1, 4), "axis": 1}),
    Case("attention", [(2, 3, 4), (2, 5, 4), (2, 5, 3)], {"causal": False, "scale": None}),
    Case("attention", [(2, 4, 3), (2, 4, 3), (2, 4, 2)], {"causal": True, "scale": 0.5}, id="attention-causal"),
    Case("attention", make=lambda r: [r.standard_normal((2, 2, 3, 4)), r.standard_normal((2, 2, 5, 4)),
                                      r.standard_normal((2, 2, 5, 3)), r.random((3, 5)) > 0.3],
         attrs={"causal": False, "scale": None}, id="attention-bool-mask"),
    Case("attention", make=lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((2, 5, 4)),
                                      r.standard_normal((2, 5, 3)), r.standard_normal((1, 3, 5))],
         attrs={"causal": False, "scale": None}, id="attention-float-mask"),
    Case("split", [(5, 3, 2)], {"sizes": (3, 2), "axis": -3}, id="split-axis0"),
]

#: Ops with no gradient rule, and why.
NO_GRADIENT: dict[str, str] = {
    "scalar": "a constant",
    "softmax_cross_entropy_grad": "first-order gradient helper; second order is not supported",
    "batch_norm_update": "running-statistics update (writes in place)",
    "batch_norm_backward": "first-order gradient helper; second order is not supported",
    "batch_norm_stats": "format-v1 running-statistics update (writes in place)",
    "batch_norm_grad": "format-v1 first-order gradient helper",
    "greater": "comparison (boolean output)",
    "greater_equal": "comparison (boolean output)",
    "less": "comparison (boolean output)",
    "less_equal": "comparison (boolean output)",
    "equal": "comparison (boolean output)",
    "sgd_update": "optimizer update (writes in place)",
    "adam_update": "optimizer update (writes in place)",
    "increment": "step counter update",
    "allreduce_start": "gradient communication (training-only)",
    "attention_grad": "first-order gradient helper; second order is not supported",
    "allreduce_wait": "gradient communication (training-only)",
    "bucket_slice": "gradient communication (training-only)",
    "rmsprop_update": "optimizer update (writes in place)",
    "adagrad_update": "optimizer update (writes in place)",
    "learning_rate": "a function of the integer step counter",
    "one_hot": "integer ids in, constants out",
}

for _op in ("isnan", "isfinite", "isinf", "isclose", "not_equal", "any", "all"):
    NO_GRADIENT[_op] = "predicate (boolean output)"
for _op in ("logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
            "bitwise_not"):
    NO_GRADIENT[_op] = "logical op (boolean or integer output)"
NO_GRADIENT["argmax"] = NO_GRADIENT["argmin"] = "integer index output"
NO_GRADIENT["prod_grad"] = "first-order gradient helper of prod; second order is not supported"
NO_GRADIENT["cumprod_grad"] = "first-order gradient helper of cumprod; second order is not supported"

# Fused ops the compiler substitutes (graphdl/ops/fused.py).
NO_GRADIENT["matmul_sgd_update"] = "fused optimizer update (writes in place)"


def _attrs_1d(k: int, stride: int = 1, pad: tuple[int, int] = (0, 0), dil: int = 1, groups: int = 1) -> dict:
    return {"kernel": (k,), "stride": (stride,), "padding": pad, "dilation": (dil,), "groups": groups}


CASES += [
    Case("conv1d", [(2, 3, 9), (4, 3, 3), (4,)], _attrs_1d(3)),
    Case("conv1d", [(1, 4, 10), (6, 2, 3)], _attrs_1d(3, 2, (1, 2), 2, 2), id="conv1d-s2-pad-dil-g2"),
    Case("conv1d_input_grad", [(2, 4, 4), (4, 3, 3), (2, 3, 9)], _attrs_1d(3, 2, (1, 0))),
    Case("conv1d_weight_grad", [(1, 4, 10), (1, 6, 5)], _attrs_1d(3, 2, (1, 2), 2, 2)),
    Case("conv_transpose2d", [(2, 3, 4, 5), (3, 2, 3, 3), (2,)], {**_conv_attrs((3, 3), 2, (1, 1, 1, 1)),
                                                                  "output_padding": (1, 0)}),
    Case("conv_transpose2d", [(1, 4, 3, 3), (4, 3, 2, 3)], {**_conv_attrs((2, 3), 2, (0, 0, 1, 1), 2, 2),
                                                            "output_padding": (1, 1)}, id="conv_transpose2d-g2-dil"),
]

CASES += [
    Case("relu6", make=lambda r: [_away_from(r, (4, 5), (0.0, 1.5)) * 4]),
    Case("hardsigmoid", make=lambda r: [_away_from(r, (4, 5), (-1.0, 1.0)) * 3]),
    Case("hardswish", make=lambda r: [_away_from(r, (4, 5), (-1.0, 1.0)) * 3]),
    Case("selu", make=lambda r: [_away_from_zero(r, (4, 5))]),
    Case("celu", make=lambda r: [_away_from_zero(r, (4, 5))], attrs={"alpha": 1.7}),
    Case("mish", [(4, 5)]),
    Case("softsign", [(4, 5)]),
    Case("logsigmoid", [(4, 5)]),
]


def _class_inputs(n: int, k: int, ignore: int | None, weighted: bool):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        labels = rng.integers(0, k, n)
        if ignore is not None:
            labels[::3] = ignore
        return [rng.standard_normal((n, k)), labels, *([rng.random(k) + 0.5] if weighted else [])]

    return make


def _class_grad_inputs(n: int, k: int, ignore: int | None, weighted: bool):
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        lp, labels, *w = _class_inputs(n, k, ignore, weighted)(rng)
        return [rng.standard_normal(n), labels, lp, *w]

    return make


CASES += [
    Case("class_nll", make=_class_inputs(6, 4, None, False)),
    Case("class_nll", make=_class_inputs(7, 3, -100, True), attrs={"ignore_index": -100}, id="class_nll-weight-ignore"),
    Case("class_nll_grad", make=_class_grad_inputs(7, 3, 2, True), attrs={"ignore_index": 2}),
]
NO_GRADIENT["class_weight"] = "per-sample class weights of integer labels (constants)"

# pooling options: ceil_mode (extra bottom/right padding no window starts in) and count_include_pad
CASES += [
    Case("max_pool2d", make=_distinct((1, 2, 7, 8)), attrs={**_conv_attrs((3, 3), 2, (1, 1, 1, 1)), "ceil_mode": True},
         id="max_pool2d-ceil"),
    Case("max_pool2d_grad", make=lambda r: [r.standard_normal((1, 2, 3, 3)), *_distinct((1, 2, 7, 8))(r)],
         attrs={**_conv_attrs((2, 2), 3), "ceil_mode": True}, id="max_pool2d_grad-ceil"),
    Case("avg_pool2d", [(1, 2, 7, 8)], {**_conv_attrs((3, 3), 2, (1, 1, 1, 1)), "ceil_mode": True},
         id="avg_pool2d-ceil"),
    Case("avg_pool2d", [(1, 2, 7, 8)], {**_conv_attrs((3, 3), 2, (1, 1, 1, 1)), "count_include_pad": False},
         id="avg_pool2d-exclude-pad"),
    Case("avg_pool2d_grad", [(1, 2, 3, 3), (1, 2, 7, 8)], {**_conv_attrs((2, 2), 3, (1, 1, 1, 1)), "ceil_mode": True,
                                                           "count_include_pad": False}, id="avg_pool2d_grad-ceil-excl"),
]


def _scan_attrs(reverse: bool) -> dict:
    """A traced body (a tanh RNN step reading a captured weight; y = h * x) as the scan node's attributes."""
    import graphdl as gd

    with gd.Graph("scan_case", dtype="float64"):
        h = gd.placeholder("h", (2, 3))
        xs = gd.placeholder("xs", (4, 2, 3))
        w = gd.placeholder("w", (3, 3))
        out, _ = gd.ops.scan(lambda c, x: (gd.ops.tanh(c @ w + x), c * x), h, xs, reverse=reverse)
    return out.node.attr


CASES += [
    Case("scan", [(2, 3), (4, 2, 3), (3, 3)], _scan_attrs(False), id="scan-rnn"),
    Case("scan", [(2, 3), (4, 2, 3), (3, 3)], _scan_attrs(True), id="scan-rnn-reverse"),
]
