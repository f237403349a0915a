"""Optimisers: hyperparameters in small frozen records; ``build`` adds the training step's tail to the plan.

An optimiser does not loop over parameters in Python beside the plan: ``build`` adds a step counter
(state ``optimizer.t``), a ``learning_rate`` node computed from it (the schedule), optionally a
global-norm clipping factor applied to every gradient, then one update node per parameter (with
state nodes for moments) and the counter's increment. The update kernels live in
``graphdl.ops.updates``. All state is saved with the model, so a reloaded training model resumes
exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphdl.builder import Builder, Tensor
from graphdl.errors import GraphDLError
from graphdl.ir import Node, NodeKind, make_attrs

STEP_COUNTER = "optimizer.t"


# -- learning-rate schedules (the step is the number of completed training steps) ------------------
@dataclass(frozen=True)
class StepLR:
    """lr * gamma ** (step // step_size), as PyTorch's StepLR stepped once per training step."""

    step_size: int
    gamma: float = 0.1

    def attrs(self) -> dict[str, Any]:
        return {"schedule": "step", "step_size": self.step_size, "gamma": self.gamma}


@dataclass(frozen=True)
class ExponentialLR:
    """lr * gamma ** step."""

    gamma: float

    def attrs(self) -> dict[str, Any]:
        return {"schedule": "exponential", "gamma": self.gamma}


@dataclass(frozen=True)
class CosineLR:
    """Linear warm-up to lr over ``warmup_steps`` (lr * (step + 1) / warmup_steps), then cosine decay
    to ``eta_min`` at ``total_steps`` (PyTorch's CosineAnnealingLR with T_max = total - warmup), then flat."""

    total_steps: int
    warmup_steps: int = 0
    eta_min: float = 0.0

    def attrs(self) -> dict[str, Any]:
        return {"schedule": "cosine", "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "eta_min": self.eta_min}


Schedule = StepLR | ExponentialLR | CosineLR


def _state(b: Builder, name: str, like: Node, dtype: str | None = None, shape: tuple | None = None) -> Tensor:
    if name in b.nodes:  # a second optimizer build on the same graph (e.g. the step counter) reuses it
        return Tensor(b, name)
    return b.add_node(Node(name, NodeKind.STATE, "state", attrs=make_attrs({"init": "zeros"}),
                           shape=like.shape if shape is None else shape, dtype=dtype or like.dtype,
                           origin=like.origin))


def _unused(b: Builder, p: Tensor) -> Tensor:
    """A 0-d state in place of a moment the update does not use, so each update op has fixed inputs (one
    per parameter: two updates writing one array would have to be ordered)."""
    return _state(b, f"{p.name}/unused", p.node, shape=())


@dataclass(frozen=True)
class ParamGroup:
    """Parameters trained with their own hyperparameters (PyTorch's parameter groups).

    ``params`` holds parameter tensors, layers (all their parameters) or parameter names; ``overrides``
    are fields of the optimizer to change for them, e.g. ``ParamGroup([head], lr=1e-2, weight_decay=0)``.
    """

    params: tuple[Any, ...]
    overrides: tuple[tuple[str, Any], ...] = ()

    def __init__(self, params: Sequence[Any], **overrides: Any) -> None:
        if not isinstance(params, list | tuple):
            raise GraphDLError(f"ParamGroup takes a list of parameters, layers or parameter names, got {params!r:.40}")
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "overrides", tuple(sorted(overrides.items())))

    def names(self) -> list[str]:
        """The parameter names this group covers."""
        out: list[str] = []
        for p in self.params:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, Tensor):
                out.append(p.name)
            elif hasattr(p, "params") and isinstance(p.params, dict):  # a layer
                out.extend(t.name for t in p.params.values())
            else:
                raise GraphDLError(f"ParamGroup takes parameter tensors, layers or names, got {type(p).__name__}")
        return out


def _is_number(value: object) -> bool:
    """A real number (NumPy's too), not a bool and not NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and value == value


def _kind(default: object) -> str:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, tuple):
        return f"a tuple of {len(default)} numbers like {default}"
    return "a number"


@dataclass(frozen=True)
class Optimizer:
    """Base record: the learning rate, an optional schedule and global-norm clipping.

    Subclasses declare ``lr`` and their hyperparameters, and add their update nodes in ``update``.
    ``schedule``, ``clip_norm`` and ``groups`` are keyword-only. ``groups`` is a sequence of
    ``ParamGroup``: their parameters use the group's hyperparameters (learning rate, weight decay, ...),
    all others this optimizer's; the schedule, clipping and step counter are shared.
    """

    schedule: Schedule | None = field(default=None, kw_only=True)
    clip_norm: float | None = field(default=None, kw_only=True)
    groups: tuple[ParamGroup, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, list | tuple):
            raise GraphDLError(f"{type(self).__name__}: groups takes a list of ParamGroup records, got "
                               f"{self.groups!r:.40}")
        object.__setattr__(self, "groups", tuple(self.groups))
        self._check_kinds()
        self.check()
        for g in self.groups:
            if not isinstance(g, ParamGroup):
                raise GraphDLError(f"{type(self).__name__}: groups takes ParamGroup records, got {type(g).__name__}")
            self.for_group(g)  # check the overrides now, not at compile time

    def for_group(self, group: ParamGroup) -> Optimizer:
        """This optimizer with a group's overrides applied (checked like the constructor's arguments)."""
        fields = {f.name for f in dataclasses.fields(self)} - {"groups", "schedule", "clip_norm"}
        bad = sorted(k for k, _ in group.overrides if k not in fields)
        if bad:
            raise GraphDLError(f"{type(self).__name__} has no hyperparameter {bad} to set per group; "
                               f"it has {sorted(fields)}")
        return dataclasses.replace(self, groups=(), **dict(group.overrides))

    def _check_kinds(self) -> None:
        """Each hyperparameter of the kind its default has (a number, a flag, a tuple of numbers), so the
        checks below compare numbers and a wrong kind is named here rather than failing inside them."""
        for f in dataclasses.fields(self):
            default, value = f.default, getattr(self, f.name)
            if f.name in ("schedule", "groups") or default is dataclasses.MISSING or value is default:
                continue
            if f.name == "clip_norm":
                ok = value is None or _is_number(value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool | np.bool_)
            elif isinstance(default, tuple):
                ok = isinstance(value, tuple | list) and len(value) == len(default) and all(map(_is_number, value))
                if ok:
                    object.__setattr__(self, f.name, tuple(value))  # hashable, as the record is
            else:
                ok = _is_number(value)
            if not ok:
                raise GraphDLError(f"{type(self).__name__}: {f.name} must be {_kind(default)}, got {value!r} "
                                   f"({type(value).__name__})")

    @property
    def base_lr(self) -> float:
        return float(self.lr)  # type: ignore[attr-defined]

    def check(self) -> None:
        if self.base_lr <= 0:
            raise GraphDLError(f"{type(self).__name__} needs lr > 0; got {self}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise GraphDLError(f"{type(self).__name__}: clip_norm must be > 0, got {self.clip_norm}")

    def build(self, b: Builder, pairs: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Add counter, learning rate, clipping and update nodes for (param, gradient) pairs."""
        if not pairs:
            return
        first = pairs[0][0].node
        t = _state(b, STEP_COUNTER, first, dtype="int64", shape=())
        schedule = self.schedule.attrs() if self.schedule is not None else {}
        rule: dict[str, Optimizer] = {}
        for group in self.groups:
            opt = self.for_group(group)
            for name in group.names():
                if name in rule:
                    raise GraphDLError(f"parameter '{name}' is in two parameter groups of {type(self).__name__}")
                rule[name] = opt
        unknown = sorted(set(rule) - {p.name for p, _ in pairs})
        if unknown:
            raise GraphDLError(f"{type(self).__name__}: parameter groups name {unknown}, which this training plan "
                               "does not train (not parameters the objective uses, or frozen)")
        lrs: dict[float, Tensor] = {}  # one learning-rate node per distinct base rate

        def lr_node(base: float) -> Tensor:
            if base not in lrs:
                lrs[base] = b.apply("learning_rate", [t], {"lr": base, "dtype": first.dtype, **schedule},
                                    name=b.fresh("optimizer.lr"))
            return lrs[base]

        lr_node(self.base_lr)
        if self.clip_norm is not None:
            pairs = _clip_by_global_norm(b, pairs, self.clip_norm)
        for p, g in pairs:
            opt = rule.get(p.name, self)
            opt.update(b, p, g, lr_node(opt.base_lr), t)
        b.apply("increment", [t], name=b.fresh(f"update/{STEP_COUNTER}"), kind=NodeKind.UPDATE)

    def update(self, b: Builder, p: Tensor, g: Tensor, lr: Tensor, t: Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def _apply(self, b: Builder, op: str, inputs: list[Tensor], attrs: dict[str, Any], p: Tensor) -> None:
        b.apply(op, inputs, attrs, name=f"update/{p.name}", kind=NodeKind.UPDATE)


def _clip_by_global_norm(b: Builder, pairs: Sequence[tuple[Tensor, Tensor]], max_norm: float
                         ) -> list[tuple[Tensor, Tensor]]:
    """Scale every gradient by min(1, max_norm / (norm + 1e-6)), norm over all of them (PyTorch's
    clip_grad_norm_)."""
    total = None
    for _, g in pairs:
        sq = (g * g).sum()
        total = sq if total is None else total + sq
    norm = b.apply("sqrt", [total], name=b.fresh("optimizer.grad_norm"))
    factor = b.apply("minimum", [max_norm / (norm + 1e-6), 1.0], name=b.fresh("optimizer.clip_factor"))
    return [(p, g * factor) for p, g in pairs]


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay (PyTorch's)."""

    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def check(self) -> None:
        super().check()
        if self.momentum < 0 or self.weight_decay < 0:
            raise GraphDLError(f"SGD needs momentum, weight_decay >= 0; got {self}")
        if self.nesterov and self.momentum == 0:
            raise GraphDLError("SGD(nesterov=True) needs momentum > 0")

    def update(self, b: Builder, p: Tensor, g: Tensor, lr: Tensor, t: Tensor) -> None:
        v = _state(b, f"{p.name}/momentum", p.node) if self.momentum else _unused(b, p)
        inputs = [p, g, lr, v]
        self._apply(b, "sgd_update", inputs, {"momentum": self.momentum, "weight_decay": self.weight_decay,
                                              "nesterov": self.nesterov}, p)


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction; ``weight_decay`` is L2 added to the gradient."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    decoupled = False

    def update(self, b: Builder, p: Tensor, g: Tensor, lr: Tensor, t: Tensor) -> None:
        m = _state(b, f"{p.name}/adam_m", p.node)
        v = _state(b, f"{p.name}/adam_v", p.node)
        attrs = {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                 "weight_decay": self.weight_decay, "decoupled": self.decoupled}
        self._apply(b, "adam_update", [p, g, lr, m, v, t], attrs, p)


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay each step."""

    weight_decay: float = 1e-2

    decoupled = True


@dataclass(frozen=True)
class RMSProp(Optimizer):
    """RMSProp as PyTorch's RMSprop: square average with smoothing ``alpha``; optional momentum, centering."""

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False

    def update(self, b: Builder, p: Tensor, g: Tensor, lr: Tensor, t: Tensor) -> None:
        inputs = [p, g, lr, _state(b, f"{p.name}/square_avg", p.node),
                  _state(b, f"{p.name}/momentum", p.node) if self.momentum else _unused(b, p),
                  _state(b, f"{p.name}/grad_avg", p.node) if self.centered else _unused(b, p)]
        attrs = {"alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                 "momentum": self.momentum, "centered": self.centered}
        self._apply(b, "rmsprop_update", inputs, attrs, p)


@dataclass(frozen=True)
class AdaGrad(Optimizer):
    """AdaGrad as PyTorch's Adagrad (accumulator starting at zero)."""

    lr: float = 1e-2
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    eps: float = 1e-10

    def update(self, b: Builder, p: Tensor, g: Tensor, lr: Tensor, t: Tensor) -> None:
        acc = _state(b, f"{p.name}/adagrad_sum", p.node)
        attrs = {"eps": self.eps, "weight_decay": self.weight_decay, "lr_decay": self.lr_decay}
        self._apply(b, "adagrad_update", [p, g, lr, acc, t], attrs, p)
