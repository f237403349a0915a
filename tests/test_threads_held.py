"""Steps that hold the threads (graphdl.threads.held): BLAS at one thread during the step and given back
after, by the last of several threads; split GEMMs equal to one call to the last bit; no deadlock."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import graphdl as gd
from graphdl import threads
from graphdl.ops.gemm import has_blas, make_gemm
from graphdl.threads import _blas, held, split_over_threads
from tests.models import mlp


def _cnn(seed: int = 0) -> tuple[gd.Executable, gd.Tensor, gd.Tensor]:
    from graphdl import layers

    with gd.Graph("small_cnn", seed=seed):
        x = gd.placeholder("x", (None, 1, 12, 12))
        h = layers.ReLU(name="relu")(layers.Conv2D(1, 8, 3, padding=1, name="conv")(x))
        h = layers.MaxPool2D(2, name="pool")(h)
        logits = layers.Linear(8 * 6 * 6, 5, name="fc")(layers.Flatten(name="flat")(h))
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    return gd.compile([loss], gd.optim.SGD(0.05)), x, y


def _data(seed: int = 0, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 12, 12), dtype=np.float32), rng.integers(0, 5, n)


@pytest.fixture
def split_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kernel that can split does (from one element of work), and every GEMM of the fast path."""
    monkeypatch.setattr(threads, "SPLIT_MIN", 1)
    monkeypatch.setattr(threads, "GEMM_SPLIT_MIN", 1)



def _run_threads(targets: list, errors: list[BaseException]) -> None:
    """Run each target in its own thread, wait for all; none raised and BLAS has its 2 threads back."""
    ts = [threading.Thread(target=t) for t in targets]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert _blas().get_num_threads() == 2 and threads._HOLD[0] == 0

def test_a_splitting_plan_holds_blas_at_one_thread_during_its_step_and_gives_it_back(
        split_everything, monkeypatch: pytest.MonkeyPatch) -> None:
    inside: list[int] = []
    real = threads.held

    def recording():
        with real() as k:
            inside.append(_blas().get_num_threads())
            yield k

    import contextlib

    monkeypatch.setattr(threads, "held", contextlib.contextmanager(recording))
    train, x, y = _cnn()
    xb, yb = _data()
    with gd.num_threads(2):
        train.run({x: xb, y: yb})
        assert _blas().get_num_threads() == 2
    assert inside == [1]
    _g, mx, my, mloss = mlp()
    plain = gd.compile([mloss], gd.optim.SGD(0.01))
    with gd.num_threads(2):
        plain.run({mx: xb.reshape(8, -1)[:, :20], my: yb})
    assert inside == [1]  # no kernel of the MLP splits: its steps leave BLAS threading alone
    assert train.bound_plan({"x": xb.shape, "y": yb.shape}).splits
    assert not plain.bound_plan({mx.name: (8, 20), my.name: (8,)}).splits


def test_a_failing_step_gives_the_threads_back(split_everything) -> None:
    train, x, y = _cnn()
    xb, yb = _data()
    with gd.num_threads(2):
        with pytest.raises(gd.GraphDLError, match="label"):
            train.run({x: xb, y: np.full(8, 7)})  # label 7 of 5 classes: raised inside the step
        assert _blas().get_num_threads() == 2 and threads._HOLD[0] == 0


def test_three_threads_running_two_executables_match_a_serial_run_bit_for_bit(split_everything) -> None:
    xb, yb = _data()
    with gd.num_threads(2):
        serial = _cnn(seed=1)
        for _ in range(30):  # the same splits, one step at a time
            serial[0].run({serial[1]: xb, serial[2]: yb})
        models = [_cnn(seed=1), _cnn(seed=1)]
        errors: list[BaseException] = []

        def work(k: int) -> None:
            train, x, y = models[k % 2]
            try:
                for _ in range((10, 30, 20)[k]):  # threads 0 and 2 share model 0: 30 steps each model
                    train.run({x: xb, y: yb})
            except BaseException as e:  # reported below
                errors.append(e)

        _run_threads([lambda k=k: work(k) for k in range(3)], errors)
    for train, _, _ in models:
        for name, value in serial[0].parameters().items():
            np.testing.assert_array_equal(train.values[name], value, err_msg=name)


@pytest.mark.skipif(not has_blas(np.float32), reason="the split GEMM is the BLAS fast path's")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("m", "n", "k"), [(70, 33, 50), (9, 100, 17), (3, 3, 4)])
@pytest.mark.parametrize(("ta", "tb"), [(False, False), (True, False), (False, True), (True, True)])
def test_a_split_gemm_equals_one_call_to_rounding(split_everything, dtype, m, n, k, ta, tb) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    one, split = c0.copy(), c0.copy()
    with gd.num_threads(1):
        make_gemm(np.dtype(dtype), (m, n), alpha=-0.5, beta=1.0, trans_a=ta, trans_b=tb)(a, b, one)
    blocks: list[str] = []
    with gd.num_threads(3), held() as parts:
        assert parts == 3 and _blas().get_num_threads() == 1
        gemm = make_gemm(np.dtype(dtype), (m, n), alpha=-0.5, beta=1.0, trans_a=ta, trans_b=tb)
        real = threads.split_dynamic
        threads.split_dynamic = lambda fn, units, k, p: (blocks.append(f"{units}/{k}/{p}"), real(fn, units, k, p))[1]
        try:
            gemm(a, b, split)
        finally:
            threads.split_dynamic = real
    units = -(-max(m, n) // 16)  # whole tiles of 16 rows or columns, GRAIN blocks per thread
    assert blocks == [f"{units}/3/{min(units, 3 * threads.GRAIN)}"]
    np.testing.assert_allclose(split, one, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
    again = c0.copy()
    with gd.num_threads(3), held():
        gemm(a, b, again)
    np.testing.assert_array_equal(again, split)  # the same blocks: the same bits


@pytest.mark.skipif(not has_blas(np.float32), reason="the split GEMM is the BLAS fast path's")
def test_the_mlp_shapes_split_within_rounding_and_the_same_every_time(split_everything) -> None:
    """784-1024-1024-10 at batch 256: row or column blocks of C sum each entry as one call does, up to
    the order BLAS's kernel takes (bit-equal on OpenBLAS's SkylakeX kernels, not on its Haswell ones), so
    within the bound of two orders of k float32 sums, 2 k eps (|a| |b|); and the same bits on every run."""
    rng = np.random.default_rng(1)
    for (m, n, k), ta in [((256, 1024, 784), False), ((784, 1024, 256), True), ((1024, 1024, 256), True)]:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        one, split, again = (np.zeros((m, n), np.float32) for _ in range(3))
        with gd.num_threads(1):
            make_gemm(np.dtype(np.float32), (m, n), trans_a=ta)(a, b, one)
        with gd.num_threads(2), held():
            make_gemm(np.dtype(np.float32), (m, n), trans_a=ta)(a, b, split)
            make_gemm(np.dtype(np.float32), (m, n), trans_a=ta)(a, b, again)
        bound = 2 * k * np.finfo(np.float32).eps * (np.abs(a.T if ta else a).astype(np.float64) @ np.abs(b))
        assert np.all(np.abs(split.astype(np.float64) - one) <= bound), (m, n, k)
        np.testing.assert_array_equal(again, split)


def test_a_split_inside_a_pool_thread_runs_in_place() -> None:
    """A kernel's slice that splits again (nested) must not wait on the pool it runs in."""
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def inner(s: slice) -> None:
        with lock:
            seen.append((s.start, s.stop))

    outer: list[slice] = []

    def nested(s: slice) -> None:
        outer.append(s)
        split_over_threads(inner, 10)

    with gd.num_threads(2):
        for _ in range(50):
            split_over_threads(nested, 4)
    # every outer slice covered 0..10 once, split again (in the calling thread) or whole (in the pool)
    assert len(outer) == 50 * 2 * threads.GRAIN
    assert sum(b - a for a, b in seen) == len(outer) * 10 and len(seen) >= len(outer)


def test_set_num_threads_during_another_threads_step_takes_effect_after_it() -> None:
    with gd.num_threads(2):
        with held() as k:
            assert k == 2 and _blas().get_num_threads() == 1
            gd.set_num_threads(3)
            assert gd.get_num_threads() == 3 and _blas().get_num_threads() == 1
        assert _blas().get_num_threads() == 3


def test_split_dynamic_runs_every_slice_once_whoever_claims_it() -> None:
    from graphdl.threads import split_dynamic

    for pieces in (2, 7, 40):
        got: list[tuple[int, int, int]] = []
        with gd.num_threads(2):
            split_dynamic(lambda j, s, got=got: got.append((j, s.start, s.stop)), 40, 2, pieces)
            assert _blas().get_num_threads() == 2
        assert sorted(j for j, _, _ in got) == list(range(pieces))
        assert sorted(i for _, a, b in got for i in range(a, b)) == list(range(40))


def test_split_dynamic_raises_a_slice_error_after_every_slice_ran() -> None:
    from graphdl.threads import split_dynamic

    ran: list[int] = []

    def fail_third(j: int, s: slice) -> None:
        ran.append(j)
        if j == 3:
            raise ValueError("slice 3")

    with gd.num_threads(2), pytest.raises(ValueError, match="slice 3"):
        split_dynamic(fail_third, 10, 2, 10)
    assert sorted(ran) == list(range(10)) and threads._HOLD[0] == 0


def test_a_scan_body_that_splits_makes_its_plan_hold_the_threads(split_everything) -> None:
    """The body's kernels run inside the outer step (nested plans): the outer plan holds the threads, and
    the results equal a one-thread run's."""
    rng = np.random.default_rng(2)
    with gd.Graph("scan_attention", dtype="float64"):
        init = gd.placeholder("init", (3, 2, 6, 4))
        xs = gd.placeholder("xs", (None, 3, 2, 6, 4))
        last, ys = gd.ops.scan(lambda c, x: (gd.ops.scaled_dot_product_attention(c + x, c, c), c * x), init, xs)
    ex = gd.compile([last, ys])
    feeds = {"init": rng.standard_normal((3, 2, 6, 4)), "xs": rng.standard_normal((5, 3, 2, 6, 4))}
    with gd.num_threads(1):
        one = ex.run(feeds)
    with gd.num_threads(2):
        two = ex.run(feeds)
        assert _blas().get_num_threads() == 2
    assert ex.bound_plan({"init": (3, 2, 6, 4), "xs": (5, 3, 2, 6, 4)}).splits
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_a_holding_plan_and_a_plain_plan_in_two_threads_give_the_serial_results(split_everything) -> None:
    """A plan that leaves BLAS threading alone (the MLP) runs while another thread's step holds the threads:
    both get their serial results and BLAS its count back."""
    xb, yb = _data()
    rng = np.random.default_rng(3)
    xm = rng.standard_normal((64, 20)).astype(np.float32)
    ym = rng.integers(0, 5, 64)

    def build() -> tuple:
        _g, mx, my, mloss = mlp((20, 256, 256, 5))
        return _cnn(seed=4), (gd.compile([mloss], gd.optim.SGD(0.01)), mx, my)

    with gd.num_threads(2):
        (cnn, x, y), (plain, mx, my) = build()
        for _ in range(20):
            cnn.run({x: xb, y: yb})
            plain.run({mx: xm, my: ym})
        (cnn2, x2, y2), (plain2, mx2, my2) = build()
        errors: list[BaseException] = []

        def steps(run) -> None:
            try:
                for _ in range(20):
                    run()
            except BaseException as e:  # reported below
                errors.append(e)

        _run_threads([lambda: steps(lambda: cnn2.run({x2: xb, y2: yb})),
                      lambda: steps(lambda: plain2.run({mx2: xm, my2: ym}))], errors)
    for a, b in ((cnn, cnn2), (plain, plain2)):
        for name, value in a.parameters().items():
            # the MLP's GEMMs run threaded in BLAS or split by graphdl's pool, as the other thread's step
            # holds the threads or not: equal to rounding
            np.testing.assert_allclose(b.values[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
