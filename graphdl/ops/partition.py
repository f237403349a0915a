"""split: one node, several outputs (slices of one input along an axis), as ``torch.split``.

The sizes are fixed when the node is built (``sizes`` attribute), so the split axis must be known.
The gradient concatenates the incoming gradients, zeros where an output is not differentiated.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from graphdl.attrs import Int, Ints
from graphdl.registry import GradContext, OpDef, fail, register


def _split_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, sizes = shapes[0], tuple(attrs["sizes"])
    if not -len(x) <= attrs["axis"] < len(x):
        fail(f"axis {attrs['axis']} is out of range for a {len(x)}-d input")
    axis = attrs["axis"] % len(x)
    if not sizes or any(s < 0 for s in sizes):
        fail(f"split sizes must be a non-empty list of sizes >= 0, got {list(sizes)}")
    if x[axis] is not None and sum(sizes) != x[axis]:
        fail(f"split sizes {list(sizes)} add up to {sum(sizes)}, but axis {axis} has size {x[axis]}",
             f"make the sizes add up to {x[axis]}")
    return tuple(tuple(s if i == axis else d for i, d in enumerate(x)) for s in sizes)


def _split_kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple):
    ndim = len(in_shapes[0])
    axis = attrs["axis"] % ndim
    bounds = np.cumsum([0, *attrs["sizes"]])
    index = [tuple(slice(int(a), int(b)) if i == axis else slice(None) for i in range(ndim))
             for a, b in itertools.pairwise(bounds)]

    def split(x: np.ndarray, *outs: np.ndarray) -> None:
        for out, ix in zip(outs, index, strict=True):
            np.copyto(out, x[ix])

    return split


def _split_grad(c: GradContext) -> list:
    parts = [g if g is not None else c.apply("expand_like", 0.0, out) for g, out in zip(c.gouts, c.outs, strict=True)]
    if len(parts) == 1:
        return [parts[0]]
    return [c.apply("concat", *parts, axis=c.attrs["axis"])]


register(OpDef(
    "split", _split_shape, _split_kernel, grad=_split_grad, arity=1, multi_output=True,
    dtype=lambda d, a: tuple(d[0] for _ in a["sizes"]), label_attrs=("sizes", "axis"),
    doc="Slices of x along axis with the given sizes, one output each (torch.split with a list of sizes).",
    attr_schema={"sizes": Ints(low=0), "axis": Int()},
))
