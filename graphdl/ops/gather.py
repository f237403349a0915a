"""Ops that read by integer index: embedding lookups and picking one entry per row (for NLL)."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.ops.common import check_index_range, label_hint
from graphdl.registry import OpDef, RuleError, fail, register


def _check_int(dtype: str, what: str) -> None:
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise RuleError(f"{what} must be integers, got {dtype}", "feed int64 indices", kind="dtype")


def _int_first(dtypes: tuple, attrs: dict[str, Any]) -> str:
    _check_int(dtypes[0], "ids")
    return dtypes[1]


def _embedding_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    ids, w = shapes[0], shapes[1]
    if len(w) != 2:
        fail(f"the embedding table must be 2-d (num_embeddings, embedding_dim), got {w}")
    return (*ids, w[1])


def _id_hint(k: int) -> str:
    return f"The ids index the table's {k} rows: map them to 0..{k - 1}, or build the Embedding with more rows"


def _embedding_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    k = in_shapes[1][0]
    hint = _id_hint(k)

    def embedding(ids: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
        check_index_range(ids, k, 0, "id", hint)  # np.take would wrap negative ids
        np.take(w, ids, axis=0, out=out, mode="raise")

    return embedding


def _embedding_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    k = out_shape[0]
    hint = _id_hint(k)

    def embedding_grad(ids: np.ndarray, g: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        check_index_range(ids, k, 0, "id", hint)
        out.fill(0)
        np.add.at(out, ids.reshape(-1), g.reshape(-1, out.shape[1]))

    return embedding_grad


register(OpDef(
    "embedding", _embedding_shape, _embedding_kernel, arity=2, nondiff=(0,), dtype=_int_first,
    grad=lambda c: [None, c.apply("embedding_grad", c.inputs[0], c.gout, c.inputs[1])],
    doc="Rows of the table W (num_embeddings, dim) picked by integer ids.", attr_schema={},
))
register(OpDef(
    "embedding_grad", lambda s, a: s[2], _embedding_grad_kernel, arity=3, nondiff=(0, 2), shape_only=(2,),
    dtype=lambda d, a: _int_first(d, a),
    grad=lambda c: [None, c.apply("embedding", c.inputs[0], c.gout), None],
    doc="Gradient of embedding for its table: g's rows summed into the rows named by ids.", attr_schema={},
))


def _pick_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, labels = shapes
    if len(x) != 2 or len(labels) != 1:
        fail(f"pick needs (batch, classes) values and (batch,) labels, got {x} and {labels}")
    if None not in (x[0], labels[0]) and x[0] != labels[0]:
        fail(f"values have batch {x[0]} but labels {labels[0]}")
    return (x[0],)


def _pick_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = in_shapes[0]
    rows = np.arange(n) * k
    idx = np.empty(n, dtype=np.int64)
    hint = label_hint(k)

    def pick(x: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
        check_index_range(labels, k, 1, "label", hint)  # else a label would pick from another row
        np.add(rows, labels, out=idx)
        np.take(x.reshape(-1), idx, out=out)

    return pick


def _unpick_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    n, k = out_shape
    rows = np.arange(n) * k
    idx = np.empty(n, dtype=np.int64)
    hint = label_hint(k)

    def unpick(g: np.ndarray, labels: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        check_index_range(labels, k, 1, "label", hint)
        out.fill(0)
        np.add(rows, labels, out=idx)
        out.reshape(-1)[idx] = g

    return unpick


def _labels_second(dtypes: tuple, attrs: dict[str, Any]) -> str:
    _check_int(dtypes[1], "labels")
    return dtypes[0]


register(OpDef(
    "pick", _pick_shape, _pick_kernel, arity=2, nondiff=(1,), dtype=_labels_second,
    grad=lambda c: [c.apply("unpick", c.gout, c.inputs[1], c.inputs[0]), None],
    doc="x[i, labels[i]] for each row i.", attr_schema={},
))
register(OpDef(
    "unpick", lambda s, a: s[2], _unpick_kernel, arity=3, nondiff=(1, 2), shape_only=(2,), dtype=_labels_second,
    grad=lambda c: [c.apply("pick", c.gout, c.inputs[1]), None, None],
    doc="Zeros of like's shape with g[i] at [i, labels[i]] (the gradient of pick).", attr_schema={},
))
