"""Threads: runs of one executable are serialised, so several threads calling it get correct results."""

from __future__ import annotations

import sys
import threading
import time

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


def test_split_over_threads_covers_every_index_once_and_restores_the_blas_threads() -> None:
    from graphdl.threads import _blas, split_over_threads

    numpy_blas = _blas()  # NumPy's own (gd.get_num_threads also sees a BLAS that torch may have loaded)
    for blas in (1, 3):
        with gd.num_threads(blas):
            seen: list[tuple[int, int, str, int | None]] = []
            split_over_threads(lambda s, seen=seen: seen.append((s.start, s.stop, threading.current_thread().name,
                                                                 numpy_blas.get_num_threads())), 7)
            assert numpy_blas.get_num_threads() == blas
        assert sorted(i for a, b, *_ in seen for i in range(a, b)) == list(range(7))
        # GRAIN slices per BLAS thread, each run with one BLAS thread, in this thread or graphdl's pool
        assert len(seen) == (min(7, gd.threads.GRAIN * blas) if blas > 1 else 1)
        assert all(t == 1 for *_, t in seen)
        here = threading.current_thread().name
        assert all(name == here or (blas > 1 and name.startswith("graphdl")) for _, _, name, _ in seen)


def test_split_over_threads_raises_a_slice_error_and_still_restores_the_threads() -> None:
    from graphdl.threads import _blas, split_over_threads

    def fail_second(s: slice) -> None:
        if s.start:
            raise ValueError(f"slice {s.start}")

    with gd.num_threads(2):
        with pytest.raises(ValueError, match="slice"):
            split_over_threads(fail_second, 4)
        assert _blas().get_num_threads() == 2


def test_attention_split_over_threads_equals_the_one_thread_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attention and layer_norm kernels run slices of the batch in threads when BLAS has several (here
    from any size on): the same values."""
    monkeypatch.setattr(gd.threads, "SPLIT_MIN", 1)
    rng = np.random.default_rng(0)
    qa, ka, va = (rng.standard_normal((5, 2, 6, 4)) for _ in range(3))
    mask = rng.standard_normal((5, 1, 6, 6))  # per sample: sliced with the batch
    with gd.Graph("a", dtype="float64"):
        q, k, v = (gd.placeholder(n, (None, 2, 6, 4)) for n in "qkv")
        o = gd.ops.scaled_dot_product_attention(q, k, v, attn_mask=gd.placeholder("m", (None, 1, 6, 6)))
        oc = gd.ops.scaled_dot_product_attention(q, k, v, is_causal=True)
        ln = gd.layers.LayerNorm(4)(o)
        grads = gd.grad(gd.ops.sum(o * o) + gd.ops.sum(oc * q) + gd.ops.sum(ln * q), [q, k, v])
    ex = gd.compile([o, oc, ln, *grads])
    feeds = {"q": qa, "k": ka, "v": va, "m": mask}
    with gd.num_threads(1):
        one = ex.run(feeds)
    with gd.num_threads(3):
        three = ex.run(feeds)
    for a, b in zip(one, three):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_split_over_threads_works_in_a_forked_child() -> None:
    """The worker threads do not survive fork: a child (a data loader's worker, say) makes its own pool
    (the parent's, copied, would take the work and never run it)."""
    import os

    from graphdl.threads import split_over_threads

    with gd.num_threads(2):
        for _ in range(20):  # the parent's pool exists, its workers idle
            split_over_threads(lambda s: time.sleep(0.001), 4)
        pid = os.fork()
        if pid == 0:  # child: exit 0 only if the split completes
            done: list[slice] = []
            split_over_threads(done.append, 4)
            os._exit(0 if len(done) == 2 * gd.threads.GRAIN else 1)
        for _ in range(300):  # a child waiting on the parent's dead threads hangs: give it 30 s
            done_pid, status = os.waitpid(pid, os.WNOHANG)
            if done_pid:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("split_over_threads hung in a forked child")
    assert os.waitstatus_to_exitcode(status) == 0
