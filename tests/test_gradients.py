"""Every op's gradient against central finite differences in float64 (the table is in op_cases)."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.registry import all_ops
from tests.gradcheck import check_gradients
from tests.op_cases import CASES, NO_GRADIENT


def test_every_registered_op_has_a_docstring() -> None:
    missing = sorted(name for name, op in all_ops().items() if not op.doc.strip())
    assert not missing, f"ops without a docstring (OpDef.doc): {missing}"


def test_no_gradient_marks_name_registered_ops() -> None:
    assert not set(NO_GRADIENT) - set(all_ops()), "NO_GRADIENT marks ops that do not exist"
    assert not set(NO_GRADIENT) & {c.op for c in CASES}, "an op is both checked and marked non-differentiable"


def test_every_registered_op_is_checked() -> None:
    covered = {c.op for c in CASES}
    unchecked = sorted(set(all_ops()) - covered - set(NO_GRADIENT))
    assert not unchecked, f"ops without a gradient-check case in tests/op_cases.py: {unchecked}"
    for name in NO_GRADIENT:
        assert all_ops()[name].grad is None or name == "scalar", f"{name} has a gradient rule: check it"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradient_matches_finite_differences(case) -> None:
    check_gradients(case)


def test_fan_out_gradients_accumulate() -> None:
    with gd.Graph("fanout", dtype="float64") as g:
        x = gd.placeholder("x", (3,))
        y = gd.ops.sum(x * x + gd.ops.tanh(x) * x)
    (dx,) = gd.grad(y, [x])
    xv = np.array([0.3, -1.2, 2.0])
    (got,) = gd.compile([dx]).run({x: xv})
    np.testing.assert_allclose(got, 2 * xv + np.tanh(xv) + xv * (1 - np.tanh(xv) ** 2), rtol=1e-12)
    assert g.nodes[dx.name].kind is gd.NodeKind.GRADIENT


def _second_derivative_check(build, x0: np.ndarray, eps: float = 1e-5) -> None:
    """d/dx of (v . grad f(x)) symbolically vs central differences of the symbolic gradient."""
    rng = np.random.default_rng(0)
    with gd.Graph("hess", dtype="float64") as g:
        x = gd.placeholder("x", x0.shape)
        v = gd.constant(rng.standard_normal(x0.shape))
        y = build(x)
    (dx,) = gd.grad(y, [x])
    with g:
        gv = gd.ops.sum(dx * v)
    (ddx,) = gd.grad(gv, [x])
    first = gd.compile([gv])
    (hv,) = gd.compile([ddx]).run({x: x0})
    u = rng.standard_normal(x0.shape)
    numeric = (first.run({x: x0 + eps * u})[0] - first.run({x: x0 - eps * u})[0]) / (2 * eps)
    assert np.isclose(np.sum(hv * u), numeric, rtol=1e-6, atol=1e-9)


def test_gradient_of_gradient_tanh() -> None:
    _second_derivative_check(lambda x: gd.ops.sum(gd.ops.tanh(x) * gd.ops.tanh(x)), np.linspace(-1, 1, 6))


def test_gradient_of_gradient_matmul() -> None:
    w = np.random.default_rng(3).standard_normal((4, 2))

    def build(x):
        h = gd.ops.tanh(x @ gd.constant(w))
        return gd.ops.sum(h @ gd.ops.reshape(gd.ops.sum(h, axis=0), (2, 1)))

    _second_derivative_check(build, np.random.default_rng(4).standard_normal((3, 4)))


def test_second_order_through_op_without_rule_names_it() -> None:
    with gd.Graph("sce", dtype="float64"):
        logits = gd.placeholder("logits", (4, 3))
        labels = gd.placeholder("labels", (4,), dtype="int64")
        loss = gd.losses.SoftmaxCrossEntropy(name="ce")(logits, labels)
    (dl,) = gd.grad(loss, [logits])
    with pytest.raises(gd.GradientError, match=r"softmax_cross_entropy_grad.*no gradient rule"):
        gd.grad(gd.ops.sum(dl * dl), [logits])


def test_unconnected_gradient_is_an_error_unless_zero_asked() -> None:
    with gd.Graph("u", dtype="float64"):
        a = gd.placeholder("a", (2,))
        b = gd.placeholder("b", (2,))
        y = gd.ops.sum(a * a)
    with pytest.raises(gd.GradientError, match=r"does not depend on \['b'\]"):
        gd.grad(y, [a, b])
    (_, db) = gd.grad(y, [a, b], unconnected="zero")
    assert db.shape == (2,)
