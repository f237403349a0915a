"""What an ONNX importer sees: ``ImportContext``, the graph being built from one ONNX model.

The context holds the ONNX values defined so far, the model's constants and the sizes computed from
shapes; ``build`` walks the ONNX nodes in order and calls each one's importer from the table in
graphdl/onnx/importers.py (fusing MatMul + Add into one linear node first). Importer families register
with ``graphdl.onnx.tables.registrar`` into tables of their own, which graphdl/onnx/importers.py merges.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl.graph import Graph, Tensor
from graphdl.ir import NodeKind
from graphdl.onnx.load import _DTYPES, _KINDS, ImportedModel, UnsupportedOpError

Importer = Callable[["ImportContext", Any, dict[str, Any]], list[Tensor | None]]


def clean_name(name: str) -> str:
    """A valid graphdl node name from an ONNX name: letters, digits and _ . - / only, starting with a
    letter, digit or _ ("/fc1/Gemm" -> "fc1/Gemm", "onnx::Conv_27" -> "onnx_Conv_27")."""
    name = re.sub(r"[^A-Za-z0-9_./-]+", "_", name).lstrip("./-")
    return name[:200] or "node"


class ImportContext:
    """The graph being built, the ONNX values defined so far, and the model's constants."""

    def __init__(self, model: Any, opset: int, where: str) -> None:
        import onnx

        self.onnx, self.model, self.opset, self.where = onnx, model, opset, where
        self.inits = {t.name: t for t in model.graph.initializer}
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, Tensor] = {}
        #: Values computed from shapes (Shape -> Gather -> Concat -> Reshape): sizes, None where unknown.
        self.shape_values: dict[str, list[int | None]] = {}
        #: Zero-filled tensors whose shape has sizes known only at run time (ConstantOfShape of a shape
        #: computed from an input, and Slices of them): a recurrent op reads one as "zeros" for its initial
        #: state; anything else refuses it.
        self.zeros: dict[str, list[int | None]] = {}
        self.graph_outputs = {o.name for o in model.graph.output}
        readers = Counter(i for n in model.graph.node for i in n.input if i)
        self.readers = readers
        floats = [_DTYPES.get(i.type.tensor_type.elem_type) for i in model.graph.input if i.name not in self.inits]
        dtype = next((np.dtype(d).name for d in floats if d in (np.float32, np.float64)), "float32")
        self.graph = Graph(clean_name(model.graph.name or "onnx"), dtype=dtype)
        self.node: Any = None

    # -- values -------------------------------------------------------------------------
    def describe(self, node: Any | None = None) -> str:
        node = node or self.node
        return f"{self.where}: node '{node.name or node.output[0]}' ({node.op_type}, opset {self.opset})"

    def refuse(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.describe()}: {why}")

    def array(self, name: str) -> np.ndarray | None:
        """The value of a constant (initializer or Constant node), or None for a computed value."""
        if name in self.consts:
            return self.consts[name]
        sv = self.shape_values.get(name)
        if sv is not None and None not in sv:
            return np.array(sv, dtype=np.int64)
        if name in self.inits:
            return self.onnx.numpy_helper.to_array(self.inits[name])
        return None

    def const(self, i: int, default: Any = None) -> np.ndarray | None:
        """Input ``i`` of the current node, which must be a constant (None when absent)."""
        ins = self.node.input
        if i >= len(ins) or not ins[i]:
            return None if default is None else np.asarray(default)
        value = self.array(ins[i])
        if value is None:
            raise self.refuse(f"input {i} ('{ins[i]}') must be a constant for graphdl to import this node")
        return value

    def sizes(self, i: int) -> list[int | None] | None:
        """Input ``i`` as a list of sizes (None where a size is only known at run time), if it is one."""
        if not self.has(i):
            return None
        name = self.node.input[i]
        if name in self.shape_values:
            return list(self.shape_values[name])
        value = self.array(name)
        if value is None or value.dtype.kind not in "iu" or value.ndim > 1:
            return None
        return [int(v) for v in value.reshape(-1)]

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def input(self, i: int, kind: NodeKind | None = None, value: np.ndarray | None = None) -> Tensor:
        """Input ``i`` as a graph tensor; a constant becomes a stored node of ``kind`` on first use."""
        return self.tensor(self.node.input[i], kind, value)

    def tensor(self, name: str, kind: NodeKind | None = None, value: np.ndarray | None = None) -> Tensor:
        """The ONNX value ``name`` as a graph tensor (``value`` overrides a constant's array, uncached)."""
        if name in self.values and value is None:
            return self.values[name]
        arr = self.array(name) if value is None else value
        if arr is None and name in self.zeros:
            raise self.refuse(f"input '{name}' is a zero-filled tensor of shape {self.zeros[name]}, whose sizes are "
                              "only known at run time; graphdl imports such tensors only as a recurrent op's "
                              "initial state (zeros of a batch size: multiply an input by 0)")
        if arr is None and name in self.shape_values:
            raise self.refuse(f"input '{name}' is a shape with sizes only known at run time "
                              f"{self.shape_values[name]}; graphdl imports shapes only where they feed a "
                              "Reshape or Expand")
        if arr is None:
            raise self.refuse(f"input '{name}' is not defined before this node")
        g = self.graph
        tag = _KINDS.get(self.inits[name].doc_string) if name in self.inits else None
        if arr.ndim == 0 and arr.dtype.kind == "f" and kind is None and tag is not NodeKind.PARAM:
            t = g.scalar(float(arr), arr.dtype.name)  # folded and simplified like any graphdl scalar
        else:
            if kind is None:
                kind = tag or (NodeKind.PARAM if name in self.inits and arr.dtype.kind == "f" else NodeKind.CONSTANT)
            t = g.stored(g.fresh(clean_name(name)), np.array(arr), kind)
        if value is None:
            self.values[name] = t
        return t

    def name(self) -> str:
        """The graphdl name of the current node: its output's name if that is a model output, else its own."""
        out = self.node.output[0]
        return self.graph.fresh(clean_name(out if out in self.graph_outputs or not self.node.name else self.node.name))

    def apply(self, op: str, inputs: list[Tensor | float], attrs: dict[str, Any] | None = None,
              kind: NodeKind | None = None) -> Tensor:
        """The node's final graphdl node."""
        return self.graph.apply(op, inputs, attrs or {}, name=self.name(), kind=kind)

    def part(self, op: str, inputs: list[Tensor | float], attrs: dict[str, Any] | None = None,
             suffix: str = "") -> Tensor:
        """An intermediate graphdl node ``<node>/<suffix or op>``."""
        base = clean_name(self.node.name or self.node.output[0])
        return self.graph.apply(op, inputs, attrs or {}, name=self.graph.fresh(f"{base}/{suffix or op}"))

    # -- building -----------------------------------------------------------------------
    def attrs(self, node: Any) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            if isinstance(v, float):  # ONNX stores float32: take the shortest decimal that is that float32
                v = float(str(np.float32(v)))
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def build(self) -> ImportedModel:
        from graphdl.onnx.folding import fold
        from graphdl.onnx.importers import IMPORTERS  # the table imports this module: read it when building

        g = self.graph
        inputs = {}
        for vi in self.model.graph.input:
            if vi.name in self.inits:
                continue  # an old-style model lists initializers among its inputs
            tt = vi.type.tensor_type
            dtype = _DTYPES.get(tt.elem_type)
            if dtype is None:
                raise UnsupportedOpError(f"{self.where}: input '{vi.name}' has ONNX type {tt.elem_type}; graphdl "
                                         "reads float, double, int64, int32 and bool inputs")
            shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            t = g.placeholder(clean_name(vi.name), shape, np.dtype(dtype).name)
            self.values[vi.name] = inputs[vi.name] = t
        fused = _fuse_matmul_add(self)
        for k, node in enumerate(self.model.graph.node):
            self.node = node
            if k in fused.skip or fold(self, node):
                continue
            if k in fused.linear:
                outs: list[Tensor | None] = [fused.build(self, k)]
            else:
                outs = IMPORTERS[node.op_type](self, node, self.attrs(node))
            for name, t in zip(node.output, outs):
                if name and t is not None:
                    self.values[name] = t
            for extra in node.output[len(outs):]:
                if extra and (self.readers[extra] or extra in self.graph_outputs):
                    raise self.refuse(f"output '{extra}' is used, but graphdl computes only the first output")
        outputs = []
        for o in self.model.graph.output:
            if o.name not in self.values:
                if self.array(o.name) is None:
                    raise UnsupportedOpError(f"{self.where}: model output '{o.name}' is never computed")
                self.values[o.name] = self.tensor(o.name)  # a constant output
            outputs.append(self.values[o.name])
        return ImportedModel(g, inputs, outputs, self.opset, self.model.producer_name,
                             [t.name for t in self.model.graph.initializer])


class _Fusion:
    """MatMul(x, W) followed only by Add(., b), W 2-d and b 1-d constants: one graphdl linear node."""

    def __init__(self) -> None:
        self.skip: set[int] = set()
        self.linear: dict[int, Any] = {}  # index of the Add node -> the MatMul node

    def build(self, ctx: ImportContext, k: int) -> Tensor:
        add, mm = ctx.node, self.linear[k]
        bias = 1 if add.input[0] == mm.output[0] else 0
        ctx.node = mm
        x, w = ctx.input(0), ctx.input(1, NodeKind.PARAM)
        ctx.node = add
        return ctx.apply("linear", [x, w, ctx.input(bias, NodeKind.PARAM)])


def _fuse_matmul_add(ctx: ImportContext) -> _Fusion:
    fusion = _Fusion()
    nodes = list(ctx.model.graph.node)
    by_input: dict[str, list[int]] = {}
    for k, n in enumerate(nodes):
        for i in n.input:
            by_input.setdefault(i, []).append(k)
    for j, n in enumerate(nodes):
        if n.op_type != "MatMul" or n.output[0] in ctx.graph_outputs:
            continue
        w = ctx.array(n.input[1])
        users = by_input.get(n.output[0], [])
        if w is None or w.ndim != 2 or len(users) != 1 or nodes[users[0]].op_type != "Add":
            continue
        add = nodes[users[0]]
        other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
        b = ctx.array(other)
        if b is None or b.shape != (w.shape[1],) or add.input[0] == add.input[1]:
            continue
        fusion.skip.add(j)
        fusion.linear[users[0]] = n
    return fusion
