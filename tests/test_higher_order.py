"""Gradients of gradients: Hessian-vector products against central differences of the gradient.

Every elementwise op, matmul, Linear, the activations (and conv2d, pooling, layer_norm) have a
second-order rule; ops without one (batch_norm_backward, softmax_cross_entropy_grad) are named in a GradientError.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS
from graphdl import ops

Build = Callable[[gd.Tensor], gd.Tensor]


def hessian_vector_check(build: Build, x0: np.ndarray, eps: float = 1e-5) -> None:
    """d/dx (v . grad f(x)) symbolically vs central differences of the symbolic gradient along u."""
    rng = np.random.default_rng(0)
    with gd.Graph("hess", dtype="float64", seed=0) as g:
        x = gd.placeholder("x", x0.shape)
        v = gd.constant(rng.standard_normal(x0.shape))
        y = ops.sum(build(x) * gd.constant(rng.standard_normal(build_shape(build, x0))))
    (dx,) = gd.grad(y, [x])
    with g:
        gv = ops.sum(dx * v)
    (ddx,) = gd.grad(gv, [x])
    first = gd.compile([gv])
    (hv,) = gd.compile([ddx]).run({x: x0})
    u = rng.standard_normal(x0.shape)
    numeric = (first.run({x: x0 + eps * u})[0] - first.run({x: x0 - eps * u})[0]) / (2 * eps)
    assert np.isclose(np.sum(hv * u), numeric, rtol=1e-6, atol=1e-8), (np.sum(hv * u), numeric)


def build_shape(build: Build, x0: np.ndarray) -> tuple[int, ...]:
    with gd.Graph("shape", dtype="float64", seed=0):
        return tuple(build(gd.placeholder("x", x0.shape)).shape)


def _away(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    r = np.random.default_rng(seed)
    return r.choice([-1, 1], shape) * (np.abs(r.standard_normal(shape)) + 0.2)


X = np.random.default_rng(7).standard_normal((3, 4))
CASES: list[tuple[str, Build, np.ndarray]] = [
    ("exp", ops.exp, X),
    ("log", ops.log, np.abs(X) + 0.5),
    ("sqrt", ops.sqrt, np.abs(X) + 0.5),
    ("pow", lambda x: ops.pow(x, 3.0), X),
    ("pow-tensor-exponent", lambda x: ops.pow(ops.abs(x) + 1.0, ops.tanh(x)), X),
    ("div", lambda x: ops.tanh(x) / (x * x + 1.0), X),
    ("mul-broadcast", lambda x: x * ops.sum(x, axis=0, keepdims=True), X),
    ("abs", lambda x: ops.abs(x) * x, _away((3, 4))),
    ("clip", lambda x: ops.clip(x, -0.5, 0.5) * x, _away((3, 4))),
    ("maximum", lambda x: ops.maximum(x * x, ops.exp(x)), X),
    ("minimum", lambda x: ops.minimum(x * x, ops.tanh(x)), X),
    ("where", lambda x: ops.where(ops.greater(x, 0.0), x * x, ops.exp(x)), _away((3, 4))),
    ("max", lambda x: ops.max(x * x, axis=1), X),
    ("transpose", lambda x: ops.transpose(x) @ ops.tanh(x), X),
    ("concat", lambda x: ops.concat([x * x, ops.exp(x)], axis=1), X),
    ("erf", ops.erf, X),
    ("sigmoid", ops.sigmoid, X),
    ("tanh", ops.tanh, X),
    ("relu", lambda x: ops.relu(x) * x, _away((3, 4))),
    ("leaky_relu", lambda x: ops.leaky_relu(x, 0.1) * x, _away((3, 4))),
    ("elu", lambda x: ops.elu(x, 1.2), _away((3, 4))),
    ("gelu", ops.gelu, X),
    ("gelu-tanh", lambda x: ops.gelu(x, "tanh"), X),
    ("silu", ops.silu, X),
    ("softplus", ops.softplus, X),
    ("softmax", ops.softmax, X),
    ("log_softmax", ops.log_softmax, X),
    ("matmul", lambda x: ops.tanh(x) @ ops.transpose(x), X),
    ("linear", lambda x: L.Linear(4, 3)(ops.tanh(L.Linear(4, 4)(x))), X),
    ("conv2d", lambda x: ops.tanh(L.Conv2D(2, 3, 3, stride=2, padding=1)(x)),
     np.random.default_rng(3).standard_normal((2, 2, 5, 5))),
    ("layer_norm", lambda x: L.LayerNorm(4)(x), X),
    ("avg_pool2d", lambda x: ops.tanh(L.AvgPool2D(2)(x * x)), np.random.default_rng(3).standard_normal((1, 2, 4, 4))),
    ("max_pool2d", lambda x: ops.tanh(L.MaxPool2D(3, stride=2, padding=1)(x * x)),
     np.random.default_rng(3).permutation(50).reshape(1, 2, 5, 5) * 0.1 + 0.05),
]


@pytest.mark.parametrize(("build", "x0"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_second_order(build: Build, x0: np.ndarray) -> None:
    hessian_vector_check(build, x0)


def _bn_objective(x: gd.Tensor) -> gd.Tensor:
    return ops.sum(ops.tanh(L.BatchNorm2D(2)(x)))


def _ce_objective(x: gd.Tensor) -> gd.Tensor:
    labels = gd.constant(np.array([0, 2]), name="labels")
    return LS.SoftmaxCrossEntropy()(L.Linear(32, 3)(L.Flatten()(x)), labels)


@pytest.mark.parametrize(("op", "objective"), [("batch_norm_backward", _bn_objective),
                                               ("softmax_cross_entropy_grad", _ce_objective)])
def test_second_order_without_rule_names_the_op(op: str, objective: Build) -> None:
    with gd.Graph("no_rule", dtype="float64"):
        x = gd.placeholder("x", (2, 2, 4, 4))
        y = objective(x)
    (dx,) = gd.grad(y, [x])
    with pytest.raises(gd.GradientError, match=rf"op '{op}' at node .* has no gradient rule"):
        gd.grad(ops.sum(dx * dx), [x])
