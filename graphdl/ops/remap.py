"""Ops whose every output element copies one input element (or a fill value), chosen per axis:
flip, roll, repeat, tile and pad.

Each op describes itself by an *index map*: for every axis it changes, the input position each output
position reads (-1: the fill value). The forward kernel takes along each mapped axis in turn; the
gradient is the one adjoint op ``remap_adjoint``, which adds the output gradient back into the positions
read (so a position read twice, as by repeat, tile or a reflecting pad, collects both), and whose own
gradient is the forward op again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl.attrs import ABSENT, REQUIRED, Axes, Float, Ints, Str
from graphdl.ops.common import norm_axes
from graphdl.registry import GradContext, OpDef, fail, register

#: Per axis of the output (leading axes added by tile included), the input position each output position
#: reads along it; -1 reads the fill value.
IndexMaps = dict[int, np.ndarray]


def _flip_maps(attrs: dict[str, Any], shape: tuple[int, ...]) -> IndexMaps:
    return {a: np.arange(shape[a])[::-1] for a in norm_axes(attrs.get("axis"), len(shape))}


def _roll_pairs(attrs: dict[str, Any], ndim: int) -> list[tuple[int, int]]:
    shift, axis = attrs["shift"], attrs["axis"]
    shifts = (shift,) if isinstance(shift, int) else tuple(shift)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if len(shifts) != len(axes):
        fail(f"roll needs one shift per axis, got shift {shift} and axis {axis}")
    for a in axes:
        if not -ndim <= a < ndim:
            fail(f"axis {a} is out of range for a {ndim}-d input")
    return [(a % ndim, s) for s, a in zip(shifts, axes)]


def _roll_maps(attrs: dict[str, Any], shape: tuple[int, ...]) -> IndexMaps:
    maps: IndexMaps = {}
    for a, s in _roll_pairs(attrs, len(shape)):  # shifts on one axis add up, as in NumPy
        base = maps.get(a, np.arange(shape[a]))
        maps[a] = np.roll(base, s) if shape[a] else base
    return maps


def _repeat_counts(attrs: dict[str, Any], n: int) -> np.ndarray:
    r = attrs["repeats"]
    counts = np.full(n, r) if isinstance(r, int) else np.asarray(r, dtype=np.int64)
    if counts.shape != (n,) or (counts < 0).any():
        fail(f"repeats {r} must be an int or {n} counts, all >= 0")
    return counts


def _repeat_maps(attrs: dict[str, Any], shape: tuple[int, ...]) -> IndexMaps:
    (axis,) = norm_axes(attrs["axis"], len(shape))
    return {axis: np.repeat(np.arange(shape[axis]), _repeat_counts(attrs, shape[axis]))}


def _tile_lead(attrs: dict[str, Any], ndim: int) -> tuple[int, tuple[int, ...]]:
    reps = tuple(attrs["reps"])
    if any(r < 0 for r in reps):
        fail(f"reps {reps} must all be >= 0")
    lead = max(len(reps) - ndim, 0)
    return lead, (1,) * max(ndim - len(reps), 0) + reps


def _tile_maps(attrs: dict[str, Any], shape: tuple[int, ...]) -> IndexMaps:
    lead, reps = _tile_lead(attrs, len(shape))
    full = (1,) * lead + tuple(shape)
    return {a: np.tile(np.arange(d), r) for a, (d, r) in enumerate(zip(full, reps)) if r != 1}


PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_pairs(attrs: dict[str, Any], ndim: int) -> dict[int, tuple[int, int]]:
    """PyTorch's F.pad order: (left, right) of the last axis first, then of the axis before, ..."""
    pad = tuple(attrs["pad"])
    if len(pad) % 2 or len(pad) // 2 > ndim:
        fail(f"pad {pad} must hold (before, after) pairs for at most the {ndim} axes, last axis first")
    if any(p < 0 for p in pad):
        fail(f"pad {pad} has a negative size", "crop with slicing instead")
    if attrs.get("mode", "constant") not in PAD_MODES:
        fail(f"mode {attrs.get('mode')!r} is not one of {tuple(PAD_MODES)}")
    return {ndim - 1 - k: (pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)}


def _pad_maps(attrs: dict[str, Any], shape: tuple[int, ...]) -> IndexMaps:
    mode = PAD_MODES[attrs.get("mode", "constant")]
    maps: IndexMaps = {}
    for a, (before, after) in _pad_pairs(attrs, len(shape)).items():
        n = shape[a]
        if mode == "constant":
            maps[a] = np.concatenate([np.full(before, -1), np.arange(n), np.full(after, -1)]).astype(np.int64)
        else:
            maps[a] = np.pad(np.arange(n), (before, after), mode=mode)
    return maps


def _pad_check(x: tuple, attrs: dict[str, Any]) -> None:
    mode = attrs.get("mode", "constant")
    for a, (before, after) in _pad_pairs(attrs, len(x)).items():
        n = x[a]
        if mode == "constant" or n is None:
            continue
        if n == 0 and before + after:
            fail(f"{mode} padding of axis {a} needs a non-empty axis")
        if mode == "reflect" and max(before, after) >= max(n, 1):
            fail(f"reflect padding {(before, after)} of axis {a} must be smaller than its size {n}")
        if mode == "circular" and max(before, after) > n:
            fail(f"circular padding {(before, after)} of axis {a} must be at most its size {n}")


#: op name -> (index maps, number of leading axes the op adds)
MAPS: dict[str, tuple[Callable[[dict, tuple], IndexMaps], Callable[[dict, int], int]]] = {
    "flip": (_flip_maps, lambda a, n: 0),
    "roll": (_roll_maps, lambda a, n: 0),
    "repeat": (_repeat_maps, lambda a, n: 0),
    "tile": (_tile_maps, lambda a, n: _tile_lead(a, n)[0]),
    "pad": (_pad_maps, lambda a, n: 0),
}


def _symbolic_shape(op: str, x: tuple, attrs: dict[str, Any]) -> tuple:
    """Output shape; unknown (None) axes stay unknown unless the op maps them, which needs their size."""
    maps_of, lead_of = MAPS[op]
    lead = lead_of(attrs, len(x))
    full = (1,) * lead + tuple(x)
    maps = maps_of(attrs, tuple(1 if d is None else d for d in x))  # axes of the output (after lead)
    out = []
    for a, d in enumerate(full):
        if a not in maps:
            out.append(d)
        elif d is None:
            if op in ("flip", "roll"):  # size-preserving: fine on an unknown axis
                out.append(None)
            else:
                fail(f"{op} along axis {a}, whose size is unknown, is not supported",
                     "apply it to an axis of known size")
        else:
            out.append(len(maps[a]))
    return tuple(out)


def _remap_shape(op: str) -> Callable[[tuple, dict], tuple]:
    def rule(shapes: tuple, attrs: dict[str, Any]) -> tuple:
        (x,) = shapes
        if op == "pad":
            _pad_check(x, attrs)
        if op == "repeat" and x:
            (axis,) = norm_axes(attrs["axis"], len(x))
            if x[axis] is None:
                fail(f"repeat along axis {axis}, whose size is unknown, is not supported")
        return _symbolic_shape(op, x, attrs)

    return rule


class _Plan:
    """The concrete index maps of one node, with the fill positions split off."""

    def __init__(self, op: str, attrs: dict[str, Any], in_shape: tuple[int, ...]) -> None:
        maps_of, lead_of = MAPS[op]
        self.lead = lead_of(attrs, len(in_shape))
        self.full = (1,) * self.lead + tuple(in_shape)
        self.steps = []  # (axis, safe index, fill positions or None)
        for a, idx in sorted(maps_of(attrs, tuple(in_shape)).items()):
            idx = np.asarray(idx, dtype=np.int64)
            fill = np.flatnonzero(idx < 0)
            self.steps.append((a, np.where(idx < 0, 0, idx), fill if fill.size else None))


def _remap_kernel(op: str):
    def factory(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
        plan = _Plan(op, attrs, in_shapes[0])
        value = attrs.get("value", 0.0)

        def remap(x: np.ndarray, out: np.ndarray) -> None:
            y = x.reshape(plan.full)
            for a, idx, fill in plan.steps:
                if y.shape[a] == 0:  # only fill values to read (constant padding of an empty axis)
                    y = np.empty((*y.shape[:a], len(idx), *y.shape[a + 1:]), dtype=dtype)
                else:
                    y = np.take(y, idx, axis=a)
                if fill is not None:
                    np.moveaxis(y, a, 0)[fill] = value
            np.copyto(out, y.reshape(out.shape))

        return remap

    return factory


def _remap_grad(op: str) -> Callable[[GradContext], list]:
    return lambda c: [c.apply("remap_adjoint", c.gout, c.inputs[0], of=op, **c.attrs)]


_DOCS = {
    "flip": "Reverse the order of elements along `axis` (all axes when None), as NumPy flip / torch flip.",
    "roll": "Shift elements along `axis` by `shift`, wrapping around (NumPy roll with explicit axes).",
    "repeat": "Repeat each element `repeats` times along `axis` (NumPy repeat = torch repeat_interleave; "
              "repeats is an int or one count per element).",
    "tile": "Repeat the whole array `reps` times per axis (NumPy tile; reps longer than ndim adds leading axes).",
    "pad": "Pad with PyTorch's F.pad `pad` tuple (last axis first) in mode constant (fill `value`), reflect, "
           "replicate or circular.",
}
REMAP_ATTRS = {
    "flip": {"axis": Axes()},
    "roll": {"shift": Axes(REQUIRED, nullable=False), "axis": Axes(REQUIRED, nullable=False)},
    "repeat": {"repeats": Axes(REQUIRED, nullable=False, low=0), "axis": Axes(REQUIRED, nullable=False)},
    "tile": {"reps": Ints(low=0)},
    "pad": {"pad": Ints(low=0), "mode": Str(default="constant"), "value": Float(0.0)},
}
#: The adjoint carries its forward op's attributes (which ones depends on ``of``; the forward op's rule checks).
REMAP_ADJOINT_ATTRS = {"of": Str(*REMAP_ATTRS), **{k: dataclasses.replace(spec, default=ABSENT, nullable=True)
                                                     for specs in REMAP_ATTRS.values() for k, spec in specs.items()}}
_LABELS = {"flip": ("axis",), "roll": ("shift", "axis"), "repeat": ("repeats", "axis"), "tile": ("reps",),
           "pad": ("pad", "mode")}

for _op in MAPS:
    register(OpDef(_op, _remap_shape(_op), _remap_kernel(_op), arity=1, grad=_remap_grad(_op),
                   label_attrs=_LABELS[_op], doc=_DOCS[_op], attr_schema=REMAP_ATTRS[_op]))


def _adjoint_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, x = shapes
    expected = _remap_shape(attrs["of"])((x,), {k: v for k, v in attrs.items() if k != "of"})
    if len(g) != len(expected) or any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient {g} does not match the {attrs['of']} output {expected}")
    return x


def _adjoint_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    plan = _Plan(attrs["of"], {k: v for k, v in attrs.items() if k != "of"}, in_shapes[1])
    steps = []  # per mapped axis, last first: (axis, its input size, positions read, kept outputs, read once?)
    for a, idx, fill in reversed(plan.steps):
        keep = None
        if fill is not None:
            keep = np.ones(len(idx), dtype=bool)
            keep[fill] = False
        read = idx if keep is None else idx[keep]
        steps.append((a, plan.full[a], read, keep, len(np.unique(read)) == len(read)))

    def remap_adjoint(g: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        y = g
        for a, n, read, keep, once in steps:
            moved = np.moveaxis(y, a, 0)
            if keep is not None:
                moved = moved[keep]
            acc = np.zeros((n, *moved.shape[1:]), dtype=dtype)
            if once:  # each input position read at most once (flip, roll, constant padding): no adding
                acc[read] = moved
            else:
                np.add.at(acc, read, moved)
            y = np.moveaxis(acc, 0, a)
        np.copyto(out, y.reshape(out.shape))

    return remap_adjoint


register(OpDef(
    "remap_adjoint", _adjoint_shape, _adjoint_kernel, arity=2, nondiff=(1,), shape_only=(1,),
    label_attrs=("of",),
    grad=lambda c: [c.apply(c.attrs["of"], c.gout, **{k: v for k, v in c.attrs.items() if k != "of"}), None],
    doc="Gradient of flip/roll/repeat/tile/pad (attribute of): g added back into the input positions each "
        "output position read; `like` gives the input's shape.", attr_schema=REMAP_ADJOINT_ATTRS,
))
