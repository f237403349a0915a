"""scan(..., remat=True): its gradient (the reverse scan) and that gradient's own gradient recompute each
step from its carry too, so second-order plans also keep only the carries per step."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from passes import specialize

RNG = np.random.default_rng(3)


def _hvp(remat: bool) -> tuple[gd.Graph, gd.Tensor, gd.Tensor]:
    """A Hessian-vector product of an RNN's loss with respect to its recurrent weight."""
    W0, U0 = np.full((4, 4), 0.1) + np.eye(4) * 0.3, np.linspace(-1, 1, 12).reshape(3, 4)
    with gd.Graph("remat2", dtype="float64") as g:
        xs = gd.placeholder("xs", (None, 2, 3))
        h0 = gd.placeholder("h0", (2, 4))
        W, U = g.stored("W", W0), g.stored("U", U0)

        def step(h, x):
            h = gd.ops.tanh(gd.ops.sigmoid(h @ W) * 2.0 + x @ U)
            return h, h

        h, ys = gd.ops.scan(step, h0, xs, remat=remat)
        loss = gd.ops.sum(ys * ys) + gd.ops.sum(h)
    (dW,) = gd.grad(loss, [W])
    with g:
        gv = gd.ops.sum(dW * gd.constant(np.linspace(-1, 1, 16).reshape(4, 4), name="v"))
    (ddW,) = gd.grad(gv, [W])
    return g, gv, ddW


def test_the_reverse_scan_and_its_gradient_inherit_remat() -> None:
    for remat in (False, True):
        g, _, _ = _hvp(remat)
        scans = [n for n in g.nodes.values() if n.op == "scan"]
        assert len(scans) >= 3, "the forward, its reverse and the reverse's reverse"
        assert {n.attr["remat"] for n in scans} == {remat}
        reverse = [n for n in scans if n.attr["reverse"]]
        ops = {m.op for n in reverse for m in n.attr["body"].nodes}
        assert ("tanh" in ops) is remat, "with remat the reverse body recomputes the step"


def test_remat_second_derivative_is_exact_and_stores_less_per_step() -> None:
    x, hv = RNG.standard_normal((6, 2, 3)), RNG.standard_normal((2, 4))
    outs, arenas = [], []
    for remat in (False, True):
        _, gv, ddW = _hvp(remat)
        exe = gd.compile([gv, ddW])
        outs.append(exe.run({"xs": x, "h0": hv}))

        def arena(T: int, exe: gd.Executable = exe) -> int:
            return specialize(exe.ir, {"xs": (T, 2, 3), "h0": (2, 4)}).arena_bytes

        arenas.append(arena(200) - arena(100))  # bytes per 100 more steps
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    # Stored: 1152 B per step; remat on the forward only: 960 (the reverse scan stored its residuals for
    # the second derivative); inherited by the reverse scan: 576, the carries and what the VJP reads.
    assert 2 * arenas[1] <= arenas[0], f"remat keeps at most half the bytes per step: {arenas}"
