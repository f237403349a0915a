"""Datasets and batching: DataLoader over NumPy arrays, and the bundled digits data set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from graphdl.errors import GraphDLError, whole_number


class DataLoader:
    """Batches of aligned arrays; every sample appears exactly once per epoch.

    ``shuffle`` draws a new order each epoch. The order of epoch k (counted from 0: each pass over the
    loader starts the next epoch, or ``set_epoch`` chooses one) is a function of ``seed`` and k alone, so
    two loaders built alike yield the same batches, and training resumed at epoch k (``fit(initial_epoch=
    k)``) with a new loader sees the very batches an uninterrupted run would. ``seed=None`` draws a random
    seed once. ``drop_last`` drops a final partial batch.

    ``shard=(rank, size)`` is for data-parallel training: every rank draws the same global order and
    walks it in global batches of ``batch_size * size`` samples, of which it yields its own
    ``batch_size`` (rank r the r-th slice). So the ranks' shards are disjoint, every rank takes the same
    number of steps, and their mean gradient is the gradient of the global batch. A final partial
    global batch is split evenly; the at most ``size - 1`` samples left over are skipped that epoch.
    """

    def __init__(self, *arrays: np.ndarray, batch_size: int = 32, shuffle: bool = False,
                 seed: int | None = 0, drop_last: bool = False, shard: tuple[int, int] | None = None) -> None:
        if not arrays:
            raise GraphDLError("DataLoader needs at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        for k, a in enumerate(arrays):
            if a.ndim == 0:
                raise GraphDLError(f"DataLoader: array {k} is a single value ({a!r}); pass arrays with one "
                                   "sample per row")
        n = len(arrays[0])
        for k, a in enumerate(arrays):
            if len(a) != n:
                raise GraphDLError(f"DataLoader: array {k} has {len(a)} samples, array 0 has {n}")
        batch_size = whole_number(batch_size, "batch_size", 1)
        rank, size = shard if shard is not None else (0, 1)
        if not (isinstance(size, int) and isinstance(rank, int) and size >= 1 and 0 <= rank < size):
            raise GraphDLError(f"shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
        if shuffle and seed is None and size > 1:
            raise GraphDLError("a sharded DataLoader needs a seed, so every rank draws the same order")
        self.arrays, self.n, self.batch_size = arrays, n, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.size = rank, size
        self.seeded = seed is not None
        self.seed = np.random.SeedSequence().entropy if seed is None else whole_number(seed, "DataLoader: seed")
        self.epoch = 0  # the epoch the next pass yields

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass yield epoch ``epoch`` (counted from 0), as an uninterrupted run's pass
        number ``epoch`` would: ``fit`` calls it before each epoch, so a resumed run continues the order."""
        self.epoch = whole_number(epoch, "DataLoader.set_epoch: epoch")

    def order(self, epoch: int) -> np.ndarray | None:
        """The sample order of epoch ``epoch`` (None without shuffling): a permutation drawn from a
        generator seeded with (seed, epoch), independent of how many epochs ran before."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else None

    def sharded(self, rank: int, size: int) -> DataLoader:
        """The same loader (arrays, batch size, shuffling, seed and next epoch) for one rank of ``size``: see
        ``shard``."""
        if self.shuffle and not self.seeded and size > 1:  # each rank would draw its own random seed
            raise GraphDLError(f"a shuffled DataLoader split over {size} ranks needs a seed, so every rank draws the "
                               "same order (else their shards overlap); pass seed=0 (or any whole number)")
        out = DataLoader(*self.arrays, batch_size=self.batch_size, shuffle=self.shuffle, seed=self.seed,
                         drop_last=self.drop_last, shard=(rank, size))
        out.epoch = self.epoch
        return out

    def __len__(self) -> int:
        per_step = self.batch_size * self.size
        full, rest = divmod(self.n, per_step)
        return full + (0 if self.drop_last or rest < self.size else 1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        order = self.order(self.epoch)
        self.epoch += 1
        per_step = self.batch_size * self.size
        for b in range(len(self)):
            lo, hi = b * per_step, min((b + 1) * per_step, self.n)
            part = (hi - lo) // self.size
            lo, hi = lo + self.rank * part, lo + (self.rank + 1) * part
            if order is None:
                yield tuple(a[lo:hi] for a in self.arrays)
            else:
                idx = order[lo:hi]
                yield tuple(a[idx] for a in self.arrays)


@dataclass(frozen=True)
class Split:
    """A train/test split of features and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction: float = 0.2, seed: int = 0, dtype: str = "float32",
                images: bool = False) -> Split:
    """scikit-learn's bundled 8x8 digits (1,797 samples), scaled to [0, 1], with a fixed split.

    Features are (n, 64), or (n, 1, 8, 8) with ``images=True``; labels are int64. The split is
    stratified by class and fixed by ``seed``. Needs the optional extra: ``pip install graphdl[digits]``.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not 0 <= test_fraction < 1:
        raise GraphDLError(f"load_digits: test_fraction must be a number in [0, 1), got {test_fraction!r:.40}")
    seed = whole_number(seed, "load_digits: seed")
    if dtype not in ("float16", "float32", "float64"):
        raise GraphDLError(f"load_digits: dtype must be 'float16', 'float32' or 'float64', got {dtype!r:.40}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise GraphDLError("load_digits needs scikit-learn: pip install 'graphdl[digits]'") from None
    d = sk_load_digits()
    x = (d.data / 16.0).astype(dtype)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.extend(idx[: round(len(idx) * test_fraction)])
    test = np.zeros(len(y), dtype=bool)
    test[test_idx] = True
    if images:
        x = x.reshape(-1, 1, 8, 8)
    return Split(x[~test], y[~test], x[test], y[test])
