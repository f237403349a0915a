"""Central finite differences in float64 along random directions, for any op of the table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import graphdl as gd


@dataclass(frozen=True)
class Case:
    """One gradient-check case: an op, its inputs (shapes, or a maker of arrays) and attributes.

    ``make`` returns the input arrays (use it for integer labels or restricted domains); otherwise
    inputs are standard normal of ``shapes`` (``positive`` takes their absolute value plus 0.5).
    """

    op: str
    shapes: Sequence[tuple[int, ...]] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    make: Callable[[np.random.Generator], list[np.ndarray]] | None = None
    positive: bool = False
    kind: str = "op"
    id: str = ""
    #: Which outputs of a multi-output op enter the objective (default: all of them).
    outputs: tuple[int, ...] | None = None

    def inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        if self.make is not None:
            return self.make(rng)
        xs = [rng.standard_normal(s) for s in self.shapes]
        return [np.abs(x) + 0.5 for x in xs] if self.positive else xs

    def __str__(self) -> str:
        return self.id or f"{self.op}{list(map(tuple, self.shapes))}{self.attrs or ''}"


def build(case: Case, arrays: list[np.ndarray]) -> tuple[gd.Graph, list[gd.Tensor], gd.Tensor, gd.Tensor]:
    """A float64 graph: placeholders for the inputs, the op, and objective = sum(out * R) over its outputs."""
    rng = np.random.default_rng(1)
    with gd.Graph("check", dtype="float64") as g:
        xs = [gd.placeholder(f"in{k}", a.shape, dtype=str(a.dtype)) for k, a in enumerate(arrays)]
        kind = gd.NodeKind.LOSS if case.kind == "loss" else gd.NodeKind.OP
        outs = g.apply_multi(case.op, xs, case.attrs, kind=kind)  # every output of a multi-output op
        if case.outputs is not None:
            outs = [outs[k] for k in case.outputs]
        parts = [gd.ops.sum(o * gd.constant(rng.standard_normal(tuple(1 if d is None else d for d in o.shape))))
                 for o in outs]
        out, objective = outs[0], parts[0]
        for p in parts[1:]:
            objective = objective + p
    return g, xs, out, objective


def check_gradients(case: Case, *, seed: int = 0, eps: float = 1e-6, rtol: float = 1e-6,
                    atol: float = 1e-8) -> None:
    """Compare every float input's symbolic gradient with central differences along a random direction."""
    rng = np.random.default_rng(seed)
    arrays = case.inputs(rng)
    _, xs, _, objective = build(case, arrays)
    float_inputs = [k for k, a in enumerate(arrays) if a.dtype.kind == "f"]
    from graphdl.registry import get_op

    diff = [k for k in float_inputs if k not in get_op(case.op).nondiff]
    grads = gd.grad(objective, [xs[k] for k in diff])
    f = gd.compile([objective])
    df = gd.compile(grads)
    feeds = {x: a for x, a in zip(xs, arrays, strict=True)}
    analytic = df.run(feeds)
    for k, ga in zip(diff, analytic, strict=True):
        v = rng.standard_normal(arrays[k].shape)
        plus = dict(feeds)
        minus = dict(feeds)
        plus[xs[k]] = arrays[k] + eps * v
        minus[xs[k]] = arrays[k] - eps * v
        numeric = (f.run(plus)[0] - f.run(minus)[0]) / (2 * eps)
        symbolic = float(np.sum(ga * v))
        assert ga.shape == arrays[k].shape, f"{case}: gradient of input {k} has shape {ga.shape}"
        assert np.isclose(symbolic, numeric, rtol=rtol, atol=atol), (
            f"{case}: input {k}: symbolic {symbolic!r} vs numeric {float(numeric)!r}")
