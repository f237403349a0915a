"""Ops that change how elements are laid out: reshape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.registry import OpDef, fail, register


def _reshape_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    (x,), target = shapes, tuple(attrs["shape"])
    if sum(1 for d in target if d == -1 or d is None) > 1:
        fail(f"reshape target {target} has more than one unknown (-1/None) dimension")
    if any(d is not None and d < -1 for d in target):
        fail(f"reshape target {target} has a negative size")
    known_in = math.prod(d for d in x if d is not None)
    known_out = math.prod(d for d in target if d is not None and d != -1)
    if None in x:
        if -1 not in target and None not in target:
            fail(f"cannot reshape {x}, whose batch size is unknown, to the fixed shape {target}",
                 "use -1 for the batch dimension")
        if known_out and known_in % known_out:
            fail(f"cannot reshape {x} to {target}: {known_in} elements per sample do not split into "
                 f"{known_out}")
        return tuple(None if d in (-1, None) else d for d in target)
    if -1 in target or None in target:
        if known_out == 0 or known_in % known_out:
            fail(f"cannot reshape {x} ({known_in} elements) to {target}")
        return tuple(known_in // known_out if d in (-1, None) else d for d in target)
    if known_in != known_out:
        fail(f"cannot reshape {x} ({known_in} elements) to {target} ({known_out} elements)")
    return target


def _reshape_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    def reshape(x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x.reshape(out_shape))

    return reshape


register(OpDef(
    "reshape", _reshape_shape, _reshape_kernel, arity=1, inplace=(0,), label_attrs=("shape",),
    grad=lambda c: [c.apply("reshape", c.gout, shape=tuple(
        -1 if d is None else d for d in c.inputs[0].shape))],
))
