"""Constant folding: a pure scalar op of scalar constants becomes a scalar constant.

Autodiff makes these: the seed 1.0 times a constant (``mse``'s 2 * g), the negated seed of ``sub``.
Only 0-d values are folded: array constants live beside the graph, not in it.
"""

from __future__ import annotations

import numpy as np

from graphdl.ir import IR, Node, NodeKind, make_attrs
from graphdl.registry import get_op
from passes.rewrite import is_pure, redirect


def fold_constants(ir: IR) -> IR:
    """Evaluate, with its own kernel, every pure 0-d node whose inputs are all scalar constants."""
    value: dict[str, float] = {}
    dtypes: dict[str, str] = {}  # of the scalar constants
    replace: dict[str, Node] = {}
    for n in ir.nodes:
        if n.kind is NodeKind.CONSTANT and n.op == "scalar":
            value[n.name] = n.attr["value"]
            dtypes[n.name] = n.dtype
            continue
        if (n.shape != () or n.extra or not n.inputs or any(i not in value for i in n.inputs) or not is_pure(n)
                or not np.issubdtype(np.dtype(n.dtype), np.floating)):
            continue
        dtype = np.dtype(n.dtype)
        ins = [np.full((), value[i], dtypes[i]) for i in n.inputs]
        out = np.empty((), dtype)
        get_op(n.op).kernel(n.attr, tuple(() for _ in ins), (), dtype)(*ins, out)
        value[n.name] = float(out)
        dtypes[n.name] = n.dtype
        replace[n.name] = Node(n.name, NodeKind.CONSTANT, "scalar", (),
                               make_attrs({"value": value[n.name], "dtype": n.dtype}), (), n.dtype, n.origin)
    return redirect(ir, {}, replace)
