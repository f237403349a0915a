"""resize2d (gd.ops.interpolate, layers.Upsample) against PyTorch's F.interpolate: values and input
gradients for every mode, sizes and scale factors up and down, in float64 and float32; steps allocate
nothing; misuse is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODES = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True)]
SPECS = [{"scale_factor": 2}, {"scale_factor": (1.5, 0.7)}, {"scale_factor": 3.3}, {"size": (9, 3)},
         {"size": (2, 2)}, {"size": (1, 1)}, {"size": (4, 5)}]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode, align_corners", MODES)
def test_interpolate_matches_pytorch(mode: str, align_corners: bool | None, dtype: str) -> None:
    rng = np.random.default_rng(0)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for spec in SPECS:
        xv = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
        with gd.Graph("resize", dtype=dtype):
            x = gd.placeholder("x", (None, 3, 4, 5), dtype=dtype)
            y = gd.ops.interpolate(x, mode=mode, align_corners=align_corners, **spec)
            w = rng.standard_normal((2, *y.shape[1:])).astype(dtype)
            (dx,) = gd.grad(gd.ops.sum(y * gd.constant(w)), [x])
        out, grad = gd.compile([y, dx]).run({x: xv})
        tx = torch.tensor(xv, requires_grad=True)
        ty = F.interpolate(tx, mode=mode, align_corners=align_corners, **spec)
        (ty * torch.tensor(w)).sum().backward()
        assert out.shape == tuple(ty.shape), spec
        np.testing.assert_allclose(out, ty.detach().numpy(), rtol=0, atol=tol, err_msg=str(spec))
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=0, atol=10 * tol, err_msg=str(spec))


def test_a_training_step_with_upsampling_allocates_nothing() -> None:
    """The scratch rows and run sums are planned buffers: the steady-state step allocates nothing."""
    import tracemalloc

    with gd.Graph("unet", seed=0):
        x = gd.placeholder("x", (None, 2, 6, 6))
        h = gd.layers.Conv2D(2, 4, 3, padding=1)(gd.layers.MaxPool2D(2)(x))
        up = gd.layers.Upsample(scale_factor=2, mode="bilinear")(h)
        loss = gd.losses.MSE()(up, gd.placeholder("t", (None, 4, 6, 6)))
    train = gd.compile([loss], optimizer=gd.optim.SGD(0.1))
    feeds = {"x": np.ones((3, 2, 6, 6), "float32"), "t": np.zeros((3, 4, 6, 6), "float32")}
    for _ in range(3):
        train.run(feeds, copy=False)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    train.run(feeds, copy=False)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename") if s.size_diff > 0)
    tracemalloc.stop()
    assert grown < 4096, grown


def test_resize_mistakes_are_named() -> None:
    with gd.Graph("bad"):
        x = gd.placeholder("x", (None, 3, 4, 4))
        with pytest.raises(gd.GraphError, match="either size or scale_factor"):
            gd.ops.interpolate(x)
        with pytest.raises(gd.GraphError, match="align_corners only applies to mode 'bilinear'"):
            gd.ops.interpolate(x, scale_factor=2, align_corners=True)
        with pytest.raises(gd.GraphError, match="mode must be one of"):
            gd.layers.Upsample(scale_factor=2, mode="bicubic")
        with pytest.raises(gd.GraphError, match=r"known H and W, got 'v'"):
            gd.ops.interpolate(gd.placeholder("v", (None, 3, None, 4)), size=2)
        with pytest.raises(gd.GraphError, match="makes 'x' .* empty"):
            gd.ops.interpolate(x, scale_factor=0.1)
        # a model file's attributes must agree with each other (the scale sets the coordinate mapping)
        with pytest.raises(gd.ShapeError, match=r"scale_h=1e-300 does not give size 8 from 4"):
            x.graph.apply("resize2d", [x], {"size": (8, 8), "scale_h": 1e-300, "scale_w": 2.0})
