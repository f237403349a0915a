"""The scan loop re-points its body instead of copying: large time slices are read as views, ys written in
place, carries ping-ponged (graphdl/ops/scan_loop.py); odd bodies (carries passed through, swapped or
returned as ys) still give the loop's results."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.ops import scan_loop

RNG = np.random.default_rng(5)


def test_large_slices_are_views_ys_written_in_place_carry_ping_pongs() -> None:
    B, H = 32, 128  # a (32, 128) float64 slice is 32 KB: above MIN_VIEW_BYTES
    assert B * H * 8 >= scan_loop.MIN_VIEW_BYTES
    W0 = RNG.standard_normal((H, H)) * 0.05
    with gd.Graph("big", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, B, H))
        h0 = gd.placeholder("h0", (B, H))
        W = g.stored("W", W0)
        h, ys = gd.ops.scan(lambda h, x: (gd.ops.tanh(h @ W + x), gd.ops.sigmoid(h)), h0, xs)
    exe = gd.compile([h, ys])
    x, hv = RNG.standard_normal((5, B, H)), RNG.standard_normal((B, H))
    got_h, got_ys = exe.run({"xs": x, "h0": hv})
    want, h_ = np.zeros((5, B, H)), hv
    for t in range(5):
        want[t] = 1 / (1 + np.exp(-h_))
        h_ = np.tanh(h_ @ W0 + x[t])
    np.testing.assert_allclose(got_h, h_, rtol=1e-12)
    np.testing.assert_allclose(got_ys, want, rtol=1e-12)

    bound = exe.bound_plan({"xs": (5, B, H), "h0": (B, H)})
    (body,) = bound.bodies
    (node,) = [n for n in exe.ir.nodes if n.op == "scan"]
    carry, x_name = (n.name for n in node.attr["body"].nodes[:2])
    new_carry, y = node.attr["body"].outputs
    feed, (out_h, out_ys) = dict(bound.feeds)["xs"], bound.outputs

    def where(name: str) -> np.ndarray:
        ((ns, key), *_) = body.pointers(name)
        return ns[key]

    # After the last step: it read x[4] where the feed is, wrote y into ys[4] and the new carry into the
    # final output; the carry it read was in the body's own buffer (ping-pong, no copy).
    assert where(x_name).base is feed or np.shares_memory(where(x_name), feed[4])
    assert np.shares_memory(where(y), out_ys[4])
    assert where(new_carry) is out_h
    assert where(carry) is body.arrays[carry]


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("T", [0, 1, 2, 5])
@pytest.mark.parametrize("reverse", [False, True])
def test_odd_bodies_copied_or_re_pointed(T: int, reverse: bool, views: bool, monkeypatch) -> None:
    monkeypatch.setattr(scan_loop, "MIN_VIEW_BYTES", 0 if views else 1 << 30)
    with gd.Graph("odd", dtype="float64"):
        xs = gd.placeholder("xs", (None, 3))
        a0, b0, k = gd.placeholder("a0", (3,)), gd.placeholder("b0", (3,)), gd.placeholder("k", (3,))

        def body(c, x):
            a, b, same = c
            new_a = a * 0.5 + x
            # b and a swap roles, ``same`` passes through; ys: the new carry, the x itself, a capture, new_a again
            return (b + k, new_a, same), (new_a, x, k, new_a * 1.0, new_a)

        (fa, fb, fs), ys = gd.ops.scan(body, (a0, b0, a0), xs, reverse=reverse)
    exe = gd.compile([fa, fb, fs, *ys])
    x, a, b, kv = (RNG.standard_normal(s) for s in ((T, 3), (3,), (3,), (3,)))
    got = exe.run({"xs": x, "a0": a, "b0": b, "k": kv})
    want_ys = [np.zeros((T, 3)) for _ in range(5)]
    ca, cb, cs = a, b, a
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        new_a = ca * 0.5 + x[t]
        for w, v in zip(want_ys, (new_a, x[t], kv, new_a, new_a), strict=True):
            w[t] = v
        ca, cb = cb + kv, new_a
    for g_, w in zip(got, [ca, cb, cs, *want_ys], strict=True):
        np.testing.assert_allclose(g_, w, rtol=1e-12)
