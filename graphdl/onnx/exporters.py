"""The exporter table: one small function per graphdl op, emitting the ONNX nodes that compute it.

Each exporter gets the ``ExportContext`` and the node; its final ONNX node produces the value named
after the graphdl node. ``TRAINING_ONLY`` lists ops that never appear in an inference plan (gradient
ops, optimizer updates, counters, schedules); a test checks that every registered op is in exactly
one of the two.

The exporters live by family, each with a table of its own: elementwise_exporters.py (one-node
elementwise ops, activations), nn_exporters.py (linear, convolution, pooling, normalisation, attention,
losses), tensor_exporters.py (structural ops) and math_exporters.py (math, indexing, reductions). This
module merges them, and holds the exporters of scalars, the basic reductions and scan.
"""

from __future__ import annotations

import numpy as np

from graphdl.ir import Node
from graphdl.onnx.elementwise_exporters import ELEMENTWISE_EXPORTERS
from graphdl.onnx.export import ExportContext, Exporter, ExportError, export_body
from graphdl.onnx.math_exporters import MATH_EXPORTERS, MATH_TRAINING_ONLY
from graphdl.onnx.nn_exporters import NN_EXPORTERS
from graphdl.onnx.tables import registrar
from graphdl.onnx.tensor_exporters import TENSOR_EXPORTERS

#: Ops that exist only in training plans: gradients, optimizer updates, step counters, schedules.
TRAINING_ONLY = frozenset({
    "relu_grad", "conv2d_input_grad", "conv2d_weight_grad", "embedding_grad", "unpick", "unslice",
    "softmax_cross_entropy_grad", "batch_norm_grad", "batch_norm_stats",
    "batch_norm_backward", "batch_norm_update", "max_pool2d_grad", "max_pool2d_pick",
    # blocked pooling exists in training plans only: an inference compile turns it back into max_pool2d
    "max_pool_blocks", "max_pool_blocks_grad", "max_pool_blocks_pick", "conv2d_pool_blocks",
    "avg_pool2d_grad", "broadcast_like", "sum_to", "sgd_update", "adam_update", "rmsprop_update",
    "adagrad_update", "increment", "learning_rate", "matmul_sgd_update", "gather_adjoint", "remap_adjoint",
    "class_nll_grad", "conv1d_input_grad", "conv1d_weight_grad",
    # data-parallel training: gradient all-reduce in buckets
    "allreduce_start", "allreduce_wait", "bucket_slice",
    "attention_grad", "resize2d_adjoint",
}) | MATH_TRAINING_ONLY

EXPORTERS: dict[str, Exporter] = {**ELEMENTWISE_EXPORTERS, **NN_EXPORTERS, **TENSOR_EXPORTERS}
exporter = registrar(EXPORTERS)


@exporter("scalar")
def _scalar(ctx: ExportContext, n: Node) -> None:
    ctx.initializer(n.name, np.asarray(n.attr["value"], dtype=n.dtype))


@exporter("mean", "max")  # (sum: math_exporters.py)
def _reduce(ctx: ExportContext, n: Node) -> None:
    op_type = {"mean": "ReduceMean", "max": "ReduceMax"}[n.op]
    axis, keep = n.attr.get("axis"), int(bool(n.attr.get("keepdims", False)))
    axes = None if axis is None else ([axis] if isinstance(axis, int) else list(axis))
    axes_as_input = ctx.opset >= 18  # (ReduceMean and ReduceMax take axes as an input from opset 18)
    if axes is None:
        ctx.emit(op_type, n.inputs, n.name, keepdims=keep)
    elif axes_as_input:
        ctx.emit(op_type, [n.inputs[0], ctx.const(n, "axes", axes)], n.name, keepdims=keep)
    else:
        ctx.emit(op_type, n.inputs, n.name, axes=axes, keepdims=keep)


# The math, indexing and reduction ops (arithmetic and comparisons with dtype promotion, sum).
EXPORTERS.update(MATH_EXPORTERS)


@exporter("scan")
def _scan(ctx: ExportContext, n: Node) -> None:
    """ONNX Scan: the body becomes its sub-graph (node names prefixed by the scan's), captures are read
    from the outer scope through Identity nodes, and ``reverse`` scans inputs and stacks outputs backwards
    (so ys stay aligned with xs, as in graphdl)."""
    a = n.attr
    nc, nx = a["carries"], a["xs"]
    if nx == 0:
        raise ExportError(f"{n.describe()}: a scan without xs (length={a['length']}) has no ONNX Scan form; "
                          "pass the steps as xs")
    body = export_body(ctx, n, a["body"], EXPORTERS)
    ny = len(a["body"].outputs) - nc
    ctx.emit("Scan", n.inputs[:nc + nx], n.name, outputs=list(n.refs), body=body, num_scan_inputs=nx,
             scan_input_directions=[int(a["reverse"])] * nx, scan_output_directions=[int(a["reverse"])] * ny)
