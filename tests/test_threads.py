"""Threads: runs of one executable are serialised, so several threads calling it get correct results."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import graphdl as gd
from tests.models import mlp


@pytest.fixture
def fast_switching():
    """Switch threads every 10 us, so runs would interleave inside steps if nothing serialised them."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def _in_threads(work, n: int = 4) -> None:
    errors: list[BaseException] = []

    def wrapped(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_four_threads_running_one_executable_get_exactly_the_single_threaded_results(fast_switching) -> None:
    _g, x, _y, _loss = mlp((20, 64, 64, 5))
    logits = _g.nodes["fc2"]
    predict = gd.compile([gd.Tensor(_g, logits.name)])
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((16 if k < 3 else 9, 20)).astype(np.float32) for k in range(4)]  # 3 share a plan
    expected = [predict.run({x: f})[0] for f in feeds]
    runs, wrong = 300, [0] * 4

    def work(k: int) -> None:
        for _ in range(runs):
            (out,) = predict.run({x: feeds[k]})
            wrong[k] += not np.array_equal(out, expected[k])

    _in_threads(work)
    assert sum(wrong) == 0, f"{sum(wrong)} of {4 * runs} results were wrong"


def test_training_steps_from_threads_are_whole_and_none_is_lost(fast_switching) -> None:
    _g, x, y, loss = mlp()
    train = gd.compile([loss], gd.optim.SGD(0.01))
    rng = np.random.default_rng(1)
    xb, yb = rng.standard_normal((8, 20)).astype(np.float32), rng.integers(0, 5, 8)
    losses: list[float] = []

    def work(k: int) -> None:
        for _ in range(50):
            losses.append(float(train.run({x: xb, y: yb})[0]))

    _in_threads(work)
    assert int(train.values["optimizer.t"]) == 200
    # every step saw whole weights: the same 200 steps on one thread give the same final weights
    _g2, x2, y2, loss2 = mlp()
    serial = gd.compile([loss2], gd.optim.SGD(0.01))
    for _ in range(200):
        serial.run({x2: xb, y2: yb})
    for k, v in serial.parameters().items():
        np.testing.assert_array_equal(train.values[k], v, err_msg=k)
