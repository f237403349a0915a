"""Optimizer update ops: they write into parameters and state in place and have no output buffer.

Every update reads the learning rate from a scalar node (``learning_rate``, a function of the step
counter), so schedules are part of the plan. The toposort pass runs an update after every other
reader of what it writes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.attrs import Bool, Float, Int, Str
from graphdl.registry import OpDef, fail, register

#: A schedule's own parameters are None for the schedules that do not use them (the shape rule checks).
LR_ATTRS = {"lr": Float(), "dtype": Str("float32", "float64"),
            "schedule": Str("constant", "step", "exponential", "cosine", default="constant"),
            "gamma": Float(None, nullable=True), "step_size": Int(None, low=1, nullable=True),
            "total_steps": Int(None, low=0, nullable=True), "warmup_steps": Int(None, low=0, nullable=True),
            "eta_min": Float(None, nullable=True)}

def _no_output(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    return ()


def _first_dtype(dtypes: tuple, attrs: dict[str, Any]) -> str:
    return dtypes[0]


def _check_update_shapes(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    # inputs: param, grad, lr, then per-parameter state of the param's shape, or 0-d (counters, unused)
    p = shapes[0]
    if shapes[2] != ():
        fail(f"the learning rate must be a scalar, got {shapes[2]}")
    for s in (shapes[1], *shapes[3:]):
        if s != p and s != ():
            fail(f"update of a {p} parameter got a {s} gradient or state")
    return ()


def _decay(p: np.ndarray, g: np.ndarray, wd: float, tmp: np.ndarray) -> np.ndarray:
    """g + wd * p (L2 weight decay added to the gradient), into tmp."""
    np.multiply(p, wd, out=tmp)
    np.add(tmp, g, out=tmp)
    return tmp


def _sgd_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    mom, wd, nesterov = attrs["momentum"], attrs["weight_decay"], attrs["nesterov"]
    decayed = np.empty(in_shapes[0], dtype=dtype)
    tmp = np.empty(in_shapes[0], dtype=dtype)

    def sgd_update(p: np.ndarray, g: np.ndarray, lr: np.ndarray, v: np.ndarray) -> None:
        grad = _decay(p, g, wd, decayed) if wd else g
        step = grad
        if mom:  # v = momentum v + g (PyTorch, dampening 0); Nesterov steps along g + momentum v
            np.multiply(v, mom, out=v)
            np.add(v, grad, out=v)
            step = v
            if nesterov:
                np.multiply(v, mom, out=tmp)
                np.add(tmp, grad, out=tmp)
                step = tmp
        np.multiply(step, float(lr), out=tmp)
        np.subtract(p, tmp, out=p)

    return sgd_update


def _adam_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    b1, b2, eps, wd = attrs["beta1"], attrs["beta2"], attrs["eps"], attrs["weight_decay"]
    decoupled = attrs.get("decoupled", False)
    tmp = np.empty(in_shapes[0], dtype=dtype)
    den = np.empty(in_shapes[0], dtype=dtype)

    def adam_update(p: np.ndarray, g: np.ndarray, lr_: np.ndarray, m: np.ndarray, v: np.ndarray,
                    t: np.ndarray) -> None:
        lr, step = float(lr_), int(t) + 1
        grad = g
        if wd and decoupled:  # AdamW: shrink the weights, not the gradient
            np.multiply(p, 1.0 - lr * wd, out=p)
        elif wd:
            grad = _decay(p, g, wd, tmp)
        np.multiply(m, b1, out=m)
        np.multiply(grad, 1.0 - b1, out=den)
        np.add(m, den, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(grad, grad, out=den)
        np.multiply(den, 1.0 - b2, out=den)
        np.add(v, den, out=v)
        # PyTorch's form: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        np.sqrt(v, out=den)
        np.multiply(den, 1.0 / math.sqrt(1.0 - b2**step), out=den)
        np.add(den, eps, out=den)
        np.divide(m, den, out=tmp)
        np.multiply(tmp, lr / (1.0 - b1**step), out=tmp)
        np.subtract(p, tmp, out=p)

    return adam_update


def _rmsprop_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    alpha, eps, wd, mom, centered = (attrs["alpha"], attrs["eps"], attrs["weight_decay"], attrs["momentum"],
                                     attrs["centered"])
    tmp = np.empty(in_shapes[0], dtype=dtype)
    avg = np.empty(in_shapes[0], dtype=dtype)

    def rmsprop_update(p: np.ndarray, g: np.ndarray, lr: np.ndarray, sq: np.ndarray, buf: np.ndarray,
                       g_avg: np.ndarray) -> None:
        grad = _decay(p, g, wd, tmp) if wd else g
        np.multiply(sq, alpha, out=sq)
        np.multiply(grad, grad, out=avg)
        np.multiply(avg, 1.0 - alpha, out=avg)
        np.add(sq, avg, out=sq)
        if centered:  # subtract the squared running mean of the gradient
            np.multiply(g_avg, alpha, out=g_avg)
            np.multiply(grad, 1.0 - alpha, out=avg)
            np.add(g_avg, avg, out=g_avg)
            np.multiply(g_avg, g_avg, out=avg)
            np.subtract(sq, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(sq, out=avg)
        np.add(avg, eps, out=avg)
        if mom:
            np.multiply(buf, mom, out=buf)
            np.divide(grad, avg, out=avg)
            np.add(buf, avg, out=buf)
            np.multiply(buf, float(lr), out=avg)
        else:
            np.divide(grad, avg, out=avg)
            np.multiply(avg, float(lr), out=avg)
        np.subtract(p, avg, out=p)

    return rmsprop_update


def _adagrad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    eps, wd, lr_decay = attrs["eps"], attrs["weight_decay"], attrs["lr_decay"]
    tmp = np.empty(in_shapes[0], dtype=dtype)
    den = np.empty(in_shapes[0], dtype=dtype)

    def adagrad_update(p: np.ndarray, g: np.ndarray, lr: np.ndarray, acc: np.ndarray, t: np.ndarray) -> None:
        grad = _decay(p, g, wd, tmp) if wd else g
        clr = float(lr) / (1.0 + int(t) * lr_decay)
        np.multiply(grad, grad, out=den)
        np.add(acc, den, out=acc)
        np.sqrt(acc, out=den)
        np.add(den, eps, out=den)
        np.divide(grad, den, out=den)
        np.multiply(den, clr, out=den)
        np.subtract(p, den, out=p)

    return adagrad_update


def _increment_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def increment(t: np.ndarray) -> None:
        np.add(t, 1, out=t)

    return increment


_UPDATE = {"dtype": _first_dtype, "shape": _check_update_shapes}
register(OpDef("sgd_update", kernel=_sgd_kernel, writes=(0, 3), nondiff=(0, 1, 2, 3),
               label_attrs=("momentum", "nesterov"), **_UPDATE,
               doc="SGD step in place: p -= lr * (g + wd p), with PyTorch's momentum (and Nesterov) buffer v.",
               attr_schema={"momentum": Float(low=0.0), "nesterov": Bool(), "weight_decay": Float()}))
register(OpDef("adam_update", kernel=_adam_kernel, writes=(0, 3, 4), nondiff=(0, 1, 2, 3, 4, 5),
               label_attrs=("decoupled", "weight_decay"), **_UPDATE,
               doc="Adam step in place on p and its moments m, v (bias-corrected by the step t); AdamW if decoupled.",
               attr_schema={"beta1": Float(), "beta2": Float(), "eps": Float(), "weight_decay": Float(),
                            "decoupled": Bool(False)}))
register(OpDef("rmsprop_update", kernel=_rmsprop_kernel, writes=(0, 3, 4, 5), nondiff=(0, 1, 2, 3, 4, 5),
               label_attrs=("alpha", "momentum", "centered"), **_UPDATE,
               doc="RMSprop step in place on p and its square average (and momentum, mean gradient if centered).",
               attr_schema={"alpha": Float(), "eps": Float(), "weight_decay": Float(),
                            "momentum": Float(low=0.0), "centered": Bool()}))
register(OpDef("adagrad_update", kernel=_adagrad_kernel, writes=(0, 3), nondiff=(0, 1, 2, 3, 4),
               label_attrs=("lr_decay",), **_UPDATE,
               doc="Adagrad step in place on p and its sum of squared gradients, the rate decayed by the step t.",
               attr_schema={"eps": Float(), "weight_decay": Float(), "lr_decay": Float()}))
register(OpDef("increment", _no_output, _increment_kernel, dtype=_first_dtype, writes=(0,), arity=1,
               nondiff=(0,), doc="t += 1 (step counters).", attr_schema={}))


# -- learning-rate schedules -----------------------------------------------------------------
def schedule_value(attrs: dict[str, Any], t: int) -> float:
    """The learning rate at step ``t`` (0 for the first step) of the schedule in ``attrs``."""
    lr, kind = attrs["lr"], attrs.get("schedule", "constant")
    if kind == "constant":
        return lr
    if kind == "step":
        return lr * attrs["gamma"] ** (t // attrs["step_size"])
    if kind == "exponential":
        return lr * attrs["gamma"] ** t
    if kind == "cosine":
        warmup, total, eta_min = attrs["warmup_steps"], attrs["total_steps"], attrs["eta_min"]
        if t < warmup:
            return lr * (t + 1) / warmup
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return eta_min + (lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}")


_SCHEDULE_ATTRS = {"constant": (), "step": ("gamma", "step_size"), "exponential": ("gamma",),
                   "cosine": ("total_steps", "warmup_steps", "eta_min")}


def _lr_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    kind = attrs.get("schedule", "constant")
    if kind not in _SCHEDULE_ATTRS:
        fail(f"unknown learning-rate schedule {attrs.get('schedule')!r}")
    missing = [k for k in _SCHEDULE_ATTRS[kind] if attrs.get(k) is None]
    if missing:
        fail(f"the {kind} schedule needs {', '.join(missing)}")
    return ()


def _lr_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def learning_rate(t: np.ndarray, out: np.ndarray) -> None:
        out[...] = schedule_value(attrs, int(t))

    return learning_rate


register(OpDef("learning_rate", _lr_shape, _lr_kernel, arity=1, nondiff=(0,), dtype=lambda d, a: a["dtype"],
               label_attrs=("schedule", "lr"), doc="The learning rate at the step counter's value.",
               attr_schema=LR_ATTRS))
