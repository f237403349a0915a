"""gd.ops.scan: forward against NumPy loops, gradients against finite differences, variable lengths,
nesting, effects, and the sub-graph's round trip through save/load, the text form and the SVG."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import GraphError, ShapeError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True, scope="module", params=["copies", "views"])
def _slices(request: pytest.FixtureRequest):
    """Every test twice: with the small slices of these tests copied (the default), and with every slice
    and carry re-pointed instead (graphdl/ops/scan_loop.py), as large ones are."""
    from graphdl.ops import scan_loop

    with pytest.MonkeyPatch.context() as mp:
        if request.param == "views":
            mp.setattr(scan_loop, "MIN_VIEW_BYTES", 0)
        yield


def _numeric_grad(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every entry of ``a`` (changed in place, restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        plus = f()
        a[i] = old - eps
        minus = f()
        a[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return g


# -- forward ------------------------------------------------------------------------------------
def test_cumsum_matches_numpy() -> None:
    with gd.Graph("cumsum", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        init = gd.placeholder("init", (3,))
        total, ys = gd.ops.scan(lambda c, x: (c + x, c + x), init, xs)
    exe = gd.compile([total, ys])
    x = RNG.standard_normal((6, 3))
    got_total, got_ys = exe.run({"xs": x, "init": np.zeros(3)})
    np.testing.assert_allclose(got_ys, np.cumsum(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(got_total, x.sum(0), rtol=1e-12)


def _rnn_reference(h: np.ndarray, xs: np.ndarray, W: np.ndarray, U: np.ndarray, reverse: bool = False):
    ys = np.zeros((len(xs), *h.shape))
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for t in order:
        h = np.tanh(h @ W + xs[t] @ U)
        ys[t] = h
    return h, ys


@pytest.mark.parametrize("reverse", [False, True])
def test_linear_rnn_matches_numpy_loop(reverse: bool) -> None:
    W0, U0 = RNG.standard_normal((4, 4)) * 0.5, RNG.standard_normal((3, 4))
    with gd.Graph("rnn", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        h0 = gd.placeholder("h0", (2, 4))
        W, U = g.stored("W", W0), g.stored("U", U0)

        def step(h: gd.Tensor, x: gd.Tensor) -> tuple[gd.Tensor, gd.Tensor]:
            h = gd.ops.tanh(h @ W + x @ U)
            return h, h

        h, ys = gd.ops.scan(step, h0, xs, reverse=reverse)
    x, hv = RNG.standard_normal((5, 2, 3)), RNG.standard_normal((2, 4))
    got_h, got_ys = gd.compile([h, ys]).run({"xs": x, "h0": hv})
    want_h, want_ys = _rnn_reference(hv, x, W0, U0, reverse)
    np.testing.assert_allclose(got_h, want_h, rtol=1e-12)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)


def test_tuple_carries_tuple_xs_and_tuple_ys() -> None:
    with gd.Graph("tuples", dtype="float64"):
        a = gd.placeholder("a", (None,))
        b = gd.placeholder("b", (None,))

        def step(c, x):
            s, p = c
            xa, xb = x
            return (s + xa, p * xb), (s, p + s)

        (s, p), (y1, y2) = gd.ops.scan(step, (gd.constant(np.array(0.0)), gd.constant(np.array(1.0))), (a, b))
    av, bv = RNG.standard_normal(5), RNG.standard_normal(5)
    got = gd.compile([s, p, y1, y2]).run({"a": av, "b": bv})
    ps = np.concatenate([[1.0], np.cumprod(bv)])
    ss = np.concatenate([[0.0], np.cumsum(av)])
    np.testing.assert_allclose(got[0], av.sum())
    np.testing.assert_allclose(got[1], bv.prod())
    np.testing.assert_allclose(got[2], ss[:5])
    np.testing.assert_allclose(got[3], ps[:5] + ss[:5])


def test_y_none_and_xs_none_with_length() -> None:
    with gd.Graph("count", dtype="float64"):
        c0 = gd.placeholder("c0", (2,))
        final, ys = gd.ops.scan(lambda c, x: (c * 2.0 + 1.0, None), c0, None, length=4)
        assert ys is None
    (got,) = gd.compile([final]).run({"c0": np.array([0.0, 1.0])})
    want = np.array([0.0, 1.0])
    for _ in range(4):
        want = want * 2 + 1
    np.testing.assert_allclose(got, want)


def test_xs_none_body_receives_none_and_ys_stack_length() -> None:
    seen = []
    with gd.Graph("gen", dtype="float64"):
        c0 = gd.placeholder("c0", (3,))

        def step(c, x):
            seen.append(x)
            return c + 1.0, c * c

        _, ys = gd.ops.scan(step, c0, length=3)
    assert seen == [None]
    assert ys.shape == (3, 3)
    (got,) = gd.compile([ys]).run({"c0": np.zeros(3)})
    np.testing.assert_allclose(got, np.array([[0.0] * 3, [1.0] * 3, [4.0] * 3]))


def test_variable_length_same_compiled_model() -> None:
    W0 = RNG.standard_normal((4, 4)) * 0.5
    U0 = RNG.standard_normal((3, 4))
    with gd.Graph("var", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, None, 3))  # time and batch unknown until run time
        h0 = gd.placeholder("h0", (None, 4))
        W, U = g.stored("W", W0), g.stored("U", U0)
        h, ys = gd.ops.scan(lambda h, x: (gd.ops.tanh(h @ W + x @ U),) * 2, h0, xs)
    assert ys.shape == (None, None, 4)
    exe = gd.compile([h, ys])
    for T, B in ((3, 2), (7, 5), (3, 2)):
        x, hv = RNG.standard_normal((T, B, 3)), RNG.standard_normal((B, 4))
        got_h, got_ys = exe.run({"xs": x, "h0": hv})
        want_h, want_ys = _rnn_reference(hv, x, W0, U0)
        assert got_ys.shape == (T, B, 4)
        np.testing.assert_allclose(got_h, want_h, rtol=1e-12)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)


def test_layers_in_the_body_create_ordinary_parameters_and_invariants_are_hoisted() -> None:
    with gd.Graph("layer", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        h0 = gd.placeholder("h0", (2, 3))
        W = g.stored("W", RNG.standard_normal((3, 3)))

        def step(h, x):
            cell = gd.layers.Linear(3, 3, name="cell")
            h = gd.ops.tanh(cell(x) + h @ W.T)  # W.T reads only an outer value: built outside the loop
            return h, h

        h, _ = gd.ops.scan(step, h0, xs)
    assert g.nodes["cell.W"].kind is gd.NodeKind.PARAM and g.nodes["cell.b"].kind is gd.NodeKind.PARAM
    body = h.node.attr["body"]
    assert "transpose" not in {n.op for n in body.nodes}
    assert any(n.op == "transpose" for n in g.nodes.values())
    x, hv = RNG.standard_normal((4, 2, 3)), RNG.standard_normal((2, 3))
    (got,) = gd.compile([h]).run({"xs": x, "h0": hv})
    Wc, bc, Wv = g.values["cell.W"], g.values["cell.b"], g.values["W"]
    want = hv
    for t in range(4):
        want = np.tanh(x[t] @ Wc + bc + want @ Wv.T)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# -- gradients ----------------------------------------------------------------------------------
def _rnn_loss_graph(reverse: bool = False):
    W0, U0 = RNG.standard_normal((4, 4)) * 0.5, RNG.standard_normal((3, 4))
    with gd.Graph("rnn_grad", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        h0 = gd.placeholder("h0", (2, 4))
        W, U = g.stored("W", W0), g.stored("U", U0)

        def step(c, x):
            h, s = c
            h = gd.ops.tanh(h @ W + x @ U)
            return (h, s + h * h), h * s

        (h, s), ys = gd.ops.scan(step, (h0, h0 * 0.5), xs, reverse=reverse)
        loss = gd.ops.sum(h * h) + gd.ops.sum(ys * ys * ys) + gd.ops.sum(s)
    return g, xs, h0, W, U, loss


def _rnn_loss_numpy(W, U, h0, xs, reverse=False) -> float:
    h, s, total = h0, h0 * 0.5, 0.0
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for t in order:
        h = np.tanh(h @ W + xs[t] @ U)
        total += ((h * s) ** 3).sum()
        s = s + h * h
    return float(total + (h * h).sum() + s.sum())


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_finite_differences(reverse: bool) -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph(reverse)
    grads = gd.grad(loss, [W, U, h0, xs])
    exe = gd.compile([loss, *grads])
    x, hv = RNG.standard_normal((4, 2, 3)), RNG.standard_normal((2, 4))
    value, *got = exe.run({"xs": x, "h0": hv})
    Wv, Uv = g.values["W"].copy(), g.values["U"].copy()

    def f() -> float:
        return _rnn_loss_numpy(Wv, Uv, hv, x, reverse)

    assert value == pytest.approx(f(), rel=1e-12)
    for got_g, a in zip(got, (Wv, Uv, hv, x), strict=True):
        np.testing.assert_allclose(got_g, _numeric_grad(f, a), rtol=1e-6, atol=1e-8)


def test_gradient_is_a_reverse_scan_and_training_runs_the_loop_once() -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    (dW,) = gd.grad(loss, [W])
    scans = [n for n in g.nodes.values() if n.op == "scan"]
    assert any(n.kind is gd.NodeKind.GRADIENT and n.attr["reverse"] for n in scans)
    train = gd.compile([loss], gd.optim.SGD(0.01))
    forward = [n for n in train.ir.nodes if n.op == "scan" and not n.attr["reverse"]]
    backward = [n for n in train.ir.nodes if n.op == "scan" and n.attr["reverse"]]
    infer = gd.compile([loss])
    (only,) = [n for n in infer.ir.nodes if n.op == "scan"]
    assert len(only.shapes) == 3, "an inference plan stores no per-step residuals"
    assert len(forward) == 1 and len(forward[0].shapes) > 3, "the training forward runs once, keeping residuals"
    assert len(backward) == 1
    assert "tanh" not in {n.op for n in backward[0].attr["body"].nodes}, \
        "the reverse body reads the forward's residuals instead of recomputing them"
    x, hv = RNG.standard_normal((4, 2, 3)), RNG.standard_normal((2, 4))
    before = infer.run({"xs": x, "h0": hv})[0]
    for _ in range(5):
        train.run({"xs": x, "h0": hv})
    assert infer.run({"xs": x, "h0": hv})[0] < before


def test_inference_plans_made_from_a_training_model_store_no_residuals() -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    train = gd.compile([loss], gd.optim.SGD(0.01))
    (forward,) = [n for n in train.ir.nodes if n.op == "scan" and not n.attr["reverse"]]
    assert len(forward.shapes) > 3
    infer = train.inference([loss])
    (only,) = [n for n in infer.ir.nodes if n.op == "scan"]
    assert len(only.shapes) == 3 and len(only.attr["body"].outputs) == 3
    feeds = {"xs": RNG.standard_normal((4, 2, 3)), "h0": RNG.standard_normal((2, 4))}
    Wv, Uv = g.values["W"], g.values["U"]
    np.testing.assert_allclose(infer.run(feeds)[0], _rnn_loss_numpy(Wv, Uv, feeds["h0"], feeds["xs"]), rtol=1e-12)


def test_unread_ys_are_not_stored_and_remat_keeps_gradients_exact() -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    with g:
        final = gd.ops.scan(lambda c, x: (c + x, c * x), h0 * 0.0 + 1.0, xs @ U)[0]
    (only,) = [n for n in gd.compile([final]).ir.nodes if n.op == "scan"]
    assert len(only.shapes) == 1, "the ys nothing reads are dropped"
    feeds = {"xs": RNG.standard_normal((4, 2, 3)), "h0": RNG.standard_normal((2, 4))}
    plain = gd.compile([loss, *gd.grad(loss, [W, U])])
    remat = gd.compile([loss, *gd.grad(loss, [W, U])], remat=1)
    for a, b in zip(plain.run(feeds), remat.run(feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_remat_stores_only_carries_and_recomputes_steps() -> None:
    x, hv = RNG.standard_normal((6, 2, 3)), RNG.standard_normal((2, 4))
    results, plans = [], []
    for remat in (False, True):
        W0, U0 = np.full((4, 4), 0.1) + np.eye(4) * 0.3, np.linspace(-1, 1, 12).reshape(3, 4)
        with gd.Graph("remat", dtype="float64") as g:
            xs = gd.placeholder("xs", (None, 2, 3))
            h0 = gd.placeholder("h0", (2, 4))
            W, U = g.stored("W", W0), g.stored("U", U0)

            def step(h, x, W=W, U=U):
                h = gd.ops.tanh(gd.ops.sigmoid(h @ W) * 2.0 + x @ U)
                return h, h

            h, ys = gd.ops.scan(step, h0, xs, remat=remat)
            loss = gd.ops.sum(ys * ys) + gd.ops.sum(h)
        grads = gd.grad(loss, [W, U, h0, xs])
        results.append(gd.compile([loss, *grads]).run({"xs": x, "h0": hv}))
        plans.append(gd.compile([loss], gd.optim.SGD(0.1)))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    stored, remat = (next(n for n in p.ir.nodes if n.op == "scan" and not n.attr["reverse"]) for p in plans)
    assert len(remat.shapes) < len(stored.shapes), "remat keeps fewer per-step values"
    (back,) = [n for n in plans[1].ir.nodes if n.op == "scan" and n.attr["reverse"]]
    assert {"tanh", "sigmoid"} <= {n.op for n in back.attr["body"].nodes}, "the reverse body recomputes the step"


def test_training_plan_arena_grows_with_residuals_but_inference_does_not() -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    infer, train = gd.compile([loss]), gd.compile([loss], gd.optim.SGD(0.01))

    def arena(exe, T: int) -> int:
        from passes import specialize

        return specialize(exe.ir, {"xs": (T, 2, 3), "h0": (2, 4)}).arena_bytes

    # Training also keeps residuals of every step: at least 2 x 56 more steps of (2, 4) float64.
    history = 2 * 56 * 2 * 4 * 8
    assert (arena(train, 64) - arena(train, 8)) - (arena(infer, 64) - arena(infer, 8)) >= history


def test_second_derivative_through_scan() -> None:
    with gd.Graph("hess", dtype="float64"):
        xs = gd.placeholder("xs", (3, 2))
        w = gd.placeholder("w", (2,))
        h, _ = gd.ops.scan(lambda c, x: (gd.ops.sin(c * w + x), None), gd.constant(np.array([0.1, 0.2])), xs)
        loss = gd.ops.sum(h * h)
    (dw,) = gd.grad(loss, [w])
    with dw.graph:
        gv = gd.ops.sum(dw * gd.constant(np.array([0.3, -0.7]), name="v"))
    (ddw,) = gd.grad(gv, [w])
    x, wv = RNG.standard_normal((3, 2)), np.array([0.8, -0.4])
    (hv,) = gd.compile([ddw]).run({"xs": x, "w": wv})
    first = gd.compile([gv])
    numeric = np.zeros(2)
    for i in range(2):
        e = np.zeros(2)
        e[i] = 1e-5
        numeric[i] = (first.run({"xs": x, "w": wv + e})[0] - first.run({"xs": x, "w": wv - e})[0]) / 2e-5
    np.testing.assert_allclose(hv, numeric, rtol=1e-6, atol=1e-9)


def test_scan_inside_scan_forward_and_gradient() -> None:
    W0 = RNG.standard_normal((3, 3)) * 0.4
    with gd.Graph("nested", dtype="float64") as g:
        xs = gd.placeholder("xs", (4, 5, 3))  # 4 outer steps of 5 inner steps
        h0 = gd.placeholder("h0", (3,))
        W = g.stored("W", W0)

        def inner(h, x):
            h = gd.ops.tanh(h + x * W.sum(0))
            return h, h

        def outer(h, seq):
            h_in, ys = gd.ops.scan(inner, h, seq)
            return h_in * 0.5, gd.ops.sum(ys, axis=0)

        h, ys = gd.ops.scan(outer, h0, xs)
        loss = gd.ops.sum(h * h) + gd.ops.sum(ys * ys)
    grads = gd.grad(loss, [W, h0, xs])
    exe = gd.compile([loss, *grads])
    x, hv = RNG.standard_normal((4, 5, 3)), RNG.standard_normal(3)
    Wv = g.values["W"].copy()

    def f() -> float:
        h, total = hv, 0.0
        for t in range(4):
            acc = np.zeros(3)
            for u in range(5):
                h = np.tanh(h + x[t, u] * Wv.sum(0))
                acc += h
            h = h * 0.5
            total += (acc * acc).sum()
        return float(total + (h * h).sum())

    value, *got = exe.run({"xs": x, "h0": hv})
    assert value == pytest.approx(f(), rel=1e-12)
    for got_g, a in zip(got, (Wv, hv, x), strict=True):
        np.testing.assert_allclose(got_g, _numeric_grad(f, a), rtol=1e-6, atol=1e-8)


# -- the sub-graph as data: save/load, text, SVG ------------------------------------------------
def test_save_load_round_trip_gives_identical_outputs_and_gradients(tmp_path) -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    grads = gd.grad(loss, [W, U, h0])
    exe = gd.compile([loss, *grads])
    exe.save(str(tmp_path / "m.gdl"))
    back = gd.load(str(tmp_path / "m.gdl"))
    from graphdl.serialize import graph_to_json

    assert graph_to_json(back.ir) == graph_to_json(exe.ir)  # bodies included, defaults written out
    feeds = {"xs": RNG.standard_normal((6, 2, 3)), "h0": RNG.standard_normal((2, 4))}
    for a, b in zip(exe.run(feeds), back.run(feeds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_load_training_model_with_nested_scan(tmp_path) -> None:
    with gd.Graph("nested_io", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        W = g.stored("W", RNG.standard_normal((3,)))

        def outer(h, seq):
            h2, _ = gd.ops.scan(lambda c, x: (gd.ops.tanh(c + x * W), None), h, seq)
            return h2, h2

        h, ys = gd.ops.scan(outer, gd.constant(np.zeros(3)), xs)
        loss = gd.ops.sum(ys * ys)
    train = gd.compile([loss], gd.optim.SGD(0.1))
    train.save(str(tmp_path / "t.gdl"))
    back = gd.load(str(tmp_path / "t.gdl"))
    feeds = {"xs": RNG.standard_normal((3, 2, 3))}
    for _ in range(2):
        np.testing.assert_array_equal(train.run(feeds)[0], back.run(feeds)[0])
    np.testing.assert_array_equal(train.parameters()["W"], back.parameters()["W"])


def test_file_with_an_impure_or_malformed_body_is_refused(tmp_path) -> None:
    import json

    from graphdl.serialize import graph_from_json, graph_to_json

    with gd.Graph("bad", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        h, _ = gd.ops.scan(lambda c, x: (c + x, None), gd.constant(np.zeros(3)), xs)
    exe = gd.compile([h])
    data = json.loads(json.dumps(graph_to_json(exe.ir)))
    scan = next(n for n in data["nodes"] if n["op"] == "scan")
    body = scan["attrs"]["body"]
    add = next(n for n in body["nodes"] if n["op"] == "add")
    add["inputs"] = [add["inputs"][0], "nowhere"]
    with pytest.raises(gd.ModelFileError, match=r"sub-graph 'body'.*nowhere"):
        graph_from_json(data)
    add["op"], add["inputs"] = "increment", [add["inputs"][0]]
    with pytest.raises(gd.ModelFileError):
        graph_from_json(data)
    scan["attrs"]["body"] = "print('hi')"
    with pytest.raises(gd.ModelFileError, match="sub-graph object"):
        graph_from_json(data)


def test_text_form_and_svg_show_the_body() -> None:
    g, xs, h0, W, U, loss = _rnn_loss_graph()
    exe = gd.compile([loss])
    text = str(exe)
    scan_line = next(line for line in text.splitlines() if "= scan(" in line)
    assert "body=<scan/body:" in scan_line
    indented = [line for line in text.splitlines() if line.startswith("      ") and "tanh(" in line]
    assert indented, text
    svg = gd.viz.to_svg(exe)
    assert "body of scan" in svg and "tanh" in svg
    grouped = gd.viz.to_svg(gd.compile([loss], gd.optim.SGD(0.1)), group="layer")  # one box per layer
    assert "body of scan" in grouped


# -- errors -------------------------------------------------------------------------------------
def test_carry_shape_mismatch_names_the_carry_both_shapes_and_the_body_line() -> None:
    with gd.Graph("err"):
        xs = gd.placeholder("xs", (None, 3))

        def step(c, x):
            return gd.ops.sum(c + x), None

        line = inspect.getsourcelines(step)[1]
        with pytest.raises(ShapeError, match=rf"the carry goes in as \(3,\) but the body returns it as \(\).*"
                                             rf"'sum'.*test_scan.py:{line + 1}.*body at .*test_scan.py:{line}"):
            gd.ops.scan(step, gd.constant(np.zeros(3, np.float32)), xs)


def test_shape_error_inside_the_body_names_the_user_line() -> None:
    with gd.Graph("err"):
        xs = gd.placeholder("xs", (None, 3))
        W = gd.constant(np.zeros((4, 4), np.float32))

        def step(c, x):
            return c @ W, None  # (1, 3) @ (4, 4)

        line = inspect.getsourcelines(step)[1] + 1
        with pytest.raises(ShapeError, match=rf"matmul at node 'matmul' \(defined at .*test_scan.py:{line}\)"):
            gd.ops.scan(step, gd.constant(np.zeros((1, 3), np.float32)), xs)


def test_non_tensor_body_results_are_refused() -> None:
    with gd.Graph("err"):
        xs = gd.placeholder("xs", (None, 3))
        init = gd.constant(np.zeros(3, np.float32))
        with pytest.raises(GraphError, match=r"must return \(new_carry, y\)"):
            gd.ops.scan(lambda c, x: c + x, init, xs)
        with pytest.raises(GraphError, match=r"new carry is a ndarray, not a graph Tensor"):
            gd.ops.scan(lambda c, x: (np.zeros(3), None), init, xs)
        with pytest.raises(GraphError, match=r"y is a float, not a graph Tensor"):
            gd.ops.scan(lambda c, x: (c, 1.0), init, xs)
        with pytest.raises(GraphError, match="returns 2 carries as a tuple, but init has 1 as one Tensor"):
            gd.ops.scan(lambda c, x: ((c, c), None), init, xs)


def test_wrong_xs_leading_dims_are_refused() -> None:
    with gd.Graph("err"):
        a = gd.placeholder("a", (5, 3))
        b = gd.placeholder("b", (4, 3))
        init = gd.constant(np.zeros(3, np.float32))
        with pytest.raises(ShapeError, match=r"xs 1 'b' \(4, 3\) has 4 steps but xs 0 has 5"):
            gd.ops.scan(lambda c, x: (c + x[0] + x[1], None), init, (a, b))
        with pytest.raises(ShapeError, match="has 5 steps but length= 4"):
            gd.ops.scan(lambda c, x: (c + x, None), init, a, length=4)
        with pytest.raises(ShapeError, match="scalar"):
            gd.ops.scan(lambda c, x: (c, None), init, gd.ops.sum(a))
        with pytest.raises(GraphError, match="length="):
            gd.ops.scan(lambda c, x: (c, None), init)


def test_unknown_lengths_that_differ_at_run_time_are_refused() -> None:
    with gd.Graph("err", dtype="float64"):
        a = gd.placeholder("a", (None, 3))
        b = gd.placeholder("b", (None, 3))
        h, _ = gd.ops.scan(lambda c, x: (c + x[0] * x[1], None), gd.constant(np.zeros(3)), (a, b))
    exe = gd.compile([h])
    with pytest.raises(ShapeError, match=re.escape("scanned input 1 has 4 time steps, but an earlier one has 5")):
        exe.run({"a": np.zeros((5, 3)), "b": np.zeros((4, 3))})


def test_random_ops_in_the_body_are_refused_clearly() -> None:
    with gd.Graph("err"):
        xs = gd.placeholder("xs", (None, 2, 3))
        drop = gd.layers.Dropout(0.5)
        with pytest.raises(GraphError, match=r"dropout at node .* draws random numbers.*cannot do.*outside the scan"):
            gd.ops.scan(lambda c, x: (drop(c + x), None), gd.constant(np.zeros((2, 3), np.float32)), xs)


def test_dtype_mismatch_of_a_carry_is_refused() -> None:
    with gd.Graph("err"):
        xs = gd.placeholder("xs", (None, 3))
        with pytest.raises(gd.DTypeError, match="carry goes in as float32 but the body returns it as float64"):
            gd.ops.scan(lambda c, x: ((c + x).astype("float64"), None), gd.constant(np.zeros(3, np.float32)), xs)


@pytest.mark.parametrize("reverse", [False, True])
def test_onnx_export_matches_onnxruntime(reverse: bool, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    W0, U0 = RNG.standard_normal((4, 4)).astype(np.float32), RNG.standard_normal((3, 4)).astype(np.float32)
    with gd.Graph("rnn_onnx") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        h0 = gd.placeholder("h0", (2, 4))
        W, U = g.stored("W", W0), g.stored("U", U0)
        h, ys = gd.ops.scan(lambda h, x: (gd.ops.tanh(h @ W + x @ U),) * 2, h0, xs, reverse=reverse)
        out = ys * 2.0
    exe = gd.compile([h, out])
    gd.onnx.export(exe, tmp_path / "s.onnx")
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"xs": RNG.standard_normal((5, 2, 3)).astype(np.float32),
             "h0": RNG.standard_normal((2, 4)).astype(np.float32)}
    for a, b in zip(exe.run(feeds), sess.run(None, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_onnx_export_of_a_scan_without_xs_is_refused(tmp_path) -> None:
    with gd.Graph("gen") as g:
        c0 = gd.placeholder("c0", (3,))
        h, _ = gd.ops.scan(lambda c, x: (c * 2.0, None), c0, length=3)
    from graphdl.onnx.export import ExportError

    with pytest.raises(ExportError, match="without xs"):
        gd.onnx.export(g, tmp_path / "g.onnx", outputs=[h])


def test_closing_a_plan_closes_its_bodies_plans() -> None:
    import linecache

    with gd.Graph("close", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        h, _ = gd.ops.scan(lambda c, x: (c + x, None), gd.constant(np.zeros(3)), xs, name="loop")
    bound = gd.compile([h]).bound_plan({"xs": (4, 3)})
    (body,) = bound._bodies
    assert body._filenames and all(f in linecache.cache for f in body._filenames)
    bound.close()
    assert not any(f in linecache.cache for f in body._filenames)


def test_a_body_shape_error_found_at_run_time_names_the_body_line() -> None:
    with gd.Graph("late", dtype="float64"):
        xs = gd.placeholder("xs", (None, 2, None))  # the feature size is known only at run time
        W = gd.constant(np.ones((3, 4)))

        def step(c, x):
            return c + x @ W, None

        line = inspect.getsourcelines(step)[1] + 1
        h, _ = gd.ops.scan(step, gd.constant(np.zeros((2, 4))), xs)
    exe = gd.compile([h])
    exe.run({"xs": np.ones((3, 2, 3))})
    with pytest.raises(ShapeError, match=rf"in its body, matmul at node 'matmul' \(defined at .*test_scan.py:{line}\)"):
        exe.run({"xs": np.ones((3, 2, 5))})


@pytest.mark.parametrize("reverse", [False, True])
def test_property_any_length_matches_the_loop(reverse: bool) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    with gd.Graph("prop", dtype="float64"):
        xs = gd.placeholder("xs", (None, 2))
        c0 = gd.placeholder("c0", (2,))
        final, ys = gd.ops.scan(lambda c, x: (c * 0.5 + x, c - x), c0, xs, reverse=reverse)
    exe = gd.compile([final, ys])  # one compiled model for every length

    @hypothesis.settings(max_examples=25, deadline=None)
    @hypothesis.given(st.integers(0, 9), st.integers(0, 2**31 - 1))
    def check(T: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x, c = rng.standard_normal((T, 2)), rng.standard_normal(2)
        got_final, got_ys = exe.run({"xs": x, "c0": c})
        want_ys = np.zeros((T, 2))
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            want_ys[t] = c - x[t]
            c = c * 0.5 + x[t]
        np.testing.assert_allclose(got_final, c, rtol=1e-12)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)

    check()
