"""Max pooling's kernels on both of their paths (windows moved through ``rows`` by ``Tiles``, or one
strided view per kernel offset) against a plain reference of the documented semantics, bit for bit:
maxima, the index of each window's first maximum, and the gradient routed to it. Data with many ties
(all-zero windows after ReLU, +0.0 against -0.0), NaNs, infinities, padding, ceil_mode, odd sizes,
float32 and float64, batch slices in threads, batch 1, channel-major arrays and views."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from graphdl import threads
from graphdl.ops.pool import _effective
from graphdl.ops.window import Tiles, geometry, offset_slices, out_hw, windows
from graphdl.registry import get_op

# g = inf at a window gives inf * 0 = NaN in the mask product (as the kernels compute it)
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")

# (kernel, stride, padding, ceil_mode, image H x W): tiling windows with short rows (the two-copy path),
# tiling windows with long rows, stride > kernel, overlapping windows, padding, ceil_mode, odd sizes.
GEOMETRIES = [
    ((2, 2), (2, 2), (0, 0, 0, 0), False, (14, 14)),
    ((2, 2), (2, 2), (0, 0, 0, 0), False, (7, 9)),
    ((2, 2), (2, 2), (0, 0, 0, 0), False, (20, 20)),
    ((3, 3), (3, 3), (1, 1, 1, 1), False, (10, 11)),
    ((2, 3), (2, 3), (0, 1, 1, 0), False, (9, 8)),
    ((2, 2), (2, 2), (0, 0, 0, 0), True, (7, 9)),
    ((2, 2), (3, 3), (0, 0, 0, 0), False, (11, 8)),
    ((3, 3), (2, 2), (1, 1, 1, 1), False, (9, 7)),
    ((3, 3), (2, 2), (0, 0, 0, 0), True, (8, 8)),
]
IDS = [f"k{k[0]}x{k[1]}-s{s[0]}x{s[1]}-p{''.join(map(str, p))}{'-ceil' if c else ''}-{h}x{w}"
       for k, s, p, c, (h, w) in GEOMETRIES]


def _attrs(kernel, stride, padding, ceil_mode, training: bool) -> dict:
    return {"kernel": kernel, "stride": stride, "dilation": (1, 1), "padding": padding, "ceil_mode": ceil_mode,
            "training": training}


def _data(rng: np.random.Generator, shape: tuple, dtype) -> np.ndarray:
    """Few distinct values, so windows tie often: ReLU zeros of both signs, NaNs and infinities."""
    x = np.maximum(rng.integers(-3, 3, shape), 0).astype(dtype)
    x[rng.random(shape) < 0.2] = -0.0
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.02] = -np.inf
    x[rng.random(shape) < 0.02] = np.inf
    return x


def _reference(x: np.ndarray, attrs: dict, g: np.ndarray | None = None):
    """Maxima, first-maximum indices and (with ``g``) the gradient, by the documented rule, window by
    window in scan order: the running maximum is np.maximum's (NaN wins), and the index moves to k
    only when x_k is strictly greater than it; the gradient is g times a 0/1 float mask at each
    offset, written into place (added where windows overlap)."""
    eff = _effective(attrs, x.shape)
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(eff)
    ho, wo = out_hw(x.shape, eff)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf)
    win = windows(xp, eff, (ho, wo))[:, 0].reshape(*x.shape[:2], ho, wo, kh * kw)
    best, idx = win[..., 0].copy(), np.zeros((*x.shape[:2], ho, wo), np.int64)
    for k in range(1, kh * kw):
        idx[win[..., k] > best] = k
        best = np.maximum(best, win[..., k])
    if g is None:
        return best, idx
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
    dxp = np.zeros_like(xp)
    for k, (_, _, index) in enumerate(offset_slices(eff, (ho, wo))):
        part = g * (idx == k).astype(x.dtype)
        if disjoint:
            dxp[index] = part
        else:
            dxp[index] += part
    return best, idx, dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]


def _kernel(op: str, attrs: dict, in_shapes: tuple, out_shape, dtype):
    """The op's kernel given byte views of one arena as its workspace, as a plan binds it."""
    opdef = get_op(op)
    declared = opdef.workspace(attrs, in_shapes, out_shape, dtype)
    arena = [np.empty(math.prod(s) * np.dtype(d).itemsize + 64, np.uint8)[64:] for s, d in declared]
    return opdef.kernel(attrs, in_shapes, out_shape, dtype, workspace=arena), declared


def _pool(x: np.ndarray, attrs: dict):
    shape = get_op("max_pool2d").shape((x.shape,), attrs)[0]
    index = np.uint8 if math.prod(attrs["kernel"]) < 256 else np.int64
    kernel, _ = _kernel("max_pool2d", attrs, (x.shape,), (shape, shape), (x.dtype, np.dtype(index)))
    out, idx = np.full(shape, 7, x.dtype), np.full(shape, 7, index)
    kernel(x, out, idx)
    return out, idx


def _grad(g: np.ndarray, x: np.ndarray, idx: np.ndarray | None, attrs: dict) -> np.ndarray:
    ins = (g, x) if idx is None else (g, x, idx)
    kernel, _ = _kernel("max_pool2d_grad", attrs, tuple(a.shape for a in ins), x.shape, x.dtype)
    dx = np.full(x.shape, 7, x.dtype)
    kernel(*ins, dx)
    return dx


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaNs, signed zeros); indices compared as integers."""
    if a.dtype.kind in "iu":
        return np.array_equal(a.astype(np.int64), b.astype(np.int64))
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.fixture(params=["rows", "offsets"])
def path(request, monkeypatch) -> str:
    """Each test runs with the two-copy path wherever windows tile x with short rows (small outputs
    included), then with one strided view per offset everywhere."""
    if request.param == "offsets":
        monkeypatch.setattr(Tiles, "MAX_WO", 0)
    else:
        monkeypatch.setattr(Tiles, "MIN_SIZE", 0)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil_mode", "hw"), GEOMETRIES, ids=IDS)
def test_max_pool_and_its_gradient_match_the_reference_bit_for_bit(path, kernel, stride, padding, ceil_mode, hw,
                                                                    dtype) -> None:
    rng = np.random.default_rng(hash((kernel, stride, padding, ceil_mode, hw)) % 2**32)
    x = _data(rng, (3, 4, *hw), dtype)
    train, infer = _attrs(kernel, stride, padding, ceil_mode, True), _attrs(kernel, stride, padding, ceil_mode, False)
    best, idx = _pool(x, train)
    g = rng.standard_normal(best.shape).astype(dtype)
    g[rng.random(g.shape) < 0.3] *= -1.0
    g.flat[::17] = np.inf  # g * 0 is NaN: the whole window's gradient is NaN, as the mask product gives
    ref_best, ref_idx, ref_dx = _reference(x, train, g)
    assert _same(best, ref_best) and _same(idx, ref_idx)
    inferred, zeros = _pool(x, infer)
    assert _same(inferred, ref_best) and not zeros.any()
    assert _same(_grad(g, x, idx, train), ref_dx)  # from the saved indices
    assert _same(_grad(g, x, None, infer), ref_dx)  # scanning x again (inference plans)


def test_the_two_copy_path_is_taken_for_short_rows_of_large_outputs_only() -> None:
    attrs = _attrs((2, 2), (2, 2), (0, 0, 0, 0), False, True)
    assert Tiles.fit(attrs, (64, 64, 7, 7)) and Tiles.fit(attrs, (1, 2048, 4, Tiles.MAX_WO))
    assert not Tiles.fit(attrs, (64, 64, 14, Tiles.MAX_WO + 1))
    assert not Tiles.fit(attrs, (1, 64, 7, 7))  # batch 1: the extra calls cost more than they save
    assert not Tiles.fit({**attrs, "stride": (3, 3)}, (64, 64, 7, 7))  # gaps between windows
    assert not Tiles.fit({**attrs, "dilation": (2, 2), "stride": (4, 4)}, (64, 64, 7, 7))
    _, declared = _kernel("max_pool2d", attrs, ((16, 64, 14, 14),), ((16, 64, 7, 7),) * 2, (np.float32, np.uint8))
    assert ((16, 64, 7, 14), np.float32) in declared  # the rows buffer: one kernel row of every window
    _, declared = _kernel("max_pool2d", attrs, ((16, 64, 28, 28),), ((16, 64, 14, 14),) * 2,
                          (np.float32, np.uint8))
    assert all(s != (16, 64, 14, 28) for s, _ in declared)


@pytest.mark.parametrize("hw", [(14, 14), (28, 28)])
def test_batch_slices_in_threads_batch_one_and_channel_major_arrays_give_the_same_bits(path, hw, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    attrs = _attrs((2, 2), (2, 2), (0, 0, 0, 0), False, True)
    x = _data(rng, (5, 6, *hw), np.float32)
    best, idx, dx = _reference(x, attrs, g := rng.standard_normal((5, 6, hw[0] // 2, hw[1] // 2)).astype(np.float32))
    monkeypatch.setattr(threads, "SPLIT_MIN", 1)  # kernels built now cut the batch over the threads
    got_best, got_idx = _pool(x, attrs)
    assert _same(got_best, best) and _same(got_idx, idx) and _same(_grad(g, x, got_idx, attrs), dx)
    for n in range(5):  # batch 1 (never split)
        b, i = _pool(x[n:n + 1], attrs)
        assert _same(b, best[n:n + 1]) and _same(i, idx[n:n + 1])
        assert _same(_grad(g[n:n + 1], x[n:n + 1], i, attrs), dx[n:n + 1])
    # (C, N) instead of (N, C): pooling is per plane, so a channel-major copy gives the transposed result,
    # and so does a transposed view (rows still contiguous)
    cn = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    for arr in (cn, cn.transpose(1, 0, 2, 3).transpose(1, 0, 2, 3), x.transpose(1, 0, 2, 3)):
        b, i = _pool(arr, attrs)
        assert _same(b, best.transpose(1, 0, 2, 3)) and _same(i, idx.transpose(1, 0, 2, 3))
        assert _same(_grad(np.ascontiguousarray(g.transpose(1, 0, 2, 3)), arr, i, attrs), dx.transpose(1, 0, 2, 3))


def test_images_whose_rows_are_not_contiguous_take_the_offset_path() -> None:
    rng = np.random.default_rng(4)
    attrs = _attrs((2, 2), (2, 2), (0, 0, 0, 0), False, True)
    base = _data(rng, (2, 3, 14, 14), np.float32)
    x = base.transpose(0, 1, 3, 2)  # W is not the contiguous axis: no runs of a row to copy
    assert not Tiles.fits(x)
    best, idx = _pool(x, attrs)
    ref_best, ref_idx = _reference(np.ascontiguousarray(x), attrs)
    assert _same(best, ref_best) and _same(idx, ref_idx)


@pytest.mark.parametrize("hw", [(14, 14), (28, 28)])
def test_kernels_allocate_nothing_but_their_declared_workspace(path, hw, monkeypatch) -> None:
    monkeypatch.setattr(threads, "SPLIT_MIN", None)  # one thread: each of two may fill its own ufunc buffers
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 32, *hw)).astype(np.float32)
    pooled = (64, 32, hw[0] // 2, hw[1] // 2)  # its smallest array (a bool mask) has 100 KB
    runs = []
    for training in (True, False):
        attrs = _attrs((2, 2), (2, 2), (0, 0, 0, 0), False, training)
        pool, _ = _kernel("max_pool2d", attrs, (x.shape,), (pooled, pooled), (np.float32, np.uint8))
        out, idx = np.empty(pooled, np.float32), np.empty(pooled, np.uint8)
        runs.append(lambda pool=pool, out=out, idx=idx: pool(x, out, idx))
    g, idx, dx = np.ones(pooled, np.float32), rng.integers(0, 4, pooled).astype(np.uint8), np.empty_like(x)
    grad, _ = _kernel("max_pool2d_grad", _attrs((2, 2), (2, 2), (0, 0, 0, 0), False, True),
                      (pooled, x.shape, pooled), x.shape, np.float32)
    runs.append(lambda: grad(g, x, idx, dx))
    for run in runs:
        run()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            run()
            peak = tracemalloc.get_traced_memory()[1] - start
        finally:
            tracemalloc.stop()
        # NumPy's ufunc iteration buffers (up to ~40 KB, a ufunc reading a strided view) are all a
        # call may allocate
        assert peak < 48 * 1024, f"a pooling kernel allocated {peak} bytes"


def test_pooled_input_dies_at_the_forward_when_the_gradient_reads_saved_indices() -> None:
    """max_pool2d_grad reads x only for its shape when given the forward's indices, so the pooled input
    (the largest activation of a CNN) is freed after the pooling step: the CNN arena shrinks."""
    import graphdl as gd
    from passes import specialize

    with gd.Graph("cnn", seed=0):
        x = gd.placeholder("x", (None, 1, 12, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.MaxPool2D(2, name="pool")(gd.layers.Conv2D(1, 4, 3, padding=1, name="conv")(x))
        h = gd.layers.Flatten(name="flat")(gd.layers.BatchNorm2D(4, name="bn")(h))
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(gd.layers.Linear(4 * 36, 3, name="fc")(h), y)
    train = gd.compile([loss], gd.optim.SGD(0.1))
    plan = specialize(train.ir, {"x": (8, 1, 12, 12), "y": (8,)})
    steps = [s.node for s in plan.steps]
    assert plan.live_ranges["conv"][1] == steps.index("pool")  # read by the gradient for its shape only
    grad = next(n for n in train.ir.nodes if n.op == "max_pool2d_grad")
    assert grad.inputs[1] == "conv" and len(grad.inputs) == 3
    shape_only = get_op("max_pool2d_grad").shape_only
    assert shape_only(grad.attr, 3) == (1,)
    assert shape_only(grad.attr, 2) == () and shape_only({**grad.attr, "training": False}, 3) == ()  # x scanned
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((8, 1, 12, 12)).astype(np.float32), "y": rng.integers(0, 3, 8)}
    losses = [float(train.run(feeds)[0]) for _ in range(3)]
    assert losses[2] < losses[0]


@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil_mode", "hw"), GEOMETRIES, ids=IDS)
def test_the_gradient_routes_g_as_declared(path, kernel, stride, padding, ceil_mode, hw) -> None:
    """max_pool2d_grad's ``routes``: where it says g is routed, each plane of the gradient sums to the
    plane of g (simplify_algebra then sums g for a bias gradient), windows of -inf and NaN included;
    where padding can come first in a window it says nothing, since g there may be dropped."""
    rng = np.random.default_rng(5)
    attrs = _attrs(kernel, stride, padding, ceil_mode, True)
    x = rng.integers(-3, 3, (2, 3, *hw)).astype(np.float64)
    x[0, 0] = -np.inf  # whole planes of -inf and NaN: every window ties at position 0
    x[0, 1] = np.nan
    best, idx = _pool(x, attrs)
    g = rng.standard_normal(best.shape)
    dx = _grad(g, x, idx, attrs)
    route = get_op("max_pool2d_grad").routes(attrs)
    conserved = np.allclose(dx.sum(axis=(2, 3)), g.sum(axis=(2, 3)), rtol=1e-12, atol=1e-12)
    if route is not None:
        assert route == (0, 2) and conserved
    else:
        assert padding[0] or padding[2]
        assert not conserved  # g at the -inf and NaN windows' padded first positions is dropped
