"""A step is all-or-nothing: checks before any write, counters with the update, Ctrl-C never tears a step,
and a non-finite objective (or, with check_numerics, any non-finite value) refuses the whole step."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import graphdl as gd
from graphdl.ir import NodeKind
from graphdl.registry import get_op
from tests.models import batch


def _model(dropout: bool = True, batchnorm: bool = True, seed: int = 0):
    """Linear-BatchNorm-ReLU-Dropout-Linear with softmax cross-entropy: every kind of training state."""
    with gd.Graph("net", seed=seed) as g:
        x = gd.placeholder("x", (None, 20))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Linear(20, 64, name="fc0")(x)
        if batchnorm:
            h = gd.layers.BatchNorm1D(64, name="bn")(h)
        h = gd.layers.ReLU(name="act")(h)
        if dropout:
            h = gd.layers.Dropout(0.2, name="drop")(h)
        logits = gd.layers.Linear(64, 5, name="fc1")(h)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    return g, x, y, logits, loss


OPTIMIZERS = {
    "sgd": lambda: gd.optim.SGD(0.1),
    "momentum": lambda: gd.optim.SGD(0.1, momentum=0.9, schedule=gd.optim.StepLR(2)),
    "adam": lambda: gd.optim.Adam(1e-2, clip_norm=1.0),
    "rmsprop": lambda: gd.optim.RMSProp(1e-2, momentum=0.5, centered=True),
}


def _snapshot(ex: gd.Executable) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in ex.values.items()}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _writes(n) -> bool:
    return n.kind is NodeKind.UPDATE and bool(get_op(n.op).writes)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=list(OPTIMIZERS))
def test_every_write_comes_after_the_forward_pass_and_the_objective(opt) -> None:
    _g, _x, _y, logits, loss = _model()
    ex = gd.compile([loss, logits], OPTIMIZERS[opt](), loss=loss)
    order = [n.name for n in ex.ir.nodes]
    writes = [i for i, n in enumerate(ex.ir.nodes) if _writes(n)]
    forward = [i for i, n in enumerate(ex.ir.nodes) if n.kind in (NodeKind.OP, NodeKind.LOSS)]
    assert min(writes) > max(forward) >= order.index(ex.objective)
    assert "update/optimizer.t" in [order[i] for i in writes]
    # updates still run inside the backward pass (their gradients' buffers die early)
    gradients = [i for i, n in enumerate(ex.ir.nodes) if n.kind is NodeKind.GRADIENT]
    assert min(writes) < max(gradients)
    # the bound plan checks the objective right after computing it, before every write
    steps = ex.bound_plan({"x": (4, 20), "y": (4,)}).steps
    guard = [k for k, s in enumerate(steps) if s.op == "check_finite"]
    assert len(guard) == 1 and steps[guard[0] - 1].node == ex.objective
    assert all(not get_op(s.op).writes for s in steps[:guard[0]])


def _bad_feeds(kind: str, xb: np.ndarray, yb: np.ndarray) -> dict:
    xb, yb = xb.copy(), yb.copy()
    if kind == "label too large":
        yb[3] = 5
    elif kind == "negative label":
        yb[1] = -1
    elif kind == "empty batch":
        xb, yb = xb[:0], yb[:0]
    elif kind == "wrong shape":
        xb = xb[:, :7]
    elif kind == "wrong dtype":
        yb = yb.astype(np.float32)
    elif kind == "missing feed":
        return {"x": xb}
    elif kind == "nan input":
        xb[2, 4] = np.nan
    return {"x": xb, "y": yb}


ERRORS = {
    "label too large": (gd.ExecutionError, r"softmax_cross_entropy at node 'loss'.*feed 'y' holds label 5 at "
                                           r"index 3, outside \[0, 5\).*refused.*Labels are class ids 0\.\.4"),
    "negative label": (gd.ExecutionError, r"feed 'y' holds label -1 at index 1"),
    "empty batch": (gd.FeedError, r"feed 'x' is empty.*at least one sample"),
    "wrong shape": (gd.FeedError, r"feed 'x' has shape \(8, 7\)"),
    "wrong dtype": (gd.FeedError, r"feed 'y' has dtype float32"),
    "missing feed": (gd.FeedError, r"needs a value for 'y'"),
    "nan input": (gd.NonFiniteError, r"objective 'loss' \(softmax_cross_entropy.*\) is nan at training step 2; "
                                     r"the step was refused"),
}


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=list(OPTIMIZERS))
@pytest.mark.parametrize("kind", ERRORS, ids=list(ERRORS))
def test_a_refused_step_changes_no_parameter_state_or_counter(opt, kind) -> None:
    xb, yb = batch(8, 20, 5)
    _g, x, y, _logits, loss = _model()
    ex = gd.compile([loss], OPTIMIZERS[opt]())
    for _ in range(2):
        ex.run({x: xb, y: yb})
    before = _snapshot(ex)
    error, pattern = ERRORS[kind]
    with pytest.raises(error, match=pattern):
        ex.run(_bad_feeds(kind, xb, yb))
    _assert_same(_snapshot(ex), before)
    # and training continues exactly as if the refused step had never been tried
    ex.run({x: xb, y: yb})
    _g2, x2, y2, _l2, loss2 = _model()
    replay = gd.compile([loss2], OPTIMIZERS[opt]())
    for _ in range(3):
        replay.run({x2: xb, y2: yb})
    _assert_same(_snapshot(ex), _snapshot(replay))


def test_nll_and_embedding_refuse_out_of_range_values_instead_of_reading_other_rows() -> None:
    with gd.Graph("seq", seed=0):
        ids = gd.placeholder("ids", (None,), dtype="int64")
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Embedding(6, 4, name="emb")(ids)
        logp = gd.layers.LogSoftmax(name="lsm")(gd.layers.Linear(4, 3, name="fc")(h))
        loss = gd.losses.NLL(name="nll")(logp, y)
    ex = gd.compile([loss], gd.optim.Adam(1e-2))
    good_ids, good_y = np.array([0, 5, 2, 1]), np.array([0, 1, 2, 2])
    ex.run({ids: good_ids, y: good_y})
    before = _snapshot(ex)
    # label 3 of row 0 would read row 1's first entry, -1 the last row's: both are refused
    for bad, pattern in ((np.array([3, 1, 2, 2]), r"at node .*feed 'y' holds label 3 at index 0, outside \[0, 3\)"),
                         (np.array([0, 1, -1, 2]), r"feed 'y' holds label -1 at index 2")):
        with pytest.raises(gd.ExecutionError, match=pattern):
            ex.run({ids: good_ids, y: bad})
    for bad, pattern in ((np.array([0, 6, 2, 1]), r"embedding at node 'emb'.*feed 'ids' holds id 6 at index 1, "
                                                  r"outside \[0, 6\).*Embedding with more rows"),
                         (np.array([0, 1, -2, 1]), r"feed 'ids' holds id -2 at index 2")):
        with pytest.raises(gd.ExecutionError, match=pattern):
            ex.run({ids: bad, y: good_y})
    _assert_same(_snapshot(ex), before)


def test_one_hot_and_gather_name_the_offending_indices() -> None:
    with gd.Graph("idx", dtype="float64"):
        ids = gd.placeholder("ids", (None,), dtype="int64")
        hot = gd.ops.one_hot(ids, 4)
    with pytest.raises(gd.ExecutionError, match=r"one_hot at node .*feed 'ids' holds class id 4 at index 2"):
        gd.compile([hot]).run({ids: np.array([0, 1, 4])})


# -- Ctrl-C -------------------------------------------------------------------------------------------------
def test_sigint_during_a_step_is_delivered_after_it_to_the_previous_handler() -> None:
    xb, yb = batch(8, 20, 5)
    _g, x, y, _l, loss = _model()
    ex = gd.compile([loss], gd.optim.Adam(1e-2))
    bound = ex.bound_plan({"x": xb.shape, "y": yb.shape})
    step = bound._step
    seen: list[int] = []

    def interrupted_step() -> None:
        signal.raise_signal(signal.SIGINT)  # arrives in the middle of the step
        step()
        seen.append(int(ex.values["optimizer.t"]))  # the step ran whole before the handler was called

    def handler(signum, frame) -> None:
        seen.append(-signum)

    bound._step = interrupted_step
    previous = signal.signal(signal.SIGINT, handler)
    try:
        ex.run({x: xb, y: yb})
        assert signal.getsignal(signal.SIGINT) is handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [1, -signal.SIGINT]
    bound._step = step
    with pytest.raises(KeyboardInterrupt):  # with Python's default handler: KeyboardInterrupt after the step
        bound._step = interrupted_step
        ex.run({x: xb, y: yb})
    assert int(ex.values["optimizer.t"]) == 2


def test_random_interrupts_never_tear_a_step() -> None:
    """A thread sends SIGINT at random times while the main thread trains; afterwards the model equals a
    replay of exactly the steps that completed (the counter says how many): 0 torn steps."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((30, 16, 20)).astype(np.float32)
    ys = rng.integers(0, 5, (30, 16))

    def build() -> gd.Executable:
        _g, _x, _y, _l, loss = _model()
        return gd.compile([loss], gd.optim.Adam(1e-2))

    ref = build()
    replay = [_snapshot(ref)]
    for t in range(len(xs)):
        ref.run({"x": xs[t], "y": ys[t]})
        replay.append(_snapshot(ref))
    trials, interrupts, torn = 12, 0, 0
    armed = [False]

    def handler(signum, frame) -> None:  # Python's behaviour, one interrupt per arming (see below)
        if armed[0]:
            armed[0] = False  # so no second interrupt lands inside the test's own except clause
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        for trial in range(trials):
            ex = build()
            stop = threading.Event()
            r = np.random.default_rng(trial)

            def send(stop: threading.Event = stop, r: np.random.Generator = r) -> None:
                while not stop.wait(float(r.uniform(0.0001, 0.002))):
                    os.kill(os.getpid(), signal.SIGINT)

            sender = threading.Thread(target=send)
            sender.start()
            while True:
                try:
                    armed[0] = True
                    while (t := int(ex.values["optimizer.t"])) < len(xs):
                        ex.run({"x": xs[t], "y": ys[t]})
                    armed[0] = False
                    stop.set()
                    sender.join()
                    break
                except KeyboardInterrupt:
                    interrupts += 1
            now = _snapshot(ex)
            done = int(now["optimizer.t"])
            torn += not all(np.array_equal(now[k], replay[done][k]) for k in now)
    finally:
        armed[0] = False
        stop.set()
        signal.signal(signal.SIGINT, previous)
    assert interrupts > trials  # the interrupts really arrived, many during steps
    assert torn == 0, f"{torn} of {trials} trials ended with a torn step ({interrupts} interrupts)"
