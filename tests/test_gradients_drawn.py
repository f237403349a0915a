"""Gradient checks with shapes drawn by hypothesis: convolution and pooling geometry (odd sizes, stride,
padding, dilation, groups, batch 1) and broadcasting elementwise ops."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gradcheck import Case, check_gradients

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_cases(draw: st.DrawFn) -> Case:
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[1]), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[2] - pad[3]), 7))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    shapes = [(n, cin, h, w), (cout, cin // groups, kh, kw)] + ([(cout,)] if bias else [])
    attrs = {"kernel": (kh, kw), "stride": (sh, sw), "padding": pad, "dilation": (dh, dw), "groups": groups}
    return Case("conv2d", shapes, attrs)


@given(conv_cases(), st.integers(0, 2**16))
@SETTINGS
def test_conv2d_gradients_on_drawn_geometry(case: Case, seed: int) -> None:
    check_gradients(case, seed=seed)


@st.composite
def pool_cases(draw: st.DrawFn) -> Case:
    op = draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    h, w = draw(st.integers(max(1, k - 2 * p), 7)), draw(st.integers(max(1, k - 2 * p), 7))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    attrs = {"kernel": (k, k), "stride": (stride, stride), "padding": (p, p, p, p), "dilation": (1, 1)}

    def distinct(rng: np.random.Generator) -> list[np.ndarray]:  # a unique maximum in every window
        return [rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1]

    return Case(op, attrs=attrs, make=distinct)


@given(pool_cases(), st.integers(0, 2**16))
@SETTINGS
def test_pooling_gradients_on_drawn_geometry(case: Case, seed: int) -> None:
    check_gradients(case, seed=seed)


@st.composite
def broadcast_pair(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    full = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))

    def part() -> tuple[int, ...]:
        lead = draw(st.integers(0, len(full)))
        return tuple(1 if draw(st.booleans()) else d for d in full[lead:])

    return part(), part()


@given(st.sampled_from(["add", "sub", "mul", "maximum", "minimum", "pow", "div", "where"]), broadcast_pair(),
       st.integers(0, 2**16))
@SETTINGS
def test_broadcasting_elementwise_gradients(op: str, shapes: tuple, seed: int) -> None:
    a, b = shapes

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        x, y = rng.standard_normal(a), rng.standard_normal(b)
        if op in ("pow", "div"):
            x, y = np.abs(x) + 0.5, np.abs(y) + 0.5
        if op == "where":
            return [rng.random(np.broadcast_shapes(a, b)) > 0.5, x, y]
        return [x, y]

    check_gradients(Case(op, make=make), seed=seed)


UNARY = {"exp": {}, "tanh": {}, "sigmoid": {}, "erf": {}, "gelu": {}, "silu": {}, "softplus": {}, "sqrt": {},
         "log": {}, "abs": {}, "elu": {"alpha": 0.7}, "leaky_relu": {"negative_slope": 0.3},
         "gelu-tanh": {"approximate": "tanh"}, "clip": {"min": -0.5, "max": 0.6}}


@given(st.sampled_from(sorted(UNARY)), st.lists(st.integers(1, 5), min_size=0, max_size=3), st.integers(0, 2**16))
@SETTINGS
def test_unary_elementwise_gradients(name: str, shape: list[int], seed: int) -> None:
    op = name.split("-")[0]

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        x = rng.standard_normal(shape)
        if op in ("sqrt", "log"):
            return [np.abs(x) + 0.5]
        # keep finite differences away from kinks (0 and the clip bounds)
        for kink in (0.0, -0.5, 0.6):
            x = np.where(np.abs(x - kink) < 0.05, x + 0.1, x)
        return [x]

    check_gradients(Case(op, attrs=UNARY[name], make=make), seed=seed)


@given(st.sampled_from(["sum", "mean", "max", "softmax", "log_softmax"]),
       st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
@SETTINGS
def test_reduction_gradients_over_drawn_axes(op: str, shape: list[int], data: st.DataObject) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    attrs = {"axis": axis} if op in ("softmax", "log_softmax") else {
        "axis": axis, "keepdims": data.draw(st.booleans())}
    check_gradients(Case(op, [tuple(shape)], attrs), seed=data.draw(st.integers(0, 2**16)))
