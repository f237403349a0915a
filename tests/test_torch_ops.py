"""The structural ops, conv1d / conv_transpose2d, the new activations and the loss options against
PyTorch in float64: forward output and the gradients of sum(out * R), over one table (zero-size
dimensions and the activations' kinks included)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers as L
from graphdl import losses as LS
from tests import test_torch_oracle as oracle
from tests.test_torch_oracle import Case, _normal, check

torch = pytest.importorskip("torch")
F = torch.nn.functional
ops = gd.ops


def _with_index(x_shape: tuple[int, ...], index_shape: tuple[int, ...], high: int, *more: tuple[int, ...]):
    return lambda r: [r.standard_normal(x_shape), r.integers(0, high, index_shape),
                      *(r.standard_normal(s) for s in more)]


def _unique_index(r: np.random.Generator, n: int, m: int, cols: int) -> np.ndarray:
    return np.stack([r.permutation(n)[:m] for _ in range(cols)], axis=1)


STRUCTURAL = [
    Case("stack", _normal((2, 3), (2, 3), (2, 3)), lambda a, b, c: ops.stack([a, b, c], axis=1),
         lambda p, a, b, c: torch.stack([a, b, c], 1)),
    Case("stack-neg-axis-empty", _normal((0, 3), (0, 3)), lambda a, b: ops.stack([a, b], axis=-1),
         lambda p, a, b: torch.stack([a, b], -1)),
    Case("concat-list-layer", _normal((2, 3, 4), (2, 1, 4)), lambda a, b: L.Concat(dim=1)([a, b]),
         lambda p, a, b: torch.cat([a, b], 1)),
    Case("concat-empty-part", _normal((2, 0), (2, 3)), lambda a, b: ops.concat([a, b], axis=1),
         lambda p, a, b: torch.cat([a, b], 1)),
    Case("squeeze", _normal((3, 1, 4, 1)), lambda x: ops.squeeze(x), lambda p, x: torch.squeeze(x)),
    Case("squeeze-axis", _normal((3, 1, 4, 1)), lambda x: ops.squeeze(x, 3), lambda p, x: torch.squeeze(x, 3)),
    Case("unsqueeze", _normal((3, 4)), lambda x: ops.unsqueeze(x, -1), lambda p, x: torch.unsqueeze(x, -1)),
    Case("expand_dims-two", _normal((3, 4)), lambda x: ops.expand_dims(x, (0, 3)),
         lambda p, x: x[None, :, :, None]),
    Case("flip", _normal((3, 4, 5)), lambda x: ops.flip(x, (0, 2)), lambda p, x: torch.flip(x, (0, 2))),
    Case("flip-empty", _normal((0, 4)), lambda x: ops.flip(x, 1), lambda p, x: torch.flip(x, (1,))),
    Case("roll", _normal((3, 5)), lambda x: ops.roll(x, (7, -1), (1, 0)), lambda p, x: torch.roll(x, (7, -1), (1, 0))),
    Case("roll-flat", _normal((3, 5)), lambda x: ops.roll(x, 4), lambda p, x: torch.roll(x, 4)),
    Case("repeat", _normal((3, 4)), lambda x: ops.repeat(x, 3, 1), lambda p, x: torch.repeat_interleave(x, 3, 1)),
    Case("repeat-counts", _normal((3, 4)), lambda x: ops.repeat(x, (2, 0, 1), 0),
         lambda p, x: torch.repeat_interleave(x, torch.tensor([2, 0, 1]), 0)),
    Case("repeat-flat", _normal((2, 3)), lambda x: ops.repeat(x, 2), lambda p, x: torch.repeat_interleave(x, 2)),
    Case("tile", _normal((2, 3)), lambda x: ops.tile(x, (2, 1, 3)), lambda p, x: x.repeat(2, 1, 3)),
    Case("tile-zero", _normal((2, 3)), lambda x: ops.tile(x, (0, 2)), lambda p, x: x.repeat(0, 2)),
    Case("broadcast_to", _normal((3, 1)), lambda x: ops.broadcast_to(x, (2, 3, 4)), lambda p, x: x.expand(2, 3, 4)),
    Case("tril", _normal((2, 4, 5)), lambda x: ops.tril(x, -1), lambda p, x: torch.tril(x, -1)),
    Case("triu", _normal((4, 3)), lambda x: ops.triu(x, 1), lambda p, x: torch.triu(x, 1)),
    Case("einsum-bmm", _normal((2, 3, 4), (2, 4, 5)), lambda a, b: ops.einsum("bij,bjk->bik", a, b),
         lambda p, a, b: torch.einsum("bij,bjk->bik", a, b)),
    Case("einsum-ellipsis", _normal((2, 3, 4), (4, 5)), lambda a, b: ops.einsum("...ij,jk", a, b),
         lambda p, a, b: torch.einsum("...ij,jk", a, b)),
    Case("einsum-implicit-transpose", _normal((3, 4)), lambda a: ops.einsum("ji", a),
         lambda p, a: torch.einsum("ji", a)),
    Case("einsum-sum-out", _normal((3, 4), (4,)), lambda a, b: ops.einsum("ij,j->", a, b),
         lambda p, a, b: torch.einsum("ij,j->", a, b)),
    Case("einsum-empty", _normal((3, 0), (0, 2)), lambda a, b: ops.einsum("ij,jk->ik", a, b),
         lambda p, a, b: torch.einsum("ij,jk->ik", a, b)),
    Case("gather", _with_index((4, 3), (5, 2), 4), lambda x, i: ops.gather(x, 0, i),
         lambda p, x, i: torch.gather(x, 0, i)),
    Case("gather-dim2", _with_index((2, 3, 4), (2, 3, 6), 4), lambda x, i: ops.gather(x, 2, i),
         lambda p, x, i: torch.gather(x, 2, i)),
    Case("gather-empty", _with_index((4, 3), (0, 3), 4), lambda x, i: ops.gather(x, 0, i),
         lambda p, x, i: torch.gather(x, 0, i)),
    Case("take_along_axis", lambda r: [r.standard_normal((3, 5)), np.argsort(r.standard_normal((3, 5)), 1)],
         lambda x, i: ops.take_along_axis(x, i, 1), lambda p, x, i: torch.take_along_dim(x, i, 1)),
    Case("take_along_axis-broadcast", _with_index((3, 5), (1, 2), 5), lambda x, i: ops.take_along_axis(x, i, 1),
         lambda p, x, i: torch.take_along_dim(x, i, 1)),
    Case("scatter", lambda r: [r.standard_normal((4, 3)), _unique_index(r, 4, 2, 3), r.standard_normal((2, 3))],
         lambda x, i, s: ops.scatter(x, 0, i, s), lambda p, x, i, s: torch.scatter(x, 0, i, s)),
    Case("scatter-value", lambda r: [r.standard_normal((3, 4)), _unique_index(r, 4, 2, 3).T],
         lambda x, i: ops.scatter(x, 1, i, -2.5), lambda p, x, i: torch.scatter(x, 1, i, -2.5)),
    Case("scatter_add", _with_index((4, 3), (6, 3), 4, (6, 3)), lambda x, i, s: ops.scatter_add(x, 0, i, s),
         lambda p, x, i, s: torch.scatter_add(x, 0, i, s)),
    Case("one_hot-times-x", lambda r: [r.standard_normal((3, 5)), r.integers(0, 5, 3)],
         lambda x, i: x * ops.one_hot(i, 5), lambda p, x, i: x * F.one_hot(i, 5)),
]

_PAD = [((1, 2), "constant"), ((1, 2, 2, 0), "constant"), ((2, 3, 1, 2), "reflect"), ((3, 1, 0, 2), "replicate"),
        ((4, 2, 3, 0), "circular"), ((1, 1), "reflect")]
STRUCTURAL += [
    Case(f"pad-{mode}-{p}", _normal((2, 3, 4)), lambda x, p=p, mode=mode: ops.pad(x, p, mode),
         lambda _, x, p=p, mode=mode: F.pad(x, p, mode)) for p, mode in _PAD
] + [
    Case("pad-value", _normal((2, 3)), lambda x: ops.pad(x, (2, 1, 1, 1), value=0.5),
         lambda p, x: F.pad(x, (2, 1, 1, 1), value=0.5)),
    Case("pad-empty", _normal((2, 0)), lambda x: ops.pad(x, (1, 2)), lambda p, x: F.pad(x, (1, 2))),
]


@pytest.mark.parametrize("case", STRUCTURAL, ids=lambda c: c.id)
def test_structural_op_matches_torch(case: Case) -> None:
    check(case)


def test_structural_ops_keep_the_batch_dimension_unknown() -> None:
    with gd.Graph("batch", dtype="float64"):
        x = gd.placeholder("x", (None, 3, 4))
        i = gd.placeholder("i", (None, 2, 4), dtype="int64")
        shapes = {name: t.shape for name, t in {
            "stack": ops.stack([x, x], 1), "flip": ops.flip(x, 0), "pad": ops.pad(x, (1, 1)),
            "gather": ops.gather(x, 1, i), "tile": ops.tile(x, (1, 2, 1)), "einsum": ops.einsum("bij->bji", x),
            "broadcast_to": ops.broadcast_to(ops.unsqueeze(x, 1), (None, 5, 3, 4)),
        }.items()}
    assert shapes == {"stack": (None, 2, 3, 4), "flip": (None, 3, 4), "pad": (None, 3, 6), "gather": (None, 2, 4),
                      "tile": (None, 6, 4), "einsum": (None, 4, 3), "broadcast_to": (None, 5, 3, 4)}


@pytest.mark.parametrize("build, message", [
    (lambda x, i: ops.squeeze(x, 1), r"squeeze at node 'squeeze'.*axis 1 of \(3, 4\).*size is 4"),
    (lambda x, i: ops.pad(x, (4, 0), "reflect"), r"pad at node 'pad'.*smaller than its size 4"),
    (lambda x, i: ops.pad(x, (1, 1), "wrap"), r"pad at node 'pad'.*mode 'wrap'"),
    (lambda x, i: ops.einsum("ii->i", x), r"einsum at node 'einsum'.*repeat a letter"),
    (lambda x, i: ops.einsum("ij,jk->ik", x, x), r"einsum at node 'einsum'.*axis 'j' has size 4.*3"),
    (lambda x, i: ops.gather(x, 0, x), r"gather at node 'gather'.*index must be integers"),
    (lambda x, i: ops.broadcast_to(x, (3, 5)), r"broadcast_to at node 'broadcast_to'.*size 4 is neither 1 nor 5"),
])
def test_structural_mistakes_name_the_node(build: Any, message: str) -> None:
    with gd.Graph("bad"):
        x = gd.placeholder("x", (3, 4))
        i = gd.placeholder("i", (3, 4), dtype="int64")
        with pytest.raises(gd.ShapeError if "integers" not in message else gd.DTypeError, match=message):
            build(x, i)


def test_out_of_range_index_fails_at_run_time_naming_the_node() -> None:
    with gd.Graph("oob", dtype="float64"):
        x = gd.placeholder("x", (3, 2))
        i = gd.placeholder("i", (2, 2), dtype="int64")
        y = ops.gather(x, 0, i)
    exe = gd.compile([y])
    with pytest.raises(gd.ExecutionError, match=r"gather.*out of range"):
        exe.run({x: np.zeros((3, 2)), i: np.array([[0, 3], [1, 2]])})


def _conv1d(**kw: Any) -> Any:
    return lambda p, x: F.conv1d(x, p["W"], p.get("b"), **kw)


def _convt(**kw: Any) -> Any:
    return lambda p, x: F.conv_transpose2d(x, p["W"], p.get("b"), **kw)


CONV = [
    Case("conv1d", _normal((2, 4, 11)), lambda x: L.Conv1D(4, 6, 3)(x), _conv1d()),
    Case("conv1d-s2-pad-dil-g2", _normal((2, 4, 13)), lambda x: L.Conv1D(4, 6, 3, 2, 1, 2, groups=2)(x),
         _conv1d(stride=2, padding=1, dilation=2, groups=2)),
    Case("conv1d-same-nobias", _normal((1, 3, 8)), lambda x: L.Conv1D(3, 2, 4, padding="same", bias=False)(x),
         _conv1d(padding="same")),
    Case("conv_transpose2d", _normal((2, 3, 4, 5)), lambda x: L.ConvTranspose2D(3, 4, 3)(x), _convt()),
    Case("conv_transpose2d-s2-p1-op1", _normal((2, 3, 4, 5)),
         lambda x: L.ConvTranspose2D(3, 4, 3, stride=2, padding=1, output_padding=1)(x),
         _convt(stride=2, padding=1, output_padding=1)),
    Case("conv_transpose2d-g2-dil-nobias", _normal((1, 4, 3, 4)),
         lambda x: L.ConvTranspose2D(4, 6, (2, 3), stride=(2, 1), padding=(0, 1), groups=2, dilation=2,
                                     output_padding=(1, 0), bias=False)(x),
         _convt(stride=(2, 1), padding=(0, 1), groups=2, dilation=2, output_padding=(1, 0))),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", CONV, ids=lambda c: c.id)
def test_conv_layer_matches_torch(case: Case) -> None:
    check(case)


def test_conv_layers_initialise_like_torch() -> None:
    with gd.Graph("init", dtype="float64"):
        c1, ct = L.Conv1D(4, 6, 3, groups=2), L.ConvTranspose2D(4, 6, (2, 3), groups=2)
    t1, tt = torch.nn.Conv1d(4, 6, 3, groups=2), torch.nn.ConvTranspose2d(4, 6, (2, 3), groups=2)
    for ours, theirs in ((c1, t1), (ct, tt)):
        w = ours.graph.values[ours.params["W"].name]
        assert w.shape == tuple(theirs.weight.shape)
        bound = float(1 / np.sqrt(theirs.weight[0].numel()))  # kaiming_uniform(a=sqrt(5)) bound
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


def _with_kinks(r: np.random.Generator) -> list[np.ndarray]:
    """Values across [-8, 8] plus every activation's kink exactly: -3, 0, 3 and 6."""
    x = r.standard_normal((4, 6)) * 4
    x[0, :5] = [-3.0, 0.0, 3.0, 6.0, -0.0]
    return [x]


ACTIVATIONS = [
    Case(name, _with_kinks, lambda x, layer=layer: layer()(x), lambda p, x, fn=fn: fn(x))
    for name, layer, fn in [
        ("relu6", L.ReLU6, F.relu6), ("hardsigmoid", L.Hardsigmoid, F.hardsigmoid),
        ("hardswish", L.Hardswish, F.hardswish), ("selu", L.SELU, F.selu), ("celu", L.CELU, F.celu),
        ("mish", L.Mish, F.mish), ("softsign", L.Softsign, F.softsign), ("logsigmoid", L.LogSigmoid, F.logsigmoid),
    ]
] + [
    Case("celu-alpha", _with_kinks, lambda x: L.CELU(0.6)(x), lambda p, x: F.celu(x, 0.6)),
    Case("logsigmoid-large", lambda r: [np.array([[-800.0, -40.0, 0.0, 40.0, 800.0]])],
         lambda x: ops.logsigmoid(x), lambda p, x: F.logsigmoid(x)),
    Case("softsign-functional", _with_kinks, lambda x: ops.softsign(x), lambda p, x: F.softsign(x)),
]


#: PyTorch's backward kernels for these use float32 constants (1/6 as 0.16666667163, 1/alpha likewise) even
#: in float64; graphdl uses the exact values, so they agree to about 1e-8.
FLOAT32_CONSTANTS = {"hardsigmoid", "celu-alpha"}


@pytest.mark.parametrize("case", ACTIVATIONS, ids=lambda c: c.id)
def test_activation_matches_torch_including_kinks(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.id in FLOAT32_CONSTANTS:
        monkeypatch.setattr(oracle, "RTOL", 1e-7)
    check(case)


_W4 = np.array([0.5, 2.0, 1.0, 1.5])  # per-class weights (4 classes)
_PW3 = np.array([0.5, 3.0, 1.0])  # BCE pos_weight (3 classes)
_T = lambda a: torch.tensor(a)


def _class_data(shape: tuple[int, ...], ignore: int | None = None, probs: bool = False):
    """Logits (N, C, ...) and labels (N, ...) with every third label = ignore, or probabilities."""

    def make(r: np.random.Generator) -> list[np.ndarray]:
        x = r.standard_normal(shape)
        if probs:
            p = r.random(shape)
            return [x, p / p.sum(1, keepdims=True)]
        labels = r.integers(0, shape[1], (shape[0], *shape[2:]))
        if ignore is not None:
            labels.reshape(-1)[::3] = ignore
        return [x, labels]

    return make


LOSS_OPTIONS = [
    Case(f"ce-{red}-w{w}-ig{ig}-ls{ls}", _class_data((6, 4), ig),
         lambda x, y, red=red, w=w, ig=ig, ls=ls: LS.SoftmaxCrossEntropy(
             red, ls, weight=_W4 if w else None, ignore_index=ig)(x, y),
         lambda _, x, y, red=red, w=w, ig=ig, ls=ls: F.cross_entropy(
             x, y, _T(_W4) if w else None, ignore_index=-100 if ig is None else ig, reduction=red, label_smoothing=ls))
    for red in ("mean", "sum", "none") for w in (0, 1) for ig in (None, -100, 2) for ls in (0.0, 0.2)
] + [
    Case(f"ce-kdim-{red}", _class_data((2, 4, 3, 5), -1),
         lambda x, y, red=red: LS.SoftmaxCrossEntropy(red, 0.1, weight=_W4, ignore_index=-1)(x, y),
         lambda _, x, y, red=red: F.cross_entropy(x, y, _T(_W4), ignore_index=-1, reduction=red, label_smoothing=0.1))
    for red in ("mean", "none")
] + [
    Case("ce-kdim-plain", _class_data((3, 4, 5)), lambda x, y: LS.SoftmaxCrossEntropy()(x, y),
         lambda _, x, y: F.cross_entropy(x, y)),
    Case("ce-probs-kdim-weight", _class_data((2, 4, 3), probs=True),
         lambda x, y: LS.SoftmaxCrossEntropy(label_smoothing=0.1, weight=_W4)(x, y),
         lambda _, x, y: F.cross_entropy(x, y, _T(_W4), label_smoothing=0.1)),
    Case("ce-empty-batch-none", _class_data((0, 4)), lambda x, y: LS.SoftmaxCrossEntropy("none", weight=_W4)(x, y),
         lambda _, x, y: F.cross_entropy(x, y, _T(_W4), reduction="none")),
] + [
    Case(f"nll-{red}-kdim", _class_data((3, 4, 5), 0),
         lambda x, y, red=red: LS.NLL(red, weight=_W4, ignore_index=0)(ops.log_softmax(x, 1), y),
         lambda _, x, y, red=red: F.nll_loss(F.log_softmax(x, 1), y, _T(_W4), ignore_index=0, reduction=red))
    for red in ("mean", "sum", "none")
] + [
    Case(f"bce-{red}-pw{pw}-w{w}", lambda r: [r.standard_normal((5, 3)) * 4, r.random((5, 3))],
         lambda x, t, red=red, pw=pw, w=w: LS.BinaryCrossEntropyWithLogits(
             red, pos_weight=_PW3 if pw else None, weight=_PW3[::-1].copy() if w else None)(x, t),
         lambda _, x, t, red=red, pw=pw, w=w: F.binary_cross_entropy_with_logits(
             x, t, _T(_PW3[::-1].copy()) if w else None, reduction=red, pos_weight=_T(_PW3) if pw else None))
    for red in ("mean", "sum", "none") for pw in (0, 1) for w in (0, 1)
]


@pytest.mark.parametrize("case", LOSS_OPTIONS, ids=lambda c: c.id)
def test_loss_option_matches_torch(case: Case) -> None:
    check(case)


def test_ignored_label_outside_the_classes_is_fine_but_others_are_not() -> None:
    with gd.Graph("ce", dtype="float64"):
        x = gd.placeholder("x", (3, 4))
        y = gd.placeholder("y", (3,), dtype="int64")
        loss = LS.SoftmaxCrossEntropy(ignore_index=-100)(x, y)
    exe = gd.compile([loss])
    (value,) = exe.run({x: np.zeros((3, 4)), y: np.array([1, -100, 2])})
    assert np.isclose(value, np.log(4))
    with pytest.raises(gd.ExecutionError, match=r"holds label 7 at index 1, outside \[0, 4\).*ignore_index -100"):
        exe.run({x: np.zeros((3, 4)), y: np.array([1, 7, 2])})
