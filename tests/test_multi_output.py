"""Multi-output nodes: references ``node:k``, split/chunk, and every pass and format that carries them."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import CompileError, GraphError, ShapeError
from graphdl.ir import IR, Node, NodeKind, node_of, parse_ref, ref
from graphdl.printing import format_ir
from passes.cse import eliminate_common_subexpressions
from passes.dce import eliminate_dead_code
from passes.verify import verify


def test_references_round_trip() -> None:
    assert ref("s", 0) == "s" and ref("s", 2) == "s:2"
    assert parse_ref("s:2") == ("s", 2) and parse_ref("fc1.W") == ("fc1.W", 0)
    assert node_of("grad/x/split:1") == "grad/x/split"


def _split_model() -> tuple[gd.Graph, gd.Tensor, list[gd.Tensor], gd.Tensor]:
    with gd.Graph("mo", dtype="float64") as g:
        x = gd.placeholder("x", (None, 5))
        a, b = gd.ops.split(x, [2, 3], axis=1)
        loss = gd.ops.sum(a * a) + gd.ops.sum(gd.ops.tanh(b))
    return g, x, [a, b], loss


def test_split_is_one_node_with_two_outputs() -> None:
    g, x, (a, b), _ = _split_model()
    assert a.node is b.node and (a.name, b.name) == ("split", "split:1")
    assert (a.shape, b.shape) == ((None, 2), (None, 3)) and b.index == 1
    assert sum(n.op == "split" for n in g.nodes.values()) == 1


def test_split_and_chunk_match_torch_semantics() -> None:
    x0 = np.arange(70, dtype=np.float64).reshape(7, 10)
    with gd.Graph("s", dtype="float64"):
        x = gd.placeholder("x", (7, 10))
        by_size = gd.ops.split(x, 4, axis=1)
        chunks = gd.ops.chunk(x, 3, axis=0)
    got = gd.compile([*by_size, *chunks]).run({x: x0})
    want = [x0[:, :4], x0[:, 4:8], x0[:, 8:], x0[:3], x0[3:6], x0[6:]]
    assert [w.shape for w in want] == [o.shape for o in got]
    for o, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(o, w)
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(x0)
    assert [tuple(p.shape) for p in torch.split(t, 4, dim=1)] == [o.shape for o in got[:3]]
    assert [tuple(p.shape) for p in torch.chunk(t, 3, dim=0)] == [o.shape for o in got[3:]]


def test_split_errors_name_the_node() -> None:
    with gd.Graph("s"):
        x = gd.placeholder("x", (None, 5))
        with pytest.raises(ShapeError, match=r"split at node 'split'.*add up to 4.*'x'"):
            gd.ops.split(x, [1, 3], axis=1)
        with pytest.raises(ShapeError, match="unknown size"):
            gd.ops.chunk(x, 2, axis=0)
        with pytest.raises(GraphError, match="positive"):
            gd.ops.split(x, 0, axis=1)


def test_gradient_of_a_loss_using_both_outputs_matches_finite_differences() -> None:
    g, x, _, loss = _split_model()
    (dx,) = gd.grad(loss, [x])
    f, df = gd.compile([loss]), gd.compile([dx])
    rng = np.random.default_rng(0)
    x0, v = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    eps = 1e-6
    numeric = (f.run({x: x0 + eps * v})[0] - f.run({x: x0 - eps * v})[0]) / (2 * eps)
    assert np.isclose(float(np.sum(df.run({x: x0})[0] * v)), numeric, rtol=1e-7)
    # analytically: [2a, 1 - tanh(b)^2]
    np.testing.assert_allclose(df.run({x: x0})[0], np.concatenate([2 * x0[:, :2], 1 - np.tanh(x0[:, 2:]) ** 2], 1))


def test_gradient_when_only_one_output_is_used_fills_zeros() -> None:
    with gd.Graph("one", dtype="float64"):
        x = gd.placeholder("x", (2, 4))
        _, b = gd.ops.chunk(x, 2, axis=1)
        loss = gd.ops.sum(b * 3.0)
    (dx,) = gd.grad(loss, [x])
    out = gd.compile([dx]).run({x: np.ones((2, 4))})[0]
    np.testing.assert_array_equal(out, [[0, 0, 3, 3], [0, 0, 3, 3]])


def test_training_through_split() -> None:
    with gd.Graph("train") as g:
        x = gd.placeholder("x", (None, 4))
        h = gd.layers.Linear(4, 6)(x)
        a, b = gd.ops.split(h, [2, 4], axis=1)
        loss = gd.ops.mean(a * a) + gd.ops.mean(b * b)
    step = gd.compile([loss], gd.optim.SGD(0.1))
    x0 = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    first = float(step.run({x: x0})[0])
    for _ in range(20):
        last = float(step.run({x: x0})[0])
    assert last < first / 2
    assert g is not None


def test_output_that_is_a_later_output_of_a_node() -> None:
    g, x, (a, b), _ = _split_model()
    exe = gd.compile([b, a])
    x0 = np.arange(10.0).reshape(2, 5)
    out_b, out_a = exe.run({x: x0})
    np.testing.assert_array_equal(out_b, x0[:, 2:])
    np.testing.assert_array_equal(out_a, x0[:, :2])


def test_plan_gives_each_output_a_slot_and_generated_code_matches_loop() -> None:
    g, x, (a, b), loss = _split_model()
    exe = gd.compile([loss, b])
    bound = exe.bound_plan({"x": (3, 5)})
    step = next(s for s in bound.plan.steps if s.op == "split")
    assert step.outputs == ("split", "split:1")
    sa, sb = bound.plan.slots["split"], bound.plan.slots["split:1"]
    assert sa.offset + sa.nbytes <= sb.offset or sb.offset + sb.nbytes <= sa.offset
    assert re.search(r"k\d+\(v\d+, v\d+, v\d+\)  # split \(split\)", bound.source)
    x0 = np.random.default_rng(1).standard_normal((3, 5))
    looped = [o.copy() for o in bound.run_loop({"x": x0})]
    for u, w in zip(exe.run({x: x0}), looped, strict=True):
        np.testing.assert_array_equal(u, w)


def test_dce_keeps_a_node_if_any_output_is_used_and_cse_merges_whole_nodes() -> None:
    with gd.Graph("c", dtype="float64") as g:
        x = gd.placeholder("x", (4, 6))
        _, b1 = gd.ops.split(x, [3, 3], axis=1)
        _, b2 = gd.ops.split(x, [3, 3], axis=1)
        y = gd.ops.tanh(b1) + gd.ops.tanh(b2)
    ir = g.freeze([y.name])
    merged = eliminate_dead_code(eliminate_common_subexpressions(ir))
    verify(merged)
    assert [n.op for n in merged.nodes].count("split") == 1
    assert [n.op for n in merged.nodes].count("tanh") == 1  # tanh(split:1) twice became one
    assert any("split:1" in n.inputs for n in merged.nodes)


def test_verify_rejects_a_reference_to_a_missing_output() -> None:
    nodes = (Node("x", NodeKind.PLACEHOLDER, "placeholder", shape=(2,)),
             Node("t", NodeKind.OP, "tanh", ("x:1",), shape=(2,)))
    with pytest.raises(CompileError, match=r"'x:1'.*1 output"):
        verify(IR("bad", nodes, ("t",)))


def test_text_form_names_each_output() -> None:
    g, *_ = _split_model()
    text = format_ir(g.freeze())
    assert re.search(r"split, split:1 = split\(x, axis=1, sizes=\(2, 3\)\)  \(\?, 2\) float64, \(\?, 3\) float64",
                     text)
    assert "tanh(split:1)" in text


def test_save_load_keeps_multi_output_nodes(tmp_path) -> None:
    g, x, (a, b), loss = _split_model()
    exe = gd.compile([loss, b])
    path = tmp_path / "m.gdl"
    exe.save(str(path))
    back = gd.load(str(path))
    node = back.ir.node_map()["split"]
    assert node.shapes == ((None, 2), (None, 3)) and node.refs == ("split", "split:1")
    x0 = np.random.default_rng(2).standard_normal((3, 5))
    for u, w in zip(exe.run({x: x0}), back.run({"x": x0}), strict=True):
        np.testing.assert_array_equal(u, w)


def test_svg_labels_edges_with_the_output_they_carry() -> None:
    pytest.importorskip("graphviz")
    g, *_ = _split_model()
    dot = gd.viz.to_dot(g).source
    assert re.search(r'taillabel=":1"', dot) and re.search(r'taillabel=":0"', dot)
    assert ":1 (?, 3) float64" in dot
    svg = gd.viz.to_svg(g)
    assert ":1" in svg


def test_onnx_export_of_split_matches_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    with gd.Graph("mo") as g:
        x = gd.placeholder("x", (None, 6))
        a, b, c = gd.ops.chunk(x, 3, axis=1)
        y = a * b + gd.ops.tanh(c)
    path = str(tmp_path / "split.onnx")
    gd.onnx.export(g, path, outputs=[y])
    x0 = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    (got,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x0})
    np.testing.assert_allclose(got, gd.compile([y]).run({x: x0})[0], rtol=1e-6)


def _bn_cnn() -> tuple[gd.Tensor, gd.Tensor]:
    with gd.Graph("bn", dtype="float64"):
        x = gd.placeholder("x", (None, 2, 4, 4))
        h = gd.layers.Dropout(0.3, name="drop")(gd.layers.BatchNorm2D(2, name="bn")(x))
        loss = gd.ops.mean(gd.ops.tanh(h) * h)
    return x, loss


def test_batch_norm_and_dropout_gradients_reuse_forward_outputs() -> None:
    _, loss = _bn_cnn()
    exe = gd.compile([loss], gd.optim.SGD(0.1))
    ops = [n.op for n in exe.ir.nodes]
    assert ops.count("batch_norm_backward") == 1 and "batch_norm_grad" not in ops  # one node, no recomputing
    assert ops.count("dropout") == 1  # the gradient multiplies by the saved mask instead of redrawing it
    by = exe.ir.node_map()
    backward = next(n for n in exe.ir.nodes if n.op == "batch_norm_backward")
    assert backward.inputs[3:] == ("bn:1", "bn:2")
    update = next(n for n in exe.ir.nodes if n.op == "batch_norm_update")
    assert update.inputs[1:3] == ("bn:1", "bn:2")
    assert any("drop:1" in n.inputs for n in exe.ir.nodes if by[n.name].op == "mul")


def test_new_batch_norm_ops_match_the_format_v1_ops() -> None:
    """Graphs saved before batch_norm had several outputs use batch_norm_grad/batch_norm_stats; both agree."""
    rng = np.random.default_rng(0)
    with gd.Graph("v1", dtype="float64") as g:
        x = gd.placeholder("x", (6, 3, 2, 2))
        gout = gd.placeholder("g", (6, 3, 2, 2))
        gamma = gd.constant(rng.standard_normal(3), name="gamma")
        beta = gd.constant(rng.standard_normal(3), name="beta")
        rm = gd.constant(rng.standard_normal(3), name="rm")
        rv = gd.constant(rng.random(3) + 0.5, name="rv")
        outs = []
        for training in (True, False):
            attrs = {"training": training, "eps": 1e-3}
            y, mean, var = g.apply_multi("batch_norm", [x, gamma, beta, rm, rv], attrs)
            dx, dgamma, dbeta = g.apply_multi("batch_norm_backward", [gout, x, gamma, mean, var], attrs)
            old_dx = g.apply("batch_norm_grad", [gout, x, gamma, rm, rv], {**attrs, "wrt": "x"})
            old_dgamma = g.apply("batch_norm_grad", [gout, x, gamma, rm, rv], {**attrs, "wrt": "gamma"})
            outs += [dx, old_dx, dgamma, old_dgamma, dbeta, gd.ops.sum(gout, axis=(0, 2, 3))]
    got = gd.compile(outs).run({x: rng.standard_normal((6, 3, 2, 2)) * 2 + 1, gout: rng.standard_normal((6, 3, 2, 2))})
    for new, old in zip(got[::2], got[1::2], strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-10, atol=1e-12)


def test_batch_norm_statistics_are_not_differentiable() -> None:
    with gd.Graph("s", dtype="float64") as g:
        x = gd.placeholder("x", (4, 2))
        bn = gd.layers.BatchNorm1D(2, name="bn")
        y = bn(x)
        mean = gd.Tensor(g, "bn:1")
        loss = gd.ops.sum(y) + gd.ops.sum(mean)
    with pytest.raises(gd.GradientError, match=r"batch statistics of 'bn'.*not differentiable"):
        gd.grad(loss, [x])


def test_max_pool_gradient_reads_the_saved_indices_and_matches_the_rescan() -> None:
    with gd.Graph("pool", dtype="float64"):
        x = gd.placeholder("x", (2, 2, 6, 6))
        w = gd.layers.Conv2D(2, 2, 3, padding=1, name="conv")
        loss = gd.ops.mean(gd.ops.tanh(gd.layers.MaxPool2D(3, stride=2, padding=1, name="pool")(w(x))))
    train = gd.compile([loss], gd.optim.SGD(0.1))
    grad = next(n for n in train.ir.nodes if n.op == "max_pool2d_grad")
    assert grad.inputs[2] == "pool:1" and grad.attr["training"] is True
    assert train.ir.node_map()["pool"].dtypes == ("float64", "uint8")
    (dw,) = gd.grad(loss, [gd.Tensor(w.graph, "conv.W")])
    rescan = gd.compile([dw])  # an inference plan: the gradient scans x itself
    assert next(n for n in rescan.ir.nodes if n.op == "max_pool2d_grad").attr["training"] is False
    x0 = np.random.default_rng(0).permutation(144).reshape(2, 2, 6, 6) * 0.1
    saved = gd.compile([dw], training=True).run({x: x0})[0]
    np.testing.assert_allclose(saved, rescan.run({x: x0})[0], rtol=1e-12)
