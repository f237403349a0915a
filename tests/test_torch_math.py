"""The math ops against PyTorch: forward values and gradients, including the edge cases where the math
has a limit (0, ±inf, ties). One table, one parametrised test; skipped without torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
ops = gd.ops


@dataclass(frozen=True)
class Row:
    id: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any]
    inputs: tuple[Any, ...]


def _a(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float64)


R = np.random.default_rng(0)
X = R.standard_normal((3, 4))
Y = R.standard_normal((3, 4))
POS = np.abs(X) + 0.5
UNIT = R.uniform(-0.9, 0.9, (3, 4))
TIES = _a([1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [0.0, -5.0, 0.0, -5.0])
ZEROS = _a([1.5, 0.0, 2.0, -1.0], [0.0, 0.0, 3.0, 1.0], [2.0, 0.5, -1.0, 4.0])
INTS = np.array([[7, -7, 5, -5], [0, 3, -3, 9]])
DIVS = np.array([[2, 2, -2, -2], [3, -3, 3, 4]])

T = torch
ROWS: list[Row] = [
    # unary math
    *[Row(n, getattr(ops, n), getattr(T, n), (X,)) for n in
      ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "asinh", "expm1", "square", "exp", "sigmoid",
       "floor", "ceil", "trunc", "sign", "abs")],
    *[Row(n, getattr(ops, n), getattr(T, n), (UNIT,)) for n in ("asin", "acos", "atanh")],
    Row("acosh", ops.acosh, T.acosh, (POS + 1.0,)),
    *[Row(n, getattr(ops, n), getattr(T, n), (POS,)) for n in ("log", "log2", "log10", "log1p", "sqrt", "rsqrt",
                                                               "reciprocal")],
    Row("round-halves-to-even", ops.round, T.round, (_a(0.5, 1.5, 2.5, -0.5, -1.5, 0.4),)),
    Row("copysign", ops.copysign, T.copysign, (X, Y)),
    Row("isclose", lambda a, b: ops.isclose(a, b, rtol=0.1, atol=0.5), lambda a, b: T.isclose(a, b, 0.1, 0.5), (X, Y)),
    Row("isnan-isfinite", lambda a: ops.isnan(a) | ops.isfinite(a) & (a > 0),
        lambda a: T.isnan(a) | T.isfinite(a) & (a > 0), (_a(np.nan, np.inf, -np.inf, 1.0, -1.0),)),
    # binary arithmetic, promotion, integer division and remainder
    Row("pow", lambda a, b: a ** b, T.pow, (POS, Y)),
    Row("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, (X,)),
    Row("div-int-int", lambda a, b: a / b, lambda a, b: a / b, (INTS, DIVS)),
    Row("floordiv-int", lambda a, b: a // b, lambda a, b: a // b, (INTS, DIVS)),
    Row("mod-int", lambda a, b: a % b, lambda a, b: a % b, (INTS, DIVS)),
    Row("fmod-int", ops.fmod, T.fmod, (INTS, DIVS)),
    Row("div-trunc-int", lambda a, b: ops.div(a, b, rounding_mode="trunc"),
        lambda a, b: T.div(a, b, rounding_mode="trunc"), (INTS, DIVS)),
    Row("mod-float", lambda a, b: a % b, lambda a, b: a % b, (X * 3, Y)),
    # torch does not differentiate floor_divide; our gradient is 0 (the derivative wherever it exists)
    Row("floordiv-float", lambda a, b: a // b, lambda a, b: a.detach() // b.detach(), (X * 3, Y)),
    Row("int-plus-float-scalar", lambda a: a + 0.5, lambda a: a + 0.5, (INTS,)),
    Row("int-times-float", lambda a, b: a * b, lambda a, b: a * b, (INTS[:, :2], X[:2, :2])),
    Row("compare-logic", lambda a, b: (a < b) ^ ~(a >= 0.2), lambda a, b: (a < b) ^ ~(a >= 0.2), (X, Y)),
    Row("bitwise-int", lambda a, b: (a & b) | ~a, lambda a, b: (a & b) | ~a, (INTS, DIVS)),
    # reductions
    Row("sum-int", lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), (INTS,)),
    Row("prod", lambda a: ops.prod(a, dim=1), lambda a: T.prod(a, dim=1), (X,)),
    Row("var", lambda a: ops.var(a, dim=1), lambda a: T.var(a, dim=1), (X,)),
    Row("var-biased", lambda a: ops.var(a, dim=(0, 1), correction=0), lambda a: T.var(a, dim=(0, 1), correction=0),
        (X,)),
    Row("std-keepdim", lambda a: ops.std(a, dim=0, keepdim=True), lambda a: T.std(a, dim=0, keepdim=True), (X,)),
    Row("std-unbiased-false", lambda a: ops.std(a, unbiased=False), lambda a: T.std(a, unbiased=False), (X,)),
    Row("logsumexp", lambda a: ops.logsumexp(a, dim=1), lambda a: T.logsumexp(a, dim=1), (X,)),
    Row("argmax-argmin", lambda a: ops.argmax(a, dim=1) * 10 + ops.argmin(a, dim=1, keepdim=True),
        lambda a: T.argmax(a, dim=1, keepdim=False) * 10 + T.argmin(a, dim=1, keepdim=True), (X,)),
    Row("any-all", lambda a: ops.any(a > 1.0, dim=1) & ops.all(a > -2.0, dim=1),
        lambda a: T.any(a > 1.0, dim=1) & T.all(a > -2.0, dim=1), (X,)),
    Row("cumsum", lambda a: ops.cumsum(a, dim=1), lambda a: T.cumsum(a, dim=1), (X,)),
    Row("cumprod", lambda a: ops.cumprod(a, dim=0), lambda a: T.cumprod(a, dim=0), (X,)),
    Row("mean-int", lambda a: ops.mean(a.astype("float64")), lambda a: a.double().mean(), (INTS,)),
    # indexing
    Row("getitem-basic", lambda a: a[::-2, None, 1:-1], lambda a: a.flip(0)[::2][:, None, 1:-1], (X,)),
    Row("getitem-gather", lambda a: a[:, [3, 0, 3, -1]], lambda a: a[:, [3, 0, 3, -1]], (X,)),
    Row("getitem-mask", lambda a: a[np.array([True, False, True])], lambda a: a[T.tensor([True, False, True])], (X,)),
    Row("transpose-T", lambda a: a.T @ a, lambda a: a.T @ a, (X,)),
    # edge cases: 0, inf and ties
    Row("pow-base-zero", lambda a, b: a ** b, T.pow, (_a(0.0, 0.0, 0.0, 0.0, 2.0), _a(2.0, 0.5, 0.0, -1.0, 0.0))),
    Row("pow-zero-scalar-exponents", lambda a: a ** 2.0 + a ** 0.5 + a ** 1.0 + a ** 0.0,
        lambda a: a ** 2.0 + a ** 0.5 + a ** 1.0 + a ** 0.0, (_a(0.0, 1.0, 4.0),)),
    Row("abs-sign-at-zero", lambda a: abs(a) + ops.sign(a), lambda a: a.abs() + a.sign(), (_a(0.0, -1.0, 2.0),)),
    Row("sqrt-rsqrt-reciprocal-at-zero", lambda a: ops.sqrt(a) - ops.rsqrt(a + 1) + ops.reciprocal(a + 1),
        lambda a: a.sqrt() - (a + 1).rsqrt() + (a + 1).reciprocal(), (_a(0.0, 1.0, 4.0),)),
    Row("rsqrt-reciprocal-at-zero", lambda a: ops.rsqrt(a) + ops.reciprocal(a), lambda a: a.rsqrt() + a.reciprocal(),
        (_a(0.0, 1.0),)),
    Row("asin-atanh-at-one", lambda a: ops.asin(a) + ops.atanh(a * 0.5), lambda a: a.asin() + (a * 0.5).atanh(),
        (_a(1.0, -1.0, 0.5),)),
    Row("log-log1p-at-edges", lambda a: ops.log(abs(a)) + ops.log1p(-abs(a)),
        lambda a: a.abs().log() + (-a.abs()).log1p(), (_a(0.0, 1.0, 0.5),)),
    Row("saturating-at-inf", lambda a: ops.tanh(a) + ops.sigmoid(a) + ops.atan(a) + ops.relu(a) + ops.exp(-abs(a)),
        lambda a: a.tanh() + a.sigmoid() + a.atan() + a.relu() + (-a.abs()).exp(), (_a(np.inf, -np.inf, 0.0, 2.0),)),
    Row("acosh-at-one", ops.acosh, T.acosh, (_a(1.0, 2.0),)),
    Row("softmax-with-minus-inf", lambda a: ops.softmax(a, axis=1) + ops.log_softmax(a * 0.5, axis=1) * 0.0,
        lambda a: a.softmax(1) + (a * 0.5).log_softmax(1) * 0.0, (_a([0.0, -np.inf, 1.0], [2.0, 3.0, -np.inf]),)),
    Row("div-by-zero", lambda a, b: a / b, lambda a, b: a / b, (_a(1.0, -1.0, 2.0), _a(0.0, 0.0, 4.0))),
    Row("max-ties", lambda a: ops.max(a, dim=1), lambda a: T.amax(a, dim=1), (TIES,)),
    Row("min-ties-all", lambda a: ops.min(a), lambda a: T.amin(a), (TIES,)),
    Row("maximum-ties", ops.maximum, T.maximum, (TIES, TIES.T.reshape(3, 4))),
    Row("clip-at-bounds", lambda a: ops.clip(a, -1.0, 2.0), lambda a: T.clamp(a, -1.0, 2.0), (TIES,)),
    Row("prod-zeros", lambda a: ops.prod(a, dim=1), lambda a: T.prod(a, dim=1), (ZEROS,)),
    Row("prod-zeros-all", ops.prod, T.prod, (ZEROS[:, :2],)),
    Row("cumprod-zeros", lambda a: ops.cumprod(a, dim=1), lambda a: T.cumprod(a, dim=1), (ZEROS,)),
    Row("std-zero-spread", lambda a: ops.std(a, dim=1), lambda a: T.std(a, dim=1), (TIES,)),
    Row("copysign-zero", ops.copysign, T.copysign, (_a(0.0, -0.0, 1.0, -2.0), _a(-1.0, 1.0, -0.0, 3.0))),
    Row("logsumexp-inf", lambda a: ops.logsumexp(a, dim=1), lambda a: T.logsumexp(a, dim=1),
        (_a([-np.inf, -np.inf], [0.0, -np.inf], [1.0, 2.0]),)),
    Row("sum-empty-axis", lambda a: ops.sum(a, dim=1) + ops.mean(a * 0.0 + 1.0, dim=0).sum(),
        lambda a: a.sum(dim=1) + (a * 0.0 + 1.0).mean(dim=0).sum(), (np.zeros((4, 0)),)),
    Row("prod-empty-axis", lambda a: ops.prod(a, dim=0), lambda a: T.prod(a, dim=0), (np.zeros((0, 3)),)),
]


def _ours(row: Row) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with gd.Graph("row", dtype="float64"):
        xs = [gd.placeholder(f"in{k}", a.shape, dtype=str(a.dtype)) for k, a in enumerate(row.inputs)]
        out = row.ours(*xs)
        w = gd.constant(np.linspace(0.5, 1.5, int(np.prod(out.shape))).reshape(out.shape))
        floats = [x for x in xs if x.dtype == "float64"]
        grads = []
        if floats and out.dtype == "float64":
            grads = gd.grad(gd.ops.sum(out * w), floats, unconnected="zero")
    feeds = dict(zip(xs, row.inputs, strict=True))
    results = gd.compile([out, *grads]).run(feeds)
    return results[:1], results[1:]


def _theirs(row: Row) -> tuple[list[np.ndarray], list[np.ndarray]]:
    xs = [torch.tensor(a, requires_grad=a.dtype == np.float64) for a in row.inputs]
    out = row.theirs(*xs)
    grads: list[np.ndarray] = []
    floats = [x for x in xs if x.requires_grad]
    if floats and out.dtype == torch.float64 and not out.requires_grad:
        grads = [np.zeros(x.shape) for x in floats]
    elif floats and out.dtype == torch.float64:
        w = torch.tensor(np.linspace(0.5, 1.5, out.numel()).reshape(tuple(out.shape)))
        got = torch.autograd.grad((out * w).sum(), floats, allow_unused=True)
        grads = [torch.zeros_like(x).numpy() if g is None else g.numpy() for g, x in zip(got, floats, strict=True)]
    return [out.detach().numpy()], grads


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_forward_and_gradient_match_torch(row: Row) -> None:
    (ours,), our_grads = _ours(row)
    (theirs,), their_grads = _theirs(row)
    assert ours.shape == theirs.shape, f"{row.id}: shape {ours.shape} vs torch {theirs.shape}"
    assert np.dtype(ours.dtype).kind == np.dtype(theirs.dtype).kind, f"{row.id}: {ours.dtype} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=f"{row.id}: forward")
    assert len(our_grads) == len(their_grads)
    for k, (g, t) in enumerate(zip(our_grads, their_grads, strict=True)):
        np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12, err_msg=f"{row.id}: gradient of input {k}")


DTYPES = ["bool", "int32", "int64", "float32", "float64"]
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "truediv": lambda a, b: a / b,
    "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b, "pow": lambda a, b: a ** b,
    "lt": lambda a, b: a < b, "ge": lambda a, b: a >= b, "and": lambda a, b: a & b,
    "max": lambda a, b: ops.maximum(a, b) if isinstance(a, gd.Tensor) else torch.maximum(a, b),
}


def _values(dtype: str, rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return np.array([True, False, True, True])
    return rng.integers(1, 4, 4).astype(dtype) * np.array([1, -1, 1, 1], dtype=dtype)


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("left", DTYPES)
@pytest.mark.parametrize("right", DTYPES)
def test_binary_promotion_matches_torch(op: str, left: str, right: str) -> None:
    rng = np.random.default_rng(0)
    a, b = _values(left, rng), np.abs(_values(right, rng)) if right != "bool" else np.ones(4, bool)  # no 0 divisor
    fn = BINARY[op]
    try:
        want = fn(torch.tensor(a), torch.tensor(b))
    except RuntimeError:  # torch refuses (bool - bool, float & float, ...): graphdl must refuse too
        with pytest.raises(gd.GraphDLError), gd.Graph("p"):
            fn(gd.placeholder("a", (4,), dtype=left), gd.placeholder("b", (4,), dtype=right))
        return
    with gd.Graph("p"):
        ta, tb = gd.placeholder("a", (4,), dtype=left), gd.placeholder("b", (4,), dtype=right)
        out = fn(ta, tb)
    expected_dtype = str(want.dtype).removeprefix("torch.")
    assert out.dtype == expected_dtype, f"{left} {op} {right}: {out.dtype} vs torch {expected_dtype}"
    with np.errstate(all="ignore"):
        (got,) = gd.compile([out]).run({ta: a, tb: b})
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)
