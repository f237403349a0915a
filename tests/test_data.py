"""DataLoader and the digits data set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 17), shuffle=st.booleans(), drop_last=st.booleans())
def test_every_sample_once_per_epoch(n: int, batch: int, shuffle: bool, drop_last: bool) -> None:
    x = np.arange(n)
    loader = gd.data.DataLoader(x, x * 10, batch_size=batch, shuffle=shuffle, seed=1, drop_last=drop_last)
    for _ in range(2):
        seen = [b for b in loader]
        assert len(seen) == len(loader)
        xs = np.concatenate([b[0] for b in seen]) if seen else np.array([], dtype=int)
        assert all(np.array_equal(b[1], b[0] * 10) for b in seen)  # arrays stay aligned
        if drop_last:
            assert len(xs) == (n // batch) * batch and len(set(xs)) == len(xs)
            assert all(len(b[0]) == batch for b in seen)
        else:
            assert sorted(xs) == list(range(n))


def test_shuffle_is_seeded_and_changes_between_epochs() -> None:
    x = np.arange(100)
    a = [b[0] for b in gd.data.DataLoader(x, batch_size=10, shuffle=True, seed=5)]
    b = [b[0] for b in gd.data.DataLoader(x, batch_size=10, shuffle=True, seed=5)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    loader = gd.data.DataLoader(x, batch_size=100, shuffle=True, seed=5)
    assert not np.array_equal(next(iter(loader))[0], next(iter(loader))[0])


def test_an_epochs_order_depends_on_seed_and_epoch_only() -> None:
    x = np.arange(50)
    walked = gd.data.DataLoader(x, batch_size=50, shuffle=True, seed=3)
    orders = [next(iter(walked))[0] for _ in range(4)]  # each pass starts the next epoch
    for epoch in (0, 2, 3):
        fresh = gd.data.DataLoader(x, batch_size=50, shuffle=True, seed=3)
        fresh.set_epoch(epoch)
        assert np.array_equal(next(iter(fresh))[0], orders[epoch])
        assert np.array_equal(fresh.order(epoch), orders[epoch])
    assert len({tuple(o) for o in orders}) == 4
    other = gd.data.DataLoader(x, batch_size=50, shuffle=True, seed=4)
    assert not np.array_equal(next(iter(other))[0], orders[0])
    assert gd.data.DataLoader(x, shuffle=False).order(7) is None


def test_ranks_share_the_order_and_split_it() -> None:
    x = np.arange(40)
    loader = gd.data.DataLoader(x, batch_size=4, shuffle=True, seed=2)
    loader.set_epoch(5)
    shards = [[b[0] for b in loader.sharded(rank, 2)] for rank in range(2)]
    assert sorted(np.concatenate([np.concatenate(s) for s in shards])) == list(range(40))
    # global batch k is rank 0's batch k followed by rank 1's, in the order of epoch 5
    interleaved = np.concatenate([np.concatenate([a, b]) for a, b in zip(*shards, strict=True)])
    assert np.array_equal(interleaved, loader.order(5))


def test_an_unseeded_shuffled_loader_is_not_split_over_ranks() -> None:
    loader = gd.data.DataLoader(np.arange(8), batch_size=2, shuffle=True, seed=None)
    assert loader.sharded(0, 1).seed == loader.seed  # one rank: nothing to agree on
    with pytest.raises(gd.GraphDLError, match="split over 2 ranks needs a seed"):
        loader.sharded(0, 2)
    with pytest.raises(gd.GraphDLError, match="seed must be a whole number"):
        gd.data.DataLoader(np.arange(8), shuffle=True, seed=-1)


def test_misaligned_arrays_are_refused() -> None:
    with pytest.raises(gd.GraphDLError, match="array 1 has 3 samples"):
        gd.data.DataLoader(np.zeros(4), np.zeros(3))


def test_digits_split_is_fixed_and_stratified() -> None:
    pytest.importorskip("sklearn")
    a, b = gd.data.load_digits(), gd.data.load_digits()
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.shape[1] == 64 and a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert len(a.y_train) + len(a.y_test) == 1797 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert set(np.bincount(a.y_test)) <= {35, 36, 37}
    assert gd.data.load_digits(images=True).x_train.shape[1:] == (1, 8, 8)
