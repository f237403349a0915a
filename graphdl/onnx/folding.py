"""Import-time folding: small computations on constants (the index and shape arithmetic exporters write
around Pad, Reshape or Slice: ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast, ...) are evaluated
while importing, by onnx's reference implementation (``onnx.reference``), so an importer that needs a
constant operand (Pad's pads, Slice's bounds) gets one.

Only the ops in ``FOLDABLE`` are evaluated, only when every input is a constant that is not a trainable
initializer (a float initializer stays a parameter, so fine-tuning still reaches it), and only for small
values: at most ``MAX_INPUT_ELEMENTS`` elements in, ``MAX_OUTPUT_ELEMENTS`` out (a ConstantOfShape is
checked before it runs). Anything else imports as graph nodes, as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.onnx.import_context import ImportContext

#: Ops whose output is no larger than their inputs together.
SAME_OR_SMALLER = frozenset({"Neg", "Abs", "Not", "Cast", "Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                             "Transpose", "Slice", "Identity"})
#: Ops that broadcast their inputs (the broadcast size is checked before they run).
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Min", "Max", "Equal", "Less", "Greater", "And", "Or", "Where"})
FOLDABLE = SAME_OR_SMALLER | BROADCASTING | {"Gather", "ConstantOfShape"}
MAX_INPUT_ELEMENTS = 1 << 16
MAX_OUTPUT_ELEMENTS = 1 << 20


def _constant_inputs(ctx: ImportContext, node: Any) -> dict[str, np.ndarray] | None:
    """Every (non-empty) input of ``node`` as an array, or None if one is computed, trainable or large."""
    values: dict[str, np.ndarray] = {}
    for name in node.input:
        if not name:
            continue
        if name in ctx.inits and ctx.inits[name].data_type in _FLOAT_TYPES:  # a parameter: keep it trainable
            return None
        value = ctx.array(name)
        if value is None:  # computed, or fed: known only at run time
            return None
        values[name] = value
    if not values or sum(v.size for v in values.values()) > MAX_INPUT_ELEMENTS:
        return None
    return values


_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _output_elements(node: Any, values: dict[str, np.ndarray]) -> int:
    """An upper bound of the elements ``node`` would produce (MAX_OUTPUT_ELEMENTS + 1 if it cannot run)."""
    ins = [values.get(name) for name in node.input]
    if node.op_type == "ConstantOfShape":
        shape = ins[0]
        if shape.dtype.kind not in "iu" or (shape.size and shape.min() < 0):
            return MAX_OUTPUT_ELEMENTS + 1
        return math.prod(int(s) for s in shape.reshape(-1))
    if node.op_type == "Gather":  # data's shape with the gathered axis replaced by the index's shape
        data, index = ins[0], ins[1]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if not data.ndim or not -data.ndim <= axis < data.ndim:
            return MAX_OUTPUT_ELEMENTS + 1
        return data.size // max(data.shape[axis], 1) * index.size
    if node.op_type in BROADCASTING:
        try:
            return math.prod(np.broadcast_shapes(*(v.shape for v in ins if v is not None)))
        except ValueError:
            return MAX_OUTPUT_ELEMENTS + 1  # not broadcastable: leave it to the importer's error
    return sum(v.size for v in ins if v is not None)


def fold(ctx: ImportContext, node: Any) -> bool:
    """Evaluate ``node`` now if it is foldable (see the module docstring): its outputs become constants of
    ``ctx`` and no graph node is built. Returns whether it did."""
    if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx"):
        return False
    values = _constant_inputs(ctx, node)
    if values is None:
        return False
    if _output_elements(node, values) > MAX_OUTPUT_ELEMENTS:
        return False
    from onnx.reference import ReferenceEvaluator

    try:
        outputs = ReferenceEvaluator(node).run(None, values)
    except Exception as e:  # the reference implementation's own refusal of bad operands
        raise ctx.refuse(f"evaluating it on its constant inputs failed: {type(e).__name__}: {e}") from None
    for name, value in zip(node.output, outputs):
        if name:
            ctx.consts[name] = np.asarray(value)
    return True
