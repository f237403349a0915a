"""Ten optimizer steps against torch.optim from the same initial weights, in float64 (1e-10 relative)."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.optim import SGD, AdaGrad, Adam, AdamW, CosineLR, ExponentialLR, RMSProp, StepLR

torch = pytest.importorskip("torch")

RTOL = 1e-10


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.standard_normal((8, 5)), rng.integers(0, 3, 8)


def _graphdl_steps(opt: gd.optim.Optimizer, steps: int = 10) -> tuple[dict[str, np.ndarray], list[float]]:
    x, y = _data()
    with gd.Graph("opt", dtype="float64", seed=3) as g:
        xi = gd.placeholder("x", (None, 5))
        yi = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.Tanh()(gd.layers.Linear(5, 4, name="fc1")(xi))
        loss = gd.losses.SoftmaxCrossEntropy()(gd.layers.Linear(4, 3, name="fc2")(h), yi)
    initial = {k: v.copy() for k, v in g.parameters().items()}
    train = gd.compile([loss], optimizer=opt)
    losses = [float(train.run({xi: x, yi: y})[0]) for _ in range(steps)]
    final = {k: v.copy() for k, v in train.parameters().items()}
    return initial | {f"final/{k}": v for k, v in final.items()}, losses


def _torch_steps(initial: dict[str, np.ndarray], make_opt, make_sched=None, clip: float | None = None,
                 steps: int = 10) -> tuple[dict[str, np.ndarray], list[float]]:
    x, y = _data()
    params = {k: torch.tensor(initial[k], requires_grad=True) for k in ("fc1.W", "fc1.b", "fc2.W", "fc2.b")}
    opt = make_opt(list(params.values()))
    sched = make_sched(opt) if make_sched else None
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        h = torch.tanh(torch.tensor(x) @ params["fc1.W"] + params["fc1.b"])
        loss = torch.nn.functional.cross_entropy(h @ params["fc2.W"] + params["fc2.b"], torch.tensor(y))
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
        opt.step()
        if sched:
            sched.step()
        losses.append(loss.item())
    return {k: v.detach().numpy() for k, v in params.items()}, losses


CASES = [
    ("sgd", SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1), None),
    ("sgd-momentum-wd", SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01), None),
    ("sgd-nesterov", SGD(lr=0.05, momentum=0.8, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True), None),
    ("adam", Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01), None),
    ("adam-wd", Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), None),
    ("adamw", AdamW(lr=0.01), lambda p: torch.optim.AdamW(p, lr=0.01), None),
    ("adamw-wd", AdamW(lr=0.02, weight_decay=0.3), lambda p: torch.optim.AdamW(p, lr=0.02, weight_decay=0.3), None),
    ("rmsprop", RMSProp(lr=0.01), lambda p: torch.optim.RMSprop(p, lr=0.01), None),
    ("rmsprop-momentum-centered-wd", RMSProp(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1), None),
    ("adagrad", AdaGrad(lr=0.1), lambda p: torch.optim.Adagrad(p, lr=0.1), None),
    ("adagrad-decay-wd", AdaGrad(lr=0.1, lr_decay=0.05, weight_decay=0.1),
     lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.05, weight_decay=0.1), None),
    ("sgd-steplr", SGD(lr=0.2, momentum=0.5, schedule=StepLR(step_size=3, gamma=0.5)),
     lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    ("adam-exponential", Adam(lr=0.05, schedule=ExponentialLR(gamma=0.8)),
     lambda p: torch.optim.Adam(p, lr=0.05), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8)),
    ("sgd-cosine", SGD(lr=0.3, schedule=CosineLR(total_steps=10, eta_min=0.01)),
     lambda p: torch.optim.SGD(p, lr=0.3), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.01)),
    ("adamw-cosine-warmup", AdamW(lr=0.05, schedule=CosineLR(total_steps=10, warmup_steps=3)),
     lambda p: torch.optim.AdamW(p, lr=0.05),
     lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: (t + 1) / 3 if t < 3 else
                                                 0.5 * (1 + np.cos(np.pi * (t - 3) / 7)))),
]


@pytest.mark.parametrize(("opt", "make_opt", "make_sched"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ten_steps_match_torch(opt, make_opt, make_sched) -> None:
    ours, our_losses = _graphdl_steps(opt)
    theirs, their_losses = _torch_steps(ours, make_opt, make_sched)
    np.testing.assert_allclose(our_losses, their_losses, rtol=RTOL)
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[f"final/{k}"], v, rtol=RTOL, atol=1e-14, err_msg=k)


def test_global_norm_clipping_matches_torch() -> None:
    opt = SGD(lr=0.5, momentum=0.9, clip_norm=0.05)
    ours, our_losses = _graphdl_steps(opt)
    theirs, their_losses = _torch_steps(ours, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9), clip=0.05)
    np.testing.assert_allclose(our_losses, their_losses, rtol=RTOL)
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[f"final/{k}"], v, rtol=RTOL, atol=1e-14, err_msg=k)
