"""The importer table: one function per ONNX op type, building graphdl nodes through the graph API.

An importer gets the ``ImportContext`` (graphdl/onnx/import_context.py), the ONNX node and its attributes
as a dict, and returns one graphdl tensor per ONNX output it defines. Constant operands (shapes, axes,
bounds) are read with ``ctx.const``; data operands with ``ctx.input``, which turns an initializer into a
parameter node the first time it is used.

The importers live by family, each with a table of its own: math_importers.py (elementwise ops,
activations, reductions), nn_importers.py (linear algebra, convolution, pooling, normalisation, losses),
recurrent_importers.py (RNN, GRU, LSTM) and tensor_importers.py (shape, layout, indexing, shape arithmetic).
This module merges them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.graph import Tensor
from graphdl.onnx.import_context import ImportContext, Importer
from graphdl.onnx.math_importers import MATH_IMPORTERS
from graphdl.onnx.nn_importers import NN_IMPORTERS
from graphdl.onnx.recurrent_importers import RECURRENT_IMPORTERS
from graphdl.onnx.tables import registrar
from graphdl.onnx.tensor_importers import SIZED, TENSOR_IMPORTERS, on_sizes

__all__ = ["IMPORTERS", "ImportContext", "Importer", "importer"]

IMPORTERS: dict[str, Importer] = {**MATH_IMPORTERS, **NN_IMPORTERS, **TENSOR_IMPORTERS, **RECURRENT_IMPORTERS}
importer = registrar(IMPORTERS)


@importer("Constant")
def _constant_node(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    """A constant becomes a graph node only where an op reads it as data (``ImportContext.input``)."""
    ctx.consts[node.output[0]] = _constant(ctx, node)
    return [None]


def _constant(ctx: ImportContext, node: Any) -> np.ndarray:
    a = node.attribute[0] if len(node.attribute) == 1 else None
    if a is None or a.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        raise ctx.refuse("only Constant nodes with one value, value_float(s) or value_int(s) attribute are imported")
    if a.name == "value":
        return ctx.onnx.numpy_helper.to_array(a.t)
    v = ctx.onnx.helper.get_attribute_value(a)
    return np.asarray(v, dtype=np.float32 if "float" in a.name else np.int64)


# Shape arithmetic: these ops compute on sizes when an input is a shape value, else import as before.
for _onnx_op, _sized in SIZED.items():
    IMPORTERS[_onnx_op] = on_sizes(IMPORTERS[_onnx_op], _sized)
