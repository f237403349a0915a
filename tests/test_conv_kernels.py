"""conv2d and its two gradient kernels against a direct NumPy reference, on both im2col paths
(same-size stride-1 runs, and the general strided one), with workspace full of stale values as the
arena leaves it, and called twice (a kernel must not depend on what its last call left behind)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphdl.ops import conv
from graphdl.registry import get_op


def _attrs(k: tuple, stride: int = 1, pad: tuple = (0, 0, 0, 0), dil: int = 1, groups: int = 1) -> dict:
    return {"kernel": k, "stride": (stride, stride), "padding": pad, "dilation": (dil, dil), "groups": groups}


def reference(x: np.ndarray, w: np.ndarray, attrs: dict) -> np.ndarray:
    """Cross-correlation by one einsum per kernel offset over a zero-padded copy."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = (attrs["kernel"], attrs["stride"], attrs["dilation"],
                                                      attrs["padding"])
    g = attrs["groups"]
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    co = w.shape[0]
    out = np.zeros((n, co, ho, wo))
    for gi in range(g):
        cin = slice(gi * c // g, (gi + 1) * c // g)
        cout = slice(gi * co // g, (gi + 1) * co // g)
        for i in range(kh):
            for j in range(kw):
                win = xp[:, cin, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
                out[:, cout] += np.einsum("nchw,oc->nohw", win, w[cout, :, i, j])
    return out


def _run(op: str, attrs: dict, inputs: list[np.ndarray], out_shape: tuple) -> np.ndarray:
    """The op's kernel with its declared workspace prefilled with NaN (stale arena bytes), run twice."""
    opdef = get_op(op)
    shapes, dtype = tuple(a.shape for a in inputs), inputs[0].dtype
    declared = opdef.workspace(attrs, shapes, out_shape, dtype)
    ws = [np.full(math.prod(s), np.nan, np.dtype(d)) for s, d in declared]
    kernel = opdef.kernel(attrs, shapes, out_shape, dtype, workspace=ws)
    out = np.full(out_shape, np.nan, dtype)
    kernel(*inputs, out)
    out[...] = np.nan
    kernel(*inputs, out)
    return out


GEOMETRIES = [
    ((2, 3, 5, 6), 4, _attrs((3, 3), pad=(1, 1, 1, 1))),                     # same size: runs
    ((1, 1, 7, 4), 2, _attrs((3, 3), pad=(1, 1, 1, 1))),                     # batch 1, one channel
    ((3, 2, 6, 5), 3, _attrs((5, 5), pad=(2, 2, 2, 2))),                     # wider shifts
    ((2, 2, 7, 7), 3, _attrs((3, 3), pad=(2, 2, 2, 2), dil=2)),              # dilated, same size
    ((2, 2, 4, 5), 2, _attrs((2, 2), pad=(0, 1, 1, 0))),                     # even kernel, asymmetric pad
    ((2, 4, 5, 5), 6, _attrs((3, 3), pad=(1, 1, 1, 1), groups=2)),           # groups, same size
    ((2, 3, 1, 1), 2, _attrs((3, 3), pad=(1, 1, 1, 1))),                     # 1x1 image: every shift leaves it
    ((2, 1, 6, 5), 12, _attrs((3, 3), pad=(1, 1, 1, 1))),                    # Cout > K: dW as g @ columns^T
    ((2, 3, 5, 6), 4, _attrs((3, 3))),                                       # valid: general path
    ((2, 2, 7, 6), 9, _attrs((2, 2), 2)),                                    # strided, Cout > K
    ((1, 4, 7, 5), 6, _attrs((3, 2), 2, (1, 1, 0, 1), groups=2)),            # strided: general path
]


def _check_against_reference(x_shape: tuple, co: int, attrs: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((co, x_shape[1] // attrs["groups"], *attrs["kernel"]))
    b = rng.standard_normal(co)
    y = reference(x, w, attrs)
    np.testing.assert_allclose(_run("conv2d", attrs, [x, w, b], y.shape), y + b[None, :, None, None], atol=1e-12)
    g = rng.standard_normal(y.shape)
    # the gradients by the adjoint identities <g, conv(x, w)> = <dx, x> = <dw, w>, checked per element
    # against the reference through unit vectors would be slow; compare with the exact linear maps instead
    jac_x = np.stack([reference(e.reshape(x.shape), w, attrs).ravel() for e in np.eye(x.size)], axis=1)
    jac_w = np.stack([reference(x, e.reshape(w.shape), attrs).ravel() for e in np.eye(w.size)], axis=1)
    dx = _run("conv2d_input_grad", attrs, [g, w, x], x.shape)
    dw = _run("conv2d_weight_grad", attrs, [x, g], w.shape)
    np.testing.assert_allclose(dx.ravel(), jac_x.T @ g.ravel(), atol=1e-12)
    np.testing.assert_allclose(dw.ravel(), jac_w.T @ g.ravel(), atol=1e-12)


@pytest.mark.parametrize("blas", [True, False], ids=["bias-in-gemm", "bias-added"])
@pytest.mark.parametrize("x_shape,co,attrs", GEOMETRIES)
def test_conv_kernels_match_reference(x_shape: tuple, co: int, attrs: dict, blas: bool, monkeypatch) -> None:
    if not blas:  # the forward adds the bias in its transposing copy, as without NumPy's OpenBLAS
        monkeypatch.setattr(conv, "has_blas", lambda dtype: False)
    _check_against_reference(x_shape, co, attrs)


@pytest.mark.parametrize("blas", [True, False], ids=["bias-in-gemm", "bias-added"])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("x_shape,co,attrs", [((5, *s[1:]), co, a) for s, co, a in GEOMETRIES])
def test_conv_kernels_split_over_threads_match_reference(x_shape: tuple, co: int, attrs: dict, threads: int,
                                                         blas: bool, monkeypatch) -> None:
    """Batch slices in 2 or 3 threads (from any size on), each weight-gradient slice into its own partial."""
    import graphdl as gd

    monkeypatch.setattr(gd.threads, "SPLIT_MIN", 1)
    monkeypatch.setattr(gd.threads, "MAX_PARTS", 3)
    if not blas:
        monkeypatch.setattr(conv, "has_blas", lambda dtype: False)
    seen = []
    split = gd.threads.split_in_parts
    monkeypatch.setattr(gd.threads, "split_in_parts", lambda fn, n, k: (seen.append(k), split(fn, n, k)))
    with gd.num_threads(threads):
        _check_against_reference(x_shape, co, attrs)
    assert seen and set(seen) == {threads}


@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (2, 3), (16, 17)], ids=["one", "2x2", "2x3", "int64-index"])
def test_max_pool_training_indices_are_each_windows_first_maximum(kernel: tuple) -> None:
    """The saved argmax (kernel scan order) for windows of 4 and of 272 > 255 offsets (int64 indices)."""
    kh, kw = kernel
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, (2, 3, 2 * kh, 2 * kw)).astype(np.float64)  # many ties: the first one counts
    attrs = {**_attrs(kernel, pad=(0, 0, 0, 0)), "stride": kernel, "training": True}
    op = get_op("max_pool2d")
    shapes = op.shape((x.shape,), attrs)
    dtypes = op.dtype((np.dtype(np.float64),), attrs)
    out, idx = np.empty(shapes[0]), np.empty(shapes[1], dtypes[1])
    op.kernel(attrs, (x.shape,), shapes, tuple(np.dtype(d) for d in dtypes))(x, out, idx)
    windows = x.reshape(2, 3, 2, kh, 2, kw).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 2, 2, kh * kw)
    np.testing.assert_array_equal(out, windows.max(-1))
    np.testing.assert_array_equal(idx, windows.argmax(-1))


def _cnn(pool: dict, seed: int = 0) -> tuple:
    """A small float64 CNN (two convolutions, two max pools) and its loss's gradients; x is (N, 2, 10, 9)."""
    import graphdl as gd

    with gd.Graph("cnn", dtype="float64", seed=seed):
        x = gd.placeholder("x", (None, 2, 10, 9))
        c1, c2 = gd.layers.Conv2D(2, 4, 3, padding=1), gd.layers.Conv2D(4, 3, 2)
        h = gd.layers.MaxPool2D(**pool)(gd.ops.relu(c1(x)))
        p = gd.layers.MaxPool2D(2, stride=1)(c2(h))
        loss = gd.ops.sum(p * p)
        grads = gd.grad(loss, [x, *c1.params.values(), *c2.params.values()])
    return gd.compile([loss, *grads]), gd.compile([p])


@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)],
                         ids=["tiled", "overlapping-padded", "stride1"])
def test_cnn_split_over_threads_equals_one_thread(pool: dict, monkeypatch) -> None:
    """A CNN's forward and gradients (conv2d, max_pool2d and their gradient kernels split over the batch,
    from any size on) in 2 and 3 threads give the one-thread values; inference plans too."""
    import graphdl as gd

    monkeypatch.setattr(gd.threads, "SPLIT_MIN", 1)
    monkeypatch.setattr(gd.threads, "MAX_PARTS", 3)
    xa = np.random.default_rng(1).standard_normal((5, 2, 10, 9))
    train, infer = _cnn(pool)
    with gd.num_threads(1):
        one = train.run({"x": xa}) + infer.run({"x": xa})
    for k in (2, 3):
        with gd.num_threads(k):
            many = train.run({"x": xa}) + infer.run({"x": xa})
        for a, b in zip(one, many):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_two_cnns_split_over_threads_from_two_user_threads_stay_correct(monkeypatch) -> None:
    """Two executables run at once from two user threads, each kernel splitting its batch over the shared
    worker threads (the BLAS thread count is process-wide): every result equals the one-thread result,
    and BLAS has its two threads back at the end."""
    import threading

    import graphdl as gd

    monkeypatch.setattr(gd.threads, "SPLIT_MIN", 1)
    xa = np.random.default_rng(2).standard_normal((6, 2, 10, 9))
    models = [_cnn(dict(kernel_size=2), seed=0)[0], _cnn(dict(kernel_size=3, stride=2, padding=1), seed=1)[0]]
    with gd.num_threads(1):
        expected = [m.run({"x": xa}) for m in models]
    wrong: list[str] = []

    def work(k: int) -> None:
        for _ in range(15):
            for a, b in zip(models[k].run({"x": xa}), expected[k]):
                if not np.allclose(a, b, rtol=1e-12, atol=1e-12):
                    wrong.append(f"model {k}: max difference {np.abs(a - b).max()}")

    with gd.num_threads(2):
        users = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in users:
            t.start()
        for t in users:
            t.join()
        assert gd.threads.get_num_threads() == 2
    assert not wrong, wrong[:3]
