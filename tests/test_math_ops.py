"""Operators, indexing, dtype promotion and zero-size dimensions, forward against NumPy (gradients are in
the op table of op_cases.py; PyTorch comparisons in test_torch_math.py)."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.dtypes import result_dtype


def _run(outputs, feeds):
    return gd.compile(list(outputs)).run(feeds)


@pytest.mark.parametrize(("dtypes", "expected"), [
    (("float32", "int64"), "float32"), (("int32", "int64"), "int64"), (("bool", "int32"), "int32"),
    (("bool", "bool"), "bool"), (("float32", "float64"), "float64"), (("uint8", "int8"), "int16"),
    (("bool", "float64"), "float64"),
])
def test_promotion_follows_pytorch_categories(dtypes, expected) -> None:
    assert result_dtype(*dtypes) == expected
    torch = pytest.importorskip("torch")
    ours = torch.promote_types(*(getattr(torch, d) for d in dtypes))
    assert str(ours).removeprefix("torch.") == expected


def test_python_numbers_are_weak_and_int_division_is_true_division() -> None:
    with gd.Graph("dt"):
        i = gd.placeholder("i", (None,), dtype="int32")
        b = gd.placeholder("b", (None,), dtype="bool")
        x = gd.placeholder("x", (None,))
        outs = [i + 1, i * 2.5, i / 2, i // 2, i % -3, b + 1, x + 1, i ** 2, i.astype("float64") / i, b & (i > 0)]
    assert [o.dtype for o in outs] == ["int32", "float32", "float32", "int32", "int32", "int64", "float32", "int32",
                                       "float64", "bool"]
    iv = np.array([-7, -1, 0, 5], np.int32)
    got = _run(outs, {i: iv, b: np.array([True, False, True, False]), x: np.zeros(4, np.float32)})
    np.testing.assert_array_equal(got[2], iv / 2)
    np.testing.assert_array_equal(got[3], iv // 2)
    np.testing.assert_array_equal(got[4], iv % -3)  # the divisor's sign, as Python and PyTorch
    np.testing.assert_array_equal(got[7], iv ** 2)


def test_equality_is_identity_and_elementwise_equal_is_an_op() -> None:
    with gd.Graph("eq"):
        x = gd.placeholder("x", (3,))
        y = x + 0.0
        assert x == x and x != y and {x: 1}[x] == 1
        e, ne = gd.ops.equal(x, y), gd.ops.not_equal(x, 1.0)
    got = _run([e, ne], {x: np.array([1.0, 2.0, 3.0], np.float32)})
    np.testing.assert_array_equal(got[0], [True] * 3)
    np.testing.assert_array_equal(got[1], [False, True, True])


def test_tensor_methods_match_numpy() -> None:
    xv = np.random.default_rng(0).standard_normal((4, 3, 2))
    with gd.Graph("m", dtype="float64"):
        x = gd.placeholder("x", (None, 3, 2))
        outs = [x.T, x.transpose(1, 0, 2), x.sum(axis=(0, 2)), x.mean(dim=1, keepdim=True), x.max(0), x.min(),
                x.prod(axis=2), x.var(axis=0), x.std(axis=0, correction=0), x.argmax(axis=1), abs(-x), -x ** 2,
                x.reshape(-1, 6), (x > 0).any(axis=2), (x > -5).all()]
    assert outs[0].shape == (2, 3, None)
    want = [xv.T, xv.transpose(1, 0, 2), xv.sum(axis=(0, 2)), xv.mean(axis=1, keepdims=True), xv.max(0), xv.min(),
            xv.prod(axis=2), xv.var(axis=0, ddof=1), xv.std(axis=0), xv.argmax(axis=1), np.abs(xv), -xv ** 2,
            xv.reshape(-1, 6), (xv > 0).any(axis=2), (xv > -5).all()]
    for k, (g, w) in enumerate(zip(_run(outs, {x: xv}), want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=1e-12, err_msg=str(k))


def test_indexing_matches_numpy_on_an_unknown_batch() -> None:
    xv = np.arange(5 * 3 * 4.0).reshape(5, 3, 4)
    keys = [np.s_[1:4], np.s_[::-2], np.s_[-1], np.s_[..., 1:], np.s_[:, None, ::2], np.s_[1, :, -1],
            np.s_[:, [2, 0, -1]], np.s_[[4, 0]], np.s_[..., np.array([True, False, True, True])],
            np.s_[:, 1, [0, 3]], np.s_[-3:, np.array([[True, False, True, True]] * 3)]]
    with gd.Graph("idx", dtype="float64"):
        x = gd.placeholder("x", (None, 3, 4))
        outs = [x[k] for k in keys]
    for k, got in zip(keys, _run(outs, {x: xv}), strict=True):
        np.testing.assert_array_equal(got, xv[k], err_msg=str(k))


def test_index_with_an_integer_tensor_and_its_gradient() -> None:
    with gd.Graph("gather", dtype="float64"):
        x = gd.placeholder("x", (None, 4))
        i = gd.placeholder("i", (None,), dtype="int64")
        y = x[:, i]
        (dx,) = gd.grad(gd.ops.sum(y * y), [x])
    xv, iv = np.arange(8.0).reshape(2, 4), np.array([1, 1, -1])
    got_y, got_dx = _run([y, dx], {x: xv, i: iv})
    np.testing.assert_array_equal(got_y, xv[:, iv])
    want = np.zeros_like(xv)
    np.add.at(want, (slice(None), iv), 2 * xv[:, iv])
    np.testing.assert_array_equal(got_dx, want)


def test_indexing_mistakes_are_graph_errors() -> None:
    with gd.Graph("bad"):
        x = gd.placeholder("x", (None, 3))
        with pytest.raises(gd.ShapeError, match=r"slice at node.*index 3 is out of range for axis 1 of size 3"):
            x[:, 3]
        with pytest.raises(gd.GraphError, match="too many indices"):
            x[0, 0, 0]
        with pytest.raises(gd.GraphError, match="pairs index arrays over axes 0..1 of 'x'.*must be known"):
            x[[0, 1], [1, 2]]  # the batch axis has no size to pair over
        with pytest.raises(gd.GraphError, match="index array 2 of .* holds 1..3, out of range for axis 1"):
            gd.placeholder("z", (2, 3))[[0, 1], [1, 3]]
        with pytest.raises(gd.GraphError, match="2 index arrays that include an index Tensor"):
            gd.placeholder("w", (2, 3))[gd.constant(np.array([0, 1])), [1, 2]]
        with pytest.raises(gd.GraphError, match="2 index arrays that are not side by side"):
            gd.placeholder("v", (2, 3, 4))[[0, 1], :, [1, 2]]
        with pytest.raises(gd.GraphError, match="computed boolean mask.*where"):
            x[x > 0]
        with pytest.raises(gd.GraphError, match="mask of shape \\(2,\\) does not match"):
            x[:, np.array([True, False])]
        with pytest.raises(gd.GraphError, match="cannot iterate"):
            list(x)
        with pytest.raises(gd.GraphError, match="immutable.*where"):
            x[0] = 1.0
        with pytest.raises(gd.GraphError, match="len\\(\\) of 'x'.*unknown"):
            len(x)
        assert len(x[0]) == 3
        y = x[5]
    with pytest.raises(gd.ShapeError, match=rf"slice at node '{y.name}'.*out of range"):
        _run([y], {x: np.zeros((2, 3), np.float32)})
    with gd.Graph("gather"):
        x = gd.placeholder("x", (2, 3))
        i = gd.placeholder("i", (2,), dtype="int64")
        z = x[:, i]
    with pytest.raises(gd.ExecutionError, match=rf"index at node '{z.name}'.*out of range"):
        _run([z], {x: np.zeros((2, 3), np.float32), i: np.array([0, 3])})


def test_zero_size_dimensions() -> None:
    with gd.Graph("empty", dtype="float64"):
        x = gd.placeholder("x", (None, 0))
        w = gd.placeholder("w", (0, 3))
        s, m = gd.ops.sum(x, axis=1), gd.ops.sum(x, axis=0)
        y = x @ w  # a (N, 0) @ (0, 3) product: zeros
        c = gd.ops.cumsum(x, axis=1)
        (dx,) = gd.grad(gd.ops.sum(y) + gd.ops.sum(s * s), [x])
    got = _run([s, m, y, c, dx], {x: np.zeros((4, 0)), w: np.zeros((0, 3))})
    assert [g.shape for g in got] == [(4,), (0,), (4, 3), (4, 0), (4, 0)]
    np.testing.assert_array_equal(got[0], np.zeros(4))
    np.testing.assert_array_equal(got[2], np.zeros((4, 3)))
    with gd.Graph("empty_batch", dtype="float64"):
        x = gd.placeholder("x", (None, 3))
        loss = gd.ops.sum(gd.layers.Linear(3, 2, name="fc")(x))
    (lv,) = _run([loss], {x: np.zeros((0, 3))})
    assert lv == 0.0


def test_var_over_an_unknown_batch_has_the_right_gradient() -> None:
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((5, 3))
    with gd.Graph("var", dtype="float64"):
        x = gd.placeholder("x", (None, 3))
        v = gd.ops.std(x, dim=0) + gd.ops.var(x, dim=0, correction=0)
        (dx,) = gd.grad(gd.ops.sum(v), [x])
    n = len(xv)
    c = xv - xv.mean(0)
    want = c / ((n - 1) * xv.std(0, ddof=1)) + 2 * c / n
    np.testing.assert_allclose(_run([dx], {x: xv})[0], want, rtol=1e-12)


def test_old_single_axis_slice_attributes_still_run() -> None:
    with gd.Graph("old") as g:
        x = gd.placeholder("x", (2, 5))
        y = g.apply("slice", [x], {"axis": 1, "start": 1, "stop": 4})
    np.testing.assert_array_equal(_run([y], {x: np.arange(10.0).reshape(2, 5)})[0], [[1, 2, 3], [6, 7, 8]])


def test_gradients_take_each_inputs_dtype_through_promoted_ops() -> None:
    with gd.Graph("mixed") as g:
        x = gd.placeholder("x", (None, 3))  # float32
        y = gd.placeholder("y", (None, 3), dtype="float64")
        k = gd.placeholder("k", (None, 3), dtype="int64")
        h = gd.layers.Linear(3, 2, name="fc")(x * k)
        z = gd.ops.sum(h) + gd.ops.sum(x * y)
        dx, dw = gd.grad(z, [x, g.tensor("fc.W")])
    assert (z.dtype, dx.dtype, dw.dtype) == ("float64", "float32", "float32")
    rng = np.random.default_rng(0)
    xv, yv = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3))
    kv = rng.integers(-2, 3, (2, 3))
    got_dx, got_dw = _run([dx, dw], {x: xv, y: yv, k: kv})
    w = g.parameters()["fc.W"]
    np.testing.assert_allclose(got_dx, (yv + kv * w.sum(axis=1)).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(got_dw, np.repeat((xv * kv).sum(axis=0)[:, None], 2, axis=1), rtol=1e-6)
    step = gd.compile([z], optimizer=gd.optim.SGD(lr=0.1))
    first = step.run({x: xv, y: yv, k: kv})[0]
    assert step.run({x: xv, y: yv, k: kv})[0] < first


def test_reductions_over_empty_axes_follow_numpy() -> None:
    with gd.Graph("empty_reduce", dtype="float64"):
        x = gd.placeholder("x", (None, 4))
        outs = [gd.ops.sum(x), gd.ops.mean(x, axis=0), gd.ops.prod(x, axis=0), gd.ops.any(x > 0), gd.ops.all(x > 0),
                gd.ops.logsumexp(x, axis=0), gd.ops.cumsum(x, axis=0)]
        m = gd.ops.max(x, axis=0)
    with np.errstate(all="ignore"):
        want = [0.0, np.full(4, np.nan), np.ones(4), False, True, np.full(4, -np.inf), np.zeros((0, 4))]
        for got, w in zip(_run(outs, {x: np.zeros((0, 4))}), want, strict=True):
            np.testing.assert_array_equal(got, w)
    run = gd.compile([m])
    with pytest.raises(gd.ShapeError, match=rf"max at node '{m.name}'.*axis 0 of \(0, 4\), which is empty"):
        run.run({x: np.zeros((0, 4))})
