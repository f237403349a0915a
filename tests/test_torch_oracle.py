"""Every layer and loss against PyTorch in float64: forward output, input and parameter gradients.

Each case builds one layer in graphdl, copies its initial parameters into the PyTorch function, and
compares out and the gradients of sum(out * R) for a fixed random R, to 1e-10 (relative to the
largest entry of PyTorch's value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL = 1e-10


def assert_close(ours: np.ndarray, theirs: Any, what: str) -> float:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    scale = max(float(np.max(np.abs(theirs))), 1e-300) if theirs.size else 1.0
    err = float(np.max(np.abs(ours - theirs))) / scale if theirs.size else 0.0
    assert err <= RTOL, f"{what}: relative error {err:.3g}"
    return err


@dataclass
class Case:
    """``make(x...)`` builds the graphdl layer and applies it; ``ref(params, *x)`` is PyTorch's version."""

    id: str
    inputs: Callable[[np.random.Generator], list[np.ndarray]]
    make: Callable[..., gd.Tensor]
    ref: Callable[..., Any]
    training: bool = False
    kwargs: dict = field(default_factory=dict)


def _normal(*shapes: tuple[int, ...]) -> Callable[[np.random.Generator], list[np.ndarray]]:
    return lambda r: [r.standard_normal(s) for s in shapes]


def check(case: Case) -> dict[str, float]:
    rng = np.random.default_rng(0)
    arrays = case.inputs(rng)
    with gd.Graph("oracle", dtype="float64", seed=1) as g:
        xs = [gd.placeholder(f"x{k}", a.shape, dtype=str(a.dtype)) for k, a in enumerate(arrays)]
        out = case.make(*xs)
        weights = rng.standard_normal(tuple(out.shape))
        objective = gd.ops.sum(out * gd.constant(weights))
    params = g.parameters()
    float_x = [x for x, a in zip(xs, arrays) if a.dtype.kind == "f"]
    wrt = float_x + [g.tensor(p) for p in params]
    grads = gd.grad(objective, wrt)
    exe = gd.compile([out, *grads], training=case.training)
    results = exe.run(dict(zip(xs, arrays)))

    t_x = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    t_p = {k.split(".", 1)[1]: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    t_out = case.ref(t_p, *t_x)
    (t_out * torch.tensor(weights)).sum().backward()
    errors = {"out": assert_close(results[0], t_out, f"{case.id} output")}
    t_grads = [t.grad for t in t_x if t.requires_grad] + [t_p[k.split(".", 1)[1]].grad for k in params]
    for name, ours, theirs in zip([x.name for x in wrt], results[1:], t_grads):
        errors[name] = assert_close(ours, theirs, f"{case.id} gradient of {name}")
    return errors


def _conv(**kw: Any) -> Callable[..., Any]:
    def ref(p: dict, x: Any) -> Any:
        return F.conv2d(x, p["W"], p.get("b"), **kw)

    return ref


LAYERS = [
    Case("linear", _normal((4, 5)), lambda x: L.Linear(5, 3)(x), lambda p, x: x @ p["W"] + p["b"]),
    Case("conv2d", _normal((2, 4, 7, 9)), lambda x: L.Conv2D(4, 6, 3, stride=2, padding=1)(x),
         _conv(stride=2, padding=1)),
    Case("conv2d-same-dilated", _normal((1, 3, 8, 7)), lambda x: L.Conv2D(3, 5, 3, padding="same", dilation=2)(x),
         _conv(padding="same", dilation=2)),
    Case("conv2d-same-even-kernel", _normal((2, 2, 6, 5)), lambda x: L.Conv2D(2, 3, (2, 4), padding="same")(x),
         _conv(padding="same")),
    Case("conv2d-groups-nobias", _normal((3, 4, 6, 6)), lambda x: L.Conv2D(4, 6, (3, 2), padding=(1, 0), groups=2,
                                                                         bias=False)(x),
         _conv(padding=(1, 0), groups=2)),
    Case("conv2d-depthwise-stride", _normal((2, 3, 9, 8)), lambda x: L.Conv2D(3, 3, 3, stride=(2, 3), groups=3)(x),
         _conv(stride=(2, 3), groups=3)),
    Case("maxpool2d", _normal((2, 3, 7, 9)), lambda x: L.MaxPool2D(2)(x), lambda p, x: F.max_pool2d(x, 2)),
    Case("maxpool2d-pad-stride", _normal((1, 2, 9, 8)), lambda x: L.MaxPool2D(3, stride=2, padding=1)(x),
         lambda p, x: F.max_pool2d(x, 3, stride=2, padding=1)),
    Case("avgpool2d", _normal((2, 3, 7, 9)), lambda x: L.AvgPool2D(2)(x), lambda p, x: F.avg_pool2d(x, 2)),
    Case("avgpool2d-pad-stride", _normal((1, 2, 9, 8)), lambda x: L.AvgPool2D(3, stride=2, padding=1)(x),
         lambda p, x: F.avg_pool2d(x, 3, stride=2, padding=1)),
    Case("globalavgpool2d", _normal((2, 3, 5, 4)), lambda x: L.GlobalAvgPool2D()(x), lambda p, x: x.mean((2, 3))),
    Case("flatten", _normal((2, 3, 5, 4)), lambda x: L.Flatten()(x), lambda p, x: torch.flatten(x, 1)),
    Case("reshape", _normal((2, 12)), lambda x: L.Reshape(-1, 3, 4)(x), lambda p, x: x.reshape(-1, 3, 4)),
    Case("concat", _normal((2, 3, 4), (2, 5, 4)), lambda a, b: L.Concat(dim=1)(a, b),
         lambda p, a, b: torch.cat([a, b], 1)),
    Case("batchnorm1d-train", _normal((6, 4)), lambda x: L.BatchNorm1D(4)(x),
         lambda p, x: F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True), training=True),
    Case("batchnorm1d-3d-train", _normal((3, 4, 5)), lambda x: L.BatchNorm1D(4, eps=1e-3)(x),
         lambda p, x: F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=1e-3), training=True),
    Case("batchnorm2d-train", _normal((2, 3, 4, 5)), lambda x: L.BatchNorm2D(3)(x),
         lambda p, x: F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True), training=True),
    Case("batchnorm2d-inference", _normal((2, 3, 4, 5)), lambda x: L.BatchNorm2D(3)(x),
         lambda p, x: F.batch_norm(x, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                                   p["gamma"], p["beta"], training=False)),
    Case("layernorm", _normal((2, 3, 4, 5)), lambda x: L.LayerNorm((4, 5))(x),
         lambda p, x: F.layer_norm(x, (4, 5), p["gamma"], p["beta"])),
    Case("layernorm-noaffine", _normal((3, 6)), lambda x: L.LayerNorm(6, elementwise_affine=False)(x),
         lambda p, x: F.layer_norm(x, (6,))),
    Case("groupnorm", _normal((2, 6, 4, 5)), lambda x: L.GroupNorm(3, 6)(x),
         lambda p, x: F.group_norm(x, 3, p["gamma"], p["beta"])),
    Case("groupnorm-noaffine-1d", _normal((3, 4, 7)), lambda x: L.GroupNorm(2, 4, eps=1e-3, affine=False)(x),
         lambda p, x: F.group_norm(x, 2, eps=1e-3)),
    Case("instancenorm2d-affine", _normal((2, 3, 4, 5)), lambda x: L.InstanceNorm2D(3, affine=True)(x),
         lambda p, x: F.instance_norm(x, weight=p["gamma"], bias=p["beta"])),
    Case("instancenorm1d", _normal((2, 3, 6)), lambda x: L.InstanceNorm1D(3)(x), lambda p, x: F.instance_norm(x)),
    Case("upsample-nearest", _normal((2, 3, 4, 5)), lambda x: L.Upsample(scale_factor=2)(x),
         lambda p, x: F.interpolate(x, scale_factor=2)),
    Case("upsample-bilinear", _normal((2, 3, 4, 5)), lambda x: L.Upsample(size=(7, 3), mode="bilinear")(x),
         lambda p, x: F.interpolate(x, size=(7, 3), mode="bilinear")),
    Case("upsample-bilinear-corners", _normal((1, 2, 4, 5)),
         lambda x: L.Upsample(scale_factor=(1.5, 2.2), mode="bilinear", align_corners=True)(x),
         lambda p, x: F.interpolate(x, scale_factor=(1.5, 2.2), mode="bilinear", align_corners=True)),
    Case("embedding", lambda r: [r.integers(0, 7, (3, 4))], lambda i: L.Embedding(7, 5)(i),
         lambda p, i: F.embedding(i, p["W"])),
    Case("relu", _normal((4, 6)), lambda x: L.ReLU()(x), lambda p, x: F.relu(x)),
    Case("leakyrelu", _normal((4, 6)), lambda x: L.LeakyReLU(0.2)(x), lambda p, x: F.leaky_relu(x, 0.2)),
    Case("elu", _normal((4, 6)), lambda x: L.ELU(1.3)(x), lambda p, x: F.elu(x, 1.3)),
    Case("gelu", _normal((4, 6)), lambda x: L.GELU()(x), lambda p, x: F.gelu(x)),
    Case("gelu-tanh", _normal((4, 6)), lambda x: L.GELU("tanh")(x), lambda p, x: F.gelu(x, approximate="tanh")),
    Case("silu", _normal((4, 6)), lambda x: L.SiLU()(x), lambda p, x: F.silu(x)),
    Case("sigmoid", _normal((4, 6)), lambda x: L.Sigmoid()(x), lambda p, x: torch.sigmoid(x)),
    Case("tanh", _normal((4, 6)), lambda x: L.Tanh()(x), lambda p, x: torch.tanh(x)),
    Case("softplus", lambda r: [r.standard_normal((4, 6)) * 3], lambda x: L.Softplus(beta=2.0, threshold=3.0)(x),
         lambda p, x: F.softplus(x, beta=2.0, threshold=3.0)),
    Case("softmax", _normal((4, 6)), lambda x: L.Softmax(dim=1)(x), lambda p, x: F.softmax(x, 1)),
    Case("logsoftmax", _normal((4, 6)), lambda x: L.LogSoftmax()(x), lambda p, x: F.log_softmax(x, -1)),
    Case("logsoftmax-1e4", lambda r: [r.choice([-1e4, 1e4], (4, 6)) + r.standard_normal((4, 6))],
         lambda x: L.LogSoftmax()(x), lambda p, x: F.log_softmax(x, -1)),
    Case("softmax-1e4", lambda r: [r.choice([-1e4, 1e4], (4, 6)) + r.standard_normal((4, 6))],
         lambda x: L.Softmax()(x), lambda p, x: F.softmax(x, -1)),
]


def _labels(n: int, k: int) -> Callable[[np.random.Generator], list[np.ndarray]]:
    return lambda r: [r.standard_normal((n, k)), r.integers(0, k, n)]


def _probs(r: np.random.Generator) -> list[np.ndarray]:
    p = r.random((5, 4))
    return [r.standard_normal((5, 4)), p / p.sum(1, keepdims=True)]


LOSSES = [
    Case(f"mse-{red}", _normal((5, 3), (5, 3)), lambda p, t, red=red: LS.MSE(red)(p, t),
         lambda _, p, t, red=red: F.mse_loss(p, t, reduction=red)) for red in ("mean", "sum", "none")
] + [
    Case(f"l1-{red}", _normal((5, 3), (5, 3)), lambda p, t, red=red: LS.L1(red)(p, t),
         lambda _, p, t, red=red: F.l1_loss(p, t, reduction=red)) for red in ("mean", "sum", "none")
] + [
    Case("huber", lambda r: [r.standard_normal((6, 3)) * 2, r.standard_normal((6, 3))],
         lambda p, t: LS.Huber(delta=0.7)(p, t), lambda _, p, t: F.huber_loss(p, t, delta=0.7)),
    Case("huber-sum", _normal((6, 3), (6, 3)), lambda p, t: LS.Huber("sum")(p, t),
         lambda _, p, t: F.huber_loss(p, t, reduction="sum")),
] + [
    Case(f"ce-{red}-{eps}", _labels(6, 4), lambda x, y, red=red, eps=eps: LS.SoftmaxCrossEntropy(red, eps)(x, y),
         lambda _, x, y, red=red, eps=eps: F.cross_entropy(x, y, reduction=red, label_smoothing=eps))
    for red in ("mean", "sum", "none") for eps in (0.0, 0.1)
] + [
    Case(f"ce-probs-{red}-{eps}", _probs, lambda x, y, red=red, eps=eps: LS.SoftmaxCrossEntropy(red, eps)(x, y),
         lambda _, x, y, red=red, eps=eps: F.cross_entropy(x, y, reduction=red, label_smoothing=eps))
    for red in ("mean", "none") for eps in (0.0, 0.2)
] + [
    Case(f"nll-{red}", _labels(6, 4), lambda x, y, red=red: LS.NLL(red)(x, y),
         lambda _, x, y, red=red: F.nll_loss(x, y, reduction=red)) for red in ("mean", "sum", "none")
] + [
    Case(f"bce-{red}", lambda r: [r.standard_normal((6, 3)) * 3, r.random((6, 3))],
         lambda x, t, red=red: LS.BinaryCrossEntropyWithLogits(red)(x, t),
         lambda _, x, t, red=red: F.binary_cross_entropy_with_logits(x, t, reduction=red))
    for red in ("mean", "sum", "none")
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", LAYERS, ids=lambda c: c.id)
def test_layer_matches_torch(case: Case) -> None:
    check(case)


@pytest.mark.parametrize("case", LOSSES, ids=lambda c: c.id)
def test_loss_matches_torch(case: Case) -> None:
    check(case)


def test_regularisation_terms_match_torch() -> None:
    with gd.Graph("reg", dtype="float64", seed=2):
        fc1, fc2 = L.Linear(4, 3), L.Linear(3, 2)
        l1 = LS.l1_penalty([fc1.params["W"], fc2.params["W"]], 0.01)
        l2 = LS.l2_penalty([fc1.params["W"], fc2.params["b"]], 0.1)
        grads = gd.grad(l1 + l2, [fc1.params["W"], fc2.params["W"], fc2.params["b"]])
    values = gd.compile([l1, l2, *grads]).run({})
    w1, w2, b2 = (torch.tensor(p.graph.values[p.name], requires_grad=True)
                  for p in (fc1.params["W"], fc2.params["W"], fc2.params["b"]))
    t1 = 0.01 * (w1.abs().sum() + w2.abs().sum())
    t2 = 0.1 * ((w1 * w1).sum() + (b2 * b2).sum())
    (t1 + t2).backward()
    for ours, theirs in zip(values, [t1, t2, w1.grad, w2.grad, b2.grad]):
        assert_close(ours, theirs, "penalty")


def test_batchnorm_running_statistics_match_torch() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((8, 3, 4, 4)) * 2 + 1 for _ in range(3)]
    with gd.Graph("bn", dtype="float64") as g:
        x = gd.placeholder("x", (None, 3, 4, 4))
        bn = L.BatchNorm2D(3, momentum=0.2, name="bn")
        y = bn(x)
    train = gd.compile([y], training=True)
    infer = gd.compile([y])
    ref = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    for b in batches:
        (ours,) = train.run({x: b})
        assert_close(ours, ref(torch.tensor(b)), "training output")
    assert_close(g.state()["bn.running_mean"], ref.running_mean, "running_mean")
    assert_close(g.state()["bn.running_var"], ref.running_var, "running_var")
    ref.eval()
    assert_close(infer.run({x: batches[0]})[0], ref(torch.tensor(batches[0])), "inference output")
