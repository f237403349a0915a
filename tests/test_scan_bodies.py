"""Compilation optimises scan bodies like the graph: a redundant body node is removed, nested bodies too,
and what only pruned outputs needed is dropped, with the same results."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from passes.bodies import optimize_body

RNG = np.random.default_rng(7)


def _ops(body) -> list[str]:
    return [n.op for n in body.nodes if n.kind is not gd.NodeKind.PLACEHOLDER]


def _scans(exe: gd.Executable) -> list:
    return [n for n in exe.ir.nodes if n.op == "scan"]


def test_redundant_body_nodes_are_removed_and_results_unchanged() -> None:
    with gd.Graph("dup", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        c0 = gd.placeholder("c0", (3,))

        def body(c, x):
            a, b = gd.ops.tanh(c + x), gd.ops.tanh(c + x)  # the same value twice
            return a + b * 1.0, gd.ops.exp(x)  # times one: nothing

        final, ys = gd.ops.scan(body, c0, xs)
    traced = next(n for n in final.graph.nodes.values() if n.op == "scan").attr["body"]
    assert _ops(traced).count("tanh") == 2 and "mul" in _ops(traced)
    exe = gd.compile([final])  # ys unread: pruned, and exp with it
    (node,) = _scans(exe)
    assert sorted(_ops(node.attr["body"])) == ["add", "add", "tanh"]
    assert len([n for n in node.attr["body"].nodes if n.kind is gd.NodeKind.PLACEHOLDER]) == 2
    x, c = RNG.standard_normal((4, 3)), RNG.standard_normal(3)
    (got,) = exe.run({"xs": x, "c0": c})
    for t in range(4):
        c = 2 * np.tanh(c + x[t])
    np.testing.assert_allclose(got, c, rtol=1e-12)


def test_nested_bodies_are_optimised_and_unused_inputs_stay() -> None:
    with gd.Graph("nest", dtype="float64"):
        xs = gd.placeholder("xs", (None, 2, 3))
        c0 = gd.placeholder("c0", (3,))
        k = gd.placeholder("k", (3,))

        def inner(c, x):
            return gd.ops.sin(c + x) + gd.ops.sin(c + x), None

        def outer(c, seq):
            h, _ = gd.ops.scan(inner, c, seq)
            return gd.ops.tanh(h * 1.0), None

        final, _ = gd.ops.scan(outer, c0, xs)
        unused, _ = gd.ops.scan(lambda c, x: (c, None), c0, xs * k)  # reads nothing but its carry
    exe = gd.compile([final, unused])
    outer_node = next(n for n in _scans(exe) if "scan" in _ops(n.attr["body"]))
    (inner_node,) = [n for n in outer_node.attr["body"].nodes if n.op == "scan"]
    assert sorted(_ops(outer_node.attr["body"])) == ["scan", "tanh"]
    assert sorted(_ops(inner_node.attr["body"])) == ["add", "add", "sin"]
    x, c = RNG.standard_normal((3, 2, 3)), RNG.standard_normal(3)
    got, got_unused = exe.run({"xs": x, "c0": c, "k": np.ones(3)})
    want = c
    for t in range(3):
        for u in range(2):
            want = 2 * np.sin(want + x[t, u])
        want = np.tanh(want)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got_unused, c, rtol=1e-12)


def test_an_optimal_body_is_returned_as_it_is() -> None:
    with gd.Graph("same", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        final, _ = gd.ops.scan(lambda c, x: (gd.ops.tanh(c + x), None), gd.placeholder("c0", (3,)), xs)
    body = next(n for n in final.graph.nodes.values() if n.op == "scan").attr["body"]
    assert optimize_body(body) is body
