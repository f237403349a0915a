"""Optimisers: hyperparameters in a small record, update rules as ops that write in place.

An optimiser does not loop over parameters in Python beside the plan: ``build`` adds one update
node per parameter (plus state nodes for moments and the step count) to the graph being compiled,
and the executor runs them as steps of the plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from graphdl.errors import GraphDLError
from graphdl.graph import Builder, Tensor
from graphdl.ir import Node, NodeKind, make_attrs
from graphdl.registry import OpDef, register

STEP_COUNTER = "optimizer.t"


def _no_output(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return ()


def _first_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    return dtypes[0]


def _check_update_shapes(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    from graphdl.registry import fail

    for s in shapes[1:3]:
        if s != shapes[0]:
            fail(f"update of a {shapes[0]} parameter got a {s} gradient or state")
    return ()


def _sgd_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    lr, mom, wd, nesterov = attrs["lr"], attrs["momentum"], attrs["weight_decay"], attrs["nesterov"]
    decayed = np.empty(in_shapes[0], dtype=dtype) if wd else None
    tmp = np.empty(in_shapes[0], dtype=dtype)

    def sgd_update(p: np.ndarray, g: np.ndarray, *velocity: np.ndarray) -> None:
        grad = g
        if decayed is not None:
            np.multiply(p, wd, out=decayed)
            np.add(decayed, g, out=decayed)
            grad = decayed
        step = grad
        if velocity:
            (v,) = velocity
            v *= mom
            v += grad
            step = v
            if nesterov:
                np.multiply(v, mom, out=tmp)
                np.add(tmp, grad, out=tmp)
                step = tmp
        np.multiply(step, lr, out=tmp)
        p -= tmp

    return sgd_update


def _adam_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    lr, b1, b2, eps, wd = attrs["lr"], attrs["beta1"], attrs["beta2"], attrs["eps"], attrs["weight_decay"]
    decoupled = attrs.get("decoupled", False)
    tmp = np.empty(in_shapes[0], dtype=dtype)
    den = np.empty(in_shapes[0], dtype=dtype)

    def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: np.ndarray,
                    ) -> None:
        step = int(t) + 1
        grad = g
        if wd and decoupled:
            p *= 1.0 - lr * wd
        elif wd:
            np.multiply(p, wd, out=tmp)
            np.add(tmp, g, out=tmp)
            grad = tmp
        m *= b1
        np.multiply(grad, 1.0 - b1, out=den)
        m += den
        v *= b2
        np.multiply(grad, grad, out=den)
        np.multiply(den, 1.0 - b2, out=den)
        v += den
        bc1 = 1.0 - b1**step
        bc2 = 1.0 - b2**step
        # PyTorch's form: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        np.sqrt(v, out=den)
        # A Python float: a NumPy float64 scalar would make NumPy cast through a buffer every step.
        np.multiply(den, 1.0 / math.sqrt(bc2), out=den)
        np.add(den, eps, out=den)
        np.divide(m, den, out=tmp)
        np.multiply(tmp, lr / bc1, out=tmp)
        p -= tmp

    return adam_update


def _increment_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def increment(t: np.ndarray) -> None:
        t += 1

    return increment


register(OpDef("sgd_update", _check_update_shapes, _sgd_kernel, dtype=_first_dtype, writes=(0, 2),
               nondiff=(0, 1, 2), label_attrs=("lr", "momentum")))
register(OpDef("adam_update", _check_update_shapes, _adam_kernel, dtype=_first_dtype, writes=(0, 2, 3),
               nondiff=(0, 1, 2, 3, 4), label_attrs=("lr",)))
register(OpDef("increment", _no_output, _increment_kernel, dtype=_first_dtype, writes=(0,), arity=1,
               nondiff=(0,)))


def _state(b: Builder, name: str, like: Node, dtype: str | None = None, shape: tuple | None = None) -> Tensor:
    return b.add_node(Node(name, NodeKind.STATE, "state", attrs=make_attrs({"init": "zeros"}),
                           shape=like.shape if shape is None else shape, dtype=dtype or like.dtype,
                           origin=like.origin))


@dataclass(frozen=True)
class Optimizer:
    """Base record: subclasses give hyperparameters and add their update nodes in ``build``."""

    def hyperparameters(self) -> dict[str, Any]:
        return asdict(self)

    def build(self, b: Builder, pairs: Sequence[tuple[Tensor, Tensor]]) -> None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay."""

    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise GraphDLError(f"SGD needs lr > 0 and momentum, weight_decay >= 0; got {self}")
        if self.nesterov and self.momentum == 0:
            raise GraphDLError("SGD(nesterov=True) needs momentum > 0")

    def build(self, b: Builder, pairs: Sequence[tuple[Tensor, Tensor]]) -> None:
        for p, g in pairs:
            inputs = [p, g]
            if self.momentum:
                inputs.append(_state(b, f"{p.name}/momentum", p.node))
            b.apply("sgd_update", inputs, self.hyperparameters(), name=f"update/{p.name}",
                    kind=NodeKind.UPDATE)


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction; ``weight_decay`` is L2 added to the gradient."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    decoupled = False

    def build(self, b: Builder, pairs: Sequence[tuple[Tensor, Tensor]]) -> None:
        if not pairs:
            return
        t = _state(b, STEP_COUNTER, pairs[0][0].node, dtype="int64", shape=())
        attrs = {"lr": self.lr, "beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                 "weight_decay": self.weight_decay, "decoupled": self.decoupled}
        for p, g in pairs:
            m = _state(b, f"{p.name}/adam_m", p.node)
            v = _state(b, f"{p.name}/adam_v", p.node)
            b.apply("adam_update", [p, g, m, v, t], attrs, name=f"update/{p.name}", kind=NodeKind.UPDATE)
        b.apply("increment", [t], name=f"update/{STEP_COUNTER}", kind=NodeKind.UPDATE)
