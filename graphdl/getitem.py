"""``Tensor.__getitem__``: a NumPy index turned into one ``slice`` node and at most one ``index`` node.

Basic entries (slices, integers, ``...``, ``None``) become one ``slice`` node. One advanced entry (an
integer Tensor, list or NumPy array, or a boolean NumPy mask or constant) becomes an ``index`` node
after it, along the axis where NumPy puts its result. Next to an array, integers count as advanced
in NumPy, so they must sit next to it (otherwise NumPy moves the result axes to the front, which is
refused here with a hint). Several integer lists or arrays side by side (``x[[0, 1], [2, 2]]``) pair
up elementwise, broadcast, as in NumPy: they become one array of flat positions over their axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import NodeKind, format_shape
from graphdl.ops.indexing import INT, NEW, SLICE, Entry
from graphdl.tensor import Tensor

ADV, ELLIPSIS = "advanced", "ellipsis"


def _is_int(k: Any) -> bool:
    return isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_)


def _mask_value(t: Tensor, k: Tensor) -> np.ndarray:
    values = getattr(k.graph, "values", {})
    if k.graph.nodes[k.name].kind is not NodeKind.CONSTANT or k.name not in values:
        raise GraphError(f"cannot index '{t.name}' with the computed boolean mask '{k.name}': the result's shape "
                         "would depend on its values; pass the mask as a NumPy array or gd.constant, or use "
                         "gd.ops.where(mask, x, 0)")
    return values[k.name]


def _advanced(t: Tensor, k: Any) -> tuple[Tensor | np.ndarray, int, np.ndarray | None]:
    """(integer indices, number of axes they index, the boolean mask if any) of an advanced entry."""
    if isinstance(k, Tensor) and k.dtype != "bool":
        return k, 1, None
    arr = _mask_value(t, k) if isinstance(k, Tensor) else np.asarray(k)
    if arr.dtype == bool:
        return np.flatnonzero(arr).astype(np.int64), max(arr.ndim, 1), arr
    if arr.dtype.kind not in "iu" and arr.size:
        raise GraphError(f"index arrays must hold integers or booleans, got {arr.dtype}")
    return arr.astype(np.int64), 1, None


def _parse(t: Tensor, key: Any) -> list[tuple[str, Any]]:
    parsed: list[tuple[str, Any]] = []
    for k in key if isinstance(key, tuple) else (key,):
        if k is Ellipsis:
            parsed.append((ELLIPSIS, None))
        elif k is None:
            parsed.append((NEW, None))
        elif isinstance(k, slice):
            parsed.append((SLICE, k))
        elif _is_int(k):
            parsed.append((INT, int(k)))
        elif isinstance(k, Tensor | list | np.ndarray):
            parsed.append((ADV, _advanced(t, k)))
        else:
            raise GraphError(f"cannot index '{t.name}' with {type(k).__name__} {k!r}; use ints, slices, ..., None, "
                             "an integer array or a boolean NumPy mask")
    return parsed


def _pair_arrays(t: Tensor, parsed: list[tuple[str, Any]], key: Any) -> list[tuple[str, Any]]:
    """Side-by-side integer index arrays (NumPy pairs them elementwise, broadcast) as one advanced entry of
    flat positions over their axes, checked against the axes' sizes."""
    first = next(k for k, (kind, _) in enumerate(parsed) if kind == ADV)
    count = sum(1 for kind, _ in parsed if kind == ADV)
    group = parsed[first:first + count]
    why = None
    if any(kind != ADV for kind, _ in group):
        why = "are not side by side (NumPy then moves the result axes to the front)"
    elif any(isinstance(p[0], Tensor) for _, p in group):
        why = "include an index Tensor (only lists and NumPy arrays pair up here)"
    elif any(p[2] is not None for _, p in group):
        why = "include a boolean mask"
    if why is not None:
        raise GraphError(f"index {key!r} has {count} index arrays that {why}; index in steps instead (for pairs "
                         "of positions (a[k], b[k]) along two axes of sizes m, n: x.reshape(..., m * n, ...)"
                         "[..., a * n + b, ...])")
    axis = sum(p[1] if kind == ADV else 1 for kind, p in parsed[:first] if kind in (ADV, SLICE, INT))
    dims = tuple(t.shape[axis:axis + count])
    if None in dims:
        raise GraphError(f"index {key!r} pairs index arrays over axes {axis}..{axis + count - 1} of '{t.name}' "
                         f"{format_shape(t.shape)}, whose sizes must be known")
    try:
        arrays = np.broadcast_arrays(*(p[0] for _, p in group))
    except ValueError:
        raise GraphError(f"index arrays of shapes {[p[0].shape for _, p in group]} in {key!r} do not broadcast "
                         "together") from None
    normal = []
    for k, (a, n) in enumerate(zip(arrays, dims)):
        if a.size and (a.min() < -n or a.max() >= n):
            raise GraphError(f"index array {k + 1} of {key!r} holds {int(a.min())}..{int(a.max())}, out of range for "
                             f"axis {axis + k} of '{t.name}' {format_shape(t.shape)} (size {n})")
        normal.append(np.where(a < 0, a + n, a))
    flat = np.ravel_multi_index(tuple(normal), dims) if arrays[0].size else np.zeros(arrays[0].shape, np.int64)
    return [*parsed[:first], (ADV, (flat.astype(np.int64), count, None)), *parsed[first + count:]]


def getitem(t: Tensor, key: Any) -> Tensor:
    """``t[key]`` with NumPy semantics (see the module docstring)."""
    parsed = _parse(t, key)
    kinds = [k for k, _ in parsed]
    consumed = kinds.count(SLICE) + kinds.count(INT) + sum(p[1] for k, p in parsed if k == ADV)
    if kinds.count(ELLIPSIS) > 1:
        raise GraphError(f"an index can only have one ellipsis (...), got {key!r}")
    if consumed > t.ndim:
        raise GraphError(f"too many indices for '{t.name}' {format_shape(t.shape)}: {key!r}")
    if ELLIPSIS in kinds:
        e = kinds.index(ELLIPSIS)
        parsed[e:e + 1] = [(SLICE, slice(None))] * (t.ndim - consumed)
        kinds = [k for k, _ in parsed]
    if kinds.count(ADV) > 1:
        parsed = _pair_arrays(t, parsed, key)
        kinds = [k for k, _ in parsed]
    if ADV in kinds:
        group = sorted(i for i, k in enumerate(kinds) if k in (ADV, INT))
        if group != list(range(group[0], group[-1] + 1)):
            raise GraphError(f"index {key!r} mixes an index array with integers that are not next to it, which "
                             "NumPy answers by moving the result axes to the front; index in two steps instead")
    entries: list[Entry] = []
    advanced = None
    in_axis = 0
    for kind, p in parsed:
        if kind == ADV:
            indices, span, mask = p
            if mask is not None and mask.shape != tuple(t.shape[in_axis:in_axis + span]):
                raise GraphError(f"boolean mask of shape {mask.shape} does not match dimensions "
                                 f"{format_shape(t.shape[in_axis:in_axis + span])} of '{t.name}' "
                                 f"{format_shape(t.shape)}")
            out_axis = sum(1 for e in entries if e[0] != INT)
            advanced = (indices, span, out_axis)
            entries.extend([(SLICE, None, None, 1)] * span)
            in_axis += span
        elif kind == NEW:
            entries.append((NEW,))
        elif kind == SLICE:
            s = p
            entries.append((SLICE, None if s.start is None else int(s.start), None if s.stop is None else int(s.stop),
                            1 if s.step is None else int(s.step)))
            in_axis += 1
        else:
            entries.append((INT, p))
            in_axis += 1
    out = t
    if any(e != (SLICE, None, None, 1) for e in entries):
        out = t._op("slice", t, index=tuple(entries))
    if advanced is not None:
        indices, span, out_axis = advanced
        if not isinstance(indices, Tensor):
            stored = getattr(t.graph, "stored", None)
            if stored is None:
                raise GraphError("index arrays can only be added to a user's graph; pass an integer Tensor")
            indices = stored(t.graph.fresh("index"), indices, NodeKind.CONSTANT)
        out = out._op("index", out, indices, axis=out_axis, span=span)
    return out
