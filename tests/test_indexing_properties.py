"""Property: a NumPy index (slices with any bounds and steps, ints, None, ..., one integer list or several
side by side, paired elementwise with broadcasting) gives NumPy's result through ``Tensor.__getitem__``, on
known or unknown dimensions, and its gradient scatters back exactly where the entries came from."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdl as gd


@st.composite
def shape_and_key(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple, tuple[bool, ...]]:
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    unknown = list(draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape))))
    key: list = []
    axis = 0
    while axis < len(shape) and draw(st.booleans()):
        kind = draw(st.sampled_from(["slice", "int", "new", "array"]))
        if kind == "new":
            key.append(None)
            continue
        if kind == "array" and shape[axis] > 0 and key and isinstance(key[-1], np.ndarray):
            # a second array right after the first: NumPy pairs them (broadcast); their sizes must be known
            values = st.integers(-shape[axis], shape[axis] - 1)
            first = key[-1]
            length = draw(st.sampled_from([1, first.shape[-1]] if first.shape else [1, 2]))
            key.append(np.array(draw(st.lists(values, min_size=length, max_size=length)), dtype=np.int64))
            unknown[axis] = unknown[axis - 1] = False
        elif kind == "array" and shape[axis] > 0 and not any(isinstance(k, int | list | np.ndarray) for k in key):
            values = st.lists(st.integers(-shape[axis], shape[axis] - 1), max_size=4)
            if draw(st.booleans()):
                key.append(draw(values))
            else:  # an array that may pair with the next entry
                key.append(np.array(draw(values), dtype=np.int64))
        elif kind == "int" and shape[axis] > 0 and not any(isinstance(k, list | np.ndarray) for k in key):
            key.append(draw(st.integers(-shape[axis], shape[axis] - 1)))
        else:
            bound = st.one_of(st.none(), st.integers(-6, 6))
            step = draw(st.one_of(st.none(), st.integers(-3, 3).filter(lambda s: s != 0)))
            key.append(slice(draw(bound), draw(bound), step))
        axis += 1
    if draw(st.booleans()):  # anywhere when every axis is indexed (it stands for none), else last
        key.insert(draw(st.integers(0, len(key))) if axis == len(shape) else len(key), Ellipsis)
    return shape, tuple(key), tuple(unknown)


@settings(max_examples=60, deadline=None)
@given(shape_and_key())
def test_basic_indexing_matches_numpy(case) -> None:
    shape, key, unknown = case
    xv = np.random.default_rng(0).standard_normal(shape)
    with gd.Graph("prop", dtype="float64"):
        x = gd.placeholder("x", tuple(None if u else d for d, u in zip(shape, unknown, strict=True)))
        y = x[key]
        w = gd.constant(np.random.default_rng(1).standard_normal(xv[key].shape))
        (dx,) = gd.grad(gd.ops.sum(y * w), [x])
    assert len(y.shape) == xv[key].ndim
    assert all(d is None or d == e for d, e in zip(y.shape, xv[key].shape, strict=True))
    got, grad = gd.compile([y, dx]).run({x: xv})
    np.testing.assert_array_equal(got, xv[key])
    want = np.zeros_like(xv)
    np.add.at(want, key, w.graph.values[w.name])  # repeated array entries add up
    np.testing.assert_array_equal(grad, want)


@st.composite
def paired_arrays(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple, tuple[bool, ...]]:
    """Two or three integer arrays side by side (broadcasting: (k,) with (1,) or (k,), or (m, 1) with (k,)),
    after leading slices or None, before trailing slices; the batch axis may be unknown if not paired."""
    count = draw(st.integers(2, 3))
    lead = draw(st.integers(0, 1))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=lead + count, max_size=lead + count + 1)))
    unknown = tuple([draw(st.booleans())] * lead + [False] * (len(shape) - lead))
    key: list = [draw(st.sampled_from([slice(None), slice(None, None, -1), slice(1, None)])) for _ in range(lead)]
    if draw(st.booleans()):
        key.insert(0, None)
    k = draw(st.integers(0, 3))
    two_d = draw(st.booleans())
    for j, n in enumerate(shape[lead:lead + count]):
        values = st.integers(-n, n - 1)
        if two_d and j == 0:
            key.append(np.array(draw(st.lists(values, min_size=2, max_size=2)), dtype=np.int64).reshape(2, 1))
        else:
            size = draw(st.sampled_from([1, k]))
            key.append(np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype=np.int64))
    key += [slice(None)] * draw(st.integers(0, len(shape) - lead - count))
    return shape, tuple(key), unknown


@settings(max_examples=60, deadline=None)
@given(paired_arrays())
def test_side_by_side_index_arrays_pair_up_as_in_numpy(case) -> None:
    test_basic_indexing_matches_numpy.hypothesis.inner_test(case)
