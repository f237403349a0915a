"""The importer table: one function per ONNX op type, building graphdl nodes through the graph API.

An importer gets the ``ImportContext``, the ONNX node and its attributes as a dict, and returns one
graphdl tensor per ONNX output it defines. Constant operands (shapes, axes, bounds) are read with
``ctx.const``; data operands with ``ctx.input``, which turns an initializer into a parameter node
the first time it is used.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from graphdl.graph import Graph, Tensor
from graphdl.ir import NodeKind
from graphdl.onnx.load import _DTYPES, _KINDS, ImportedModel, UnsupportedOpError

Importer = Callable[["ImportContext", Any, dict[str, Any]], list[Tensor | None]]
IMPORTERS: dict[str, Importer] = {}


def importer(*op_types: str) -> Callable[[Importer], Importer]:
    def register(fn: Importer) -> Importer:
        for op in op_types:
            IMPORTERS[op] = fn
        return fn

    return register


def _clean(name: str) -> str:
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
        self.graph_outputs = {o.name for o in model.graph.output}
        readers = Counter(i for n in model.graph.node for i in n.input if i)
        self.readers = readers
        floats = [_DTYPES.get(i.type.tensor_type.elem_type) for i in model.graph.input if i.name not in self.inits]
        dtype = next((np.dtype(d).name for d in floats if d in (np.float32, np.float64)), "float32")
        self.graph = Graph(_clean(model.graph.name or "onnx"), dtype=dtype)
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
            t = g.stored(g.fresh(_clean(name)), np.array(arr), kind)
        if value is None:
            self.values[name] = t
        return t

    def name(self) -> str:
        """The graphdl name of the current node: its output's name if that is a model output, else its own."""
        out = self.node.output[0]
        return self.graph.fresh(_clean(out if out in self.graph_outputs or not self.node.name else self.node.name))

    def apply(self, op: str, inputs: list[Tensor | float], attrs: dict[str, Any] | None = None,
              kind: NodeKind | None = None) -> Tensor:
        """The node's final graphdl node."""
        return self.graph.apply(op, inputs, attrs or {}, name=self.name(), kind=kind)

    def part(self, op: str, inputs: list[Tensor | float], attrs: dict[str, Any] | None = None,
             suffix: str = "") -> Tensor:
        """An intermediate graphdl node ``<node>/<suffix or op>``."""
        base = _clean(self.node.name or self.node.output[0])
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
            t = g.placeholder(_clean(vi.name), shape, np.dtype(dtype).name)
            self.values[vi.name] = inputs[vi.name] = t
        fused = _fuse_matmul_add(self)
        for k, node in enumerate(self.model.graph.node):
            self.node = node
            if k in fused.skip:
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


# -- elementwise ----------------------------------------------------------------------------
_SAME = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg",
         "Sqrt": "sqrt", "Abs": "abs", "Sign": "sign", "Erf": "erf", "Add": "add", "Sub": "sub", "Mul": "mul",
         "Div": "div", "Pow": "pow", "Greater": "greater", "GreaterOrEqual": "greater_equal", "Less": "less",
         "LessOrEqual": "less_equal", "Equal": "equal", "Where": "where"}


def _same(op: str) -> Importer:
    def build(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
        return [ctx.apply(op, [ctx.input(i) for i in range(len(node.input))])]

    return build


for _onnx_op, _op in _SAME.items():
    IMPORTERS[_onnx_op] = _same(_op)


@importer("Max", "Min")
def _extremum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    ins = [ctx.input(i) for i in range(len(node.input))]
    op = "maximum" if node.op_type == "Max" else "minimum"
    if len(ins) == 1:
        return [ins[0]]
    out = ins[0]
    for k, t in enumerate(ins[1:], start=2):
        out = ctx.apply(op, [out, t]) if k == len(ins) else ctx.part(op, [out, t])
    return [out]


@importer("Identity")
def _identity(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.input(0)]


@importer("LeakyRelu")
def _leaky_relu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("leaky_relu", [ctx.input(0)], {"negative_slope": float(a.get("alpha", 0.01))})]


@importer("Elu")
def _elu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("elu", [ctx.input(0)], {"alpha": float(a.get("alpha", 1.0))})]


@importer("Gelu")
def _gelu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("gelu", [ctx.input(0)], {"approximate": a.get("approximate", "none")})]


@importer("Softplus")
def _softplus(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)  # ONNX's Softplus has no threshold: never switch to the identity
    return [ctx.apply("softplus", [x], {"beta": 1.0, "threshold": float(np.finfo(x.dtype).max)})]


@importer("Softmax", "LogSoftmax")
def _softmax(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    op = "softmax" if node.op_type == "Softmax" else "log_softmax"
    return [ctx.apply(op, [ctx.input(0)], {"axis": int(a.get("axis", -1))})]


@importer("Clip")
def _clip(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    lo, hi = ctx.const(1), ctx.const(2)
    bounds = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    if lo is None and hi is None:
        return [ctx.input(0)]
    return [ctx.apply("clip", [ctx.input(0)], bounds)]


# -- linear algebra -------------------------------------------------------------------------
@importer("Gemm")
def _gemm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = bool(a.get("transA", 0)), bool(a.get("transB", 0))
    w = ctx.array(node.input[1])
    c = ctx.array(node.input[2]) if ctx.has(2) else None
    fresh_w = node.input[1] not in ctx.values and ctx.readers[node.input[1]] == 1
    if (w is not None and w.ndim == 2 and fresh_w and not ta and alpha == 1.0 and beta == 1.0
            and (not ctx.has(2) or (c is not None and c.size == w.shape[0 if tb else 1] and c.ndim <= 2))):
        # A Linear layer: W stored as (in, out), transposed once here if the file has (out, in)
        ins = [ctx.input(0), ctx.input(1, NodeKind.PARAM, np.ascontiguousarray(w.T) if tb else w)]
        if ctx.has(2):
            ins.append(ctx.input(2, NodeKind.PARAM, c.reshape(-1)))
        return [ctx.apply("linear", ins)]
    if not ctx.has(2) and alpha == 1.0:
        return [ctx.apply("matmul", [ctx.input(0), ctx.input(1)], {"transpose_a": ta, "transpose_b": tb})]
    y = ctx.part("matmul", [ctx.input(0), ctx.input(1)], {"transpose_a": ta, "transpose_b": tb})
    if alpha != 1.0:
        y = ctx.part("mul", [y, alpha], suffix="alpha") if ctx.has(2) else ctx.apply("mul", [y, alpha])
    if not ctx.has(2):
        return [y]
    cc = ctx.input(2)
    if beta != 1.0:
        cc = ctx.part("mul", [cc, beta], suffix="beta")
    return [ctx.apply("add", [y, cc])]


@importer("MatMul")
def _matmul(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    w = ctx.array(node.input[1])
    if w is not None and w.ndim == 2 and len(x.shape) >= 2:
        return [ctx.apply("linear", [x, ctx.input(1, NodeKind.PARAM)])]
    y = ctx.input(1)
    if len(x.shape) < 2 or len(y.shape) < 2:
        raise ctx.refuse(f"MatMul of {len(x.shape)}-d and {len(y.shape)}-d operands; graphdl's matmul needs 2-d or "
                         "more (reshape vectors to matrices)")
    return [ctx.apply("matmul", [x, y])]


# -- convolution, pooling, normalisation --------------------------------------------------
def _pads(ctx: ImportContext, a: dict[str, Any], x: Tensor, kernel: list[int], strides: list[int],
          dilations: list[int]) -> tuple[int, int, int, int]:
    """graphdl's (top, bottom, left, right) from ONNX pads (top, left, bottom, right) or auto_pad."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        p = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        return p[0], p[2], p[1], p[3]
    if auto not in ("SAME_UPPER", "SAME_LOWER") or None in x.shape[2:]:
        raise ctx.refuse(f"auto_pad={auto} needs known image sizes")
    out = []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return out[0][0], out[0][1], out[1][0], out[1][1]


def _window(ctx: ImportContext, a: dict[str, Any], x: Tensor, kernel: list[int]) -> dict[str, Any]:
    if len(x.shape) != 4 or len(kernel) != 2:
        raise ctx.refuse(f"graphdl imports 2-d convolution and pooling only (input {x.shape}, kernel {kernel})")
    if a.get("ceil_mode", 0):
        raise ctx.refuse("ceil_mode=1 is not supported")
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    return {"kernel": tuple(kernel), "stride": tuple(strides), "dilation": tuple(dilations),
            "padding": _pads(ctx, a, x, kernel, strides, dilations)}


@importer("Conv")
def _conv(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, w = ctx.input(0), ctx.input(1, NodeKind.PARAM)
    if len(x.shape) == 3:  # 1-d: graphdl's conv1d
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ctx.refuse("auto_pad SAME for a 1-d convolution is not supported")
        left, right = list(a.get("pads", [0, 0])) if a.get("auto_pad", "NOTSET") == "NOTSET" else [0, 0]
        attrs = {"kernel": (int(w.shape[2]),), "stride": tuple(a.get("strides", [1])), "padding": (left, right),
                 "dilation": tuple(a.get("dilations", [1])), "groups": int(a.get("group", 1))}
        ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
        return [ctx.apply("conv1d", ins, attrs)]
    attrs = _window(ctx, a, x, list(a.get("kernel_shape", w.shape[2:])))
    attrs["groups"] = int(a.get("group", 1))
    ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    return [ctx.apply("conv2d", ins, attrs)]


@importer("MaxPool", "AveragePool")
def _pool(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    attrs = _window(ctx, a, x, list(a["kernel_shape"]))
    if node.op_type == "MaxPool":
        if a.get("storage_order", 0):
            raise ctx.refuse("storage_order=1 is not supported")
        return [ctx.apply("max_pool2d", [x], attrs)]
    if not a.get("count_include_pad", 0) and any(attrs["padding"]):
        attrs["count_include_pad"] = False  # the mean of the real inputs only, as ONNX's default
    if attrs["dilation"] != (1, 1):
        raise ctx.refuse("dilated AveragePool is not supported")
    del attrs["dilation"]
    return [ctx.apply("avg_pool2d", [x], attrs)]


@importer("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    op = "mean" if node.op_type == "GlobalAveragePool" else "max"
    return [ctx.apply(op, [x], {"axis": tuple(range(2, len(x.shape))), "keepdims": True})]


@importer("BatchNormalization")
def _batch_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("training_mode", 0):
        raise ctx.refuse("training_mode=1 (export the model in inference mode; graphdl switches modes itself)")
    ins = [ctx.input(0), ctx.input(1, NodeKind.PARAM), ctx.input(2, NodeKind.PARAM), ctx.input(3, NodeKind.STATE),
           ctx.input(4, NodeKind.STATE)]
    # ONNX's momentum weighs the running value; graphdl's (PyTorch's) weighs the batch statistic
    attrs = {"eps": float(a.get("epsilon", 1e-5)), "momentum": 1.0 - float(a.get("momentum", 0.9))}
    return [ctx.apply("batch_norm", ins, attrs)]


@importer("LayerNormalization")
def _layer_norm(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", -1)) % len(x.shape)
    ins = [x, ctx.input(1, NodeKind.PARAM)] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    if len(ins) == 2:  # graphdl's layer_norm takes both or neither: a zero shift changes no value
        ins.append(ctx.graph.stored(ctx.graph.fresh(f"{_clean(node.name)}.bias"),
                                    np.zeros(ins[1].shape, dtype=x.dtype), NodeKind.CONSTANT))
    return [ctx.apply("layer_norm", ins, {"ndim": len(x.shape) - axis, "eps": float(a.get("epsilon", 1e-5))})]


@importer("Dropout")
def _dropout(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    mode = ctx.const(2, False)
    if bool(mode):
        raise ctx.refuse("training_mode=true is not supported (graphdl chooses the mode when compiling)")
    p = float(ctx.const(1, a.get("ratio", 0.5)))
    g: Graph = ctx.graph
    counter = g.stored(g.fresh(f"{_clean(node.name or node.output[0])}.counter"), np.zeros(1, np.int64),
                       NodeKind.STATE)
    return [ctx.apply("dropout", [ctx.input(0), counter], {"p": p, "seed": int(g.rng.integers(2**31))})]


# -- layout ---------------------------------------------------------------------------------
def _target(ctx: ImportContext, shape: list[int | None]) -> tuple[int, ...]:
    if sum(d is None or d == -1 for d in shape) > 1:
        raise ctx.refuse(f"the result {shape} has more than one unknown dimension")
    return tuple(-1 if d is None else int(d) for d in shape)


@importer("Reshape")
def _reshape(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    target = ctx.sizes(1)
    if target is None:
        raise ctx.refuse("the target shape must be a constant or computed from shapes")
    if not a.get("allowzero", 0):
        target = [(x.shape[i] if d == 0 else d) for i, d in enumerate(target)]
    unknown = [k for k, d in enumerate(target) if d is None]
    if len(unknown) == 1 and -1 in target and x.shape.count(None) == 1:
        # view(x.size(0), -1): the run-time size is x's unknown (batch) dimension, so the -1 is known
        known_x = math.prod(d for d in x.shape if d is not None)
        known_t = math.prod(d for d in target if d not in (None, -1))
        if known_t and known_x % known_t == 0:
            target[target.index(-1)] = known_x // known_t
    return [ctx.apply("reshape", [x], {"shape": _target(ctx, target)})]


@importer("Flatten")
def _flatten(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", 1)) % (len(x.shape) + 1) if x.shape else 0
    head, tail = x.shape[:axis], x.shape[axis:]
    target = [None if None in head else math.prod(head), None if None in tail else math.prod(tail)]
    return [ctx.apply("reshape", [x], {"shape": _target(ctx, target)})]


@importer("Squeeze", "Unsqueeze")
def _squeeze(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    axes = ctx.const(1) if ctx.has(1) else a.get("axes")
    axis = None if axes is None else tuple(int(i) for i in np.asarray(axes).reshape(-1))
    x = ctx.input(0)
    if node.op_type == "Unsqueeze":
        return [ctx.apply("expand_dims", [x], {"axis": axis})]
    if axis is not None and any(x.shape[a] is None for a in axis):
        # ONNX requires size 1, which graphdl cannot see for an unknown size: read position 0 instead
        from graphdl.ops.indexing import INT, SLICE

        drop = {a % len(x.shape) for a in axis}
        entries = tuple((INT, 0) if k in drop else (SLICE, None, None, 1) for k in range(len(x.shape)))
        return [ctx.apply("slice", [x], {"index": entries})]
    return [ctx.apply("squeeze", [x], {"axis": axis})]


@importer("Expand")
def _expand(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, shape = ctx.input(0), ctx.sizes(1)
    if shape is None:
        raise ctx.refuse("the target shape must be a constant or computed from shapes")
    nd = max(len(x.shape), len(shape))
    ss = [1] * (nd - len(shape)) + shape
    # ONNX broadcasts both ways: a 1 keeps the input's size (None in graphdl's broadcast_to)
    lead = nd - len(x.shape)
    target = [(None if k >= lead else 1) if s in (1, None) else s for k, s in enumerate(ss)]
    return [ctx.apply("broadcast_to", [x], {"shape": tuple(target)})]


@importer("Tile")
def _tile(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("tile", [ctx.input(0)], {"reps": tuple(int(r) for r in ctx.const(1))})]


@importer("Trilu")
def _trilu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    k = int(ctx.const(1, 0))
    return [ctx.apply("triu" if a.get("upper", 1) else "tril", [ctx.input(0)], {"k": k})]


@importer("OneHot")
def _one_hot(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    depth, values = ctx.const(1), ctx.const(2)
    if int(a.get("axis", -1)) != -1 or values.tolist() != [0, 1]:
        raise ctx.refuse("only OneHot along the last axis with values [0, 1] is supported")
    return [ctx.apply("one_hot", [ctx.input(0)], {"num_classes": int(depth), "dtype": values.dtype.name})]


@importer("Einsum")
def _einsum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops import contract

    ins = [ctx.input(i) for i in range(len(node.input))]
    try:
        eq = contract.normalize(a["equation"], [len(t.shape) for t in ins])
    except ValueError as e:
        raise ctx.refuse(f"equation {a['equation']!r}: {e}") from None
    return [ctx.apply("einsum", ins, {"equation": eq})]


@importer("GatherElements")
def _gather_elements(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # ONNX allows negative indices, counted from the end: graphdl's wrap=True
    return [ctx.apply("gather", [ctx.input(0), ctx.input(1)], {"axis": int(a.get("axis", 0)), "wrap": True})]


@importer("ScatterElements")
def _scatter_elements(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    reduction = a.get("reduction", "none")
    if reduction not in ("none", "add"):
        raise ctx.refuse(f"reduction={reduction!r} is not supported (none or add)")
    op = "scatter" if reduction == "none" else "scatter_add"
    return [ctx.apply(op, [ctx.input(0), ctx.input(1), ctx.input(2)], {"axis": int(a.get("axis", 0))})]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@importer("Pad")
def _pad(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    nd = len(x.shape)
    pads = [int(p) for p in ctx.const(1)]
    axes = [int(i) % nd for i in ctx.const(3, list(range(nd)))]
    begins, ends = [0] * nd, [0] * nd
    for k, axis in enumerate(axes):
        begins[axis], ends[axis] = pads[k], pads[k + len(axes)]
    torch_pad: list[int] = []
    for axis in reversed(range(nd)):  # PyTorch order: the last axis first
        torch_pad += [begins[axis], ends[axis]]
    while len(torch_pad) > 2 and torch_pad[-2:] == [0, 0]:
        torch_pad = torch_pad[:-2]
    mode = a.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.refuse(f"mode {mode!r} is not supported")
    value = ctx.const(2)
    attrs = {"pad": tuple(torch_pad), "mode": _PAD_MODES[mode]}
    if mode == "constant":
        attrs["value"] = 0.0 if value is None or value.size == 0 else float(value)
    return [ctx.apply("pad", [x], attrs)]


@importer("Transpose")
def _transpose(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    perm = a.get("perm")
    return [ctx.apply("transpose", [ctx.input(0)], {"axes": None if perm is None else tuple(int(p) for p in perm)})]


@importer("Concat")
def _concat(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("concat", [ctx.input(i) for i in range(len(node.input))], {"axis": int(a["axis"])})]


@importer("Slice")
def _slice(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops.indexing import SLICE

    x = ctx.input(0)
    nd = len(x.shape)
    starts, ends = ctx.const(1), ctx.const(2)
    axes = ctx.const(3, list(range(len(starts))))
    steps = ctx.const(4, [1] * len(starts))
    if all(int(s) == -1 for s in steps) and all(int(b) == -1 for b in starts) and all(
            int(e) <= -(2**31) for e in ends):  # a full reversal of each axis
        return [ctx.apply("flip", [x], {"axis": tuple(int(i) % nd for i in axes)})]
    entries = [(SLICE, None, None, 1)] * nd
    for axis, start, stop, step in zip(axes, starts, ends, steps):
        start, stop, step = int(start), int(stop), int(step)
        if step == 0:
            raise ctx.refuse("a Slice step of 0")
        # ONNX clamps like Python slicing; the int64 extremes mean "to the end"
        entries[int(axis) % nd] = (SLICE, None if abs(start) >= 2**62 else start,
                                   None if abs(stop) >= 2**62 else stop, step)
    return [ctx.apply("slice", [x], {"index": tuple(entries)})]


# -- reductions and lookups -----------------------------------------------------------------
#: ONNX reductions and the graphdl ops they become (same axes/keepdims/noop_with_empty_axes rules).
REDUCTIONS = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
              "ReduceProd": "prod", "ReduceLogSumExp": "logsumexp"}


@importer(*REDUCTIONS)
def _reduce(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    op = REDUCTIONS[node.op_type]
    axes = ctx.const(1) if ctx.has(1) else a.get("axes")
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None and a.get("noop_with_empty_axes", 0):
        return [ctx.input(0)]
    attrs = {"axis": None if axes is None else tuple(int(i) for i in axes), "keepdims": bool(a.get("keepdims", 1))}
    return [ctx.apply(op, [ctx.input(0)], attrs)]


@importer("Gather")
def _gather(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    table = ctx.array(node.input[0])
    if table is not None and table.ndim == 2 and int(a.get("axis", 0)) == 0 and ctx.array(node.input[1]) is None:
        return [ctx.apply("embedding", [ctx.input(1), ctx.input(0, NodeKind.PARAM)])]
    index = ctx.array(node.input[1])
    x = ctx.input(0)
    if index is None or index.ndim > 1:
        raise ctx.refuse("Gather is imported for a constant table read by computed ids (an embedding), or "
                         "for constant 0-d or 1-d indices")
    axis = int(a.get("axis", 0)) % len(x.shape)
    size = x.shape[axis]
    picks = [int(i) + (size if i < 0 and size is not None else 0) for i in index.reshape(-1)]
    if any(i < 0 or (size is not None and i >= size) for i in picks):
        raise ctx.refuse(f"indices {index.tolist()} are out of range for axis {axis} of {x.shape}")
    if index.ndim == 0:  # one position: a slice without its axis
        part = ctx.part("slice", [x], {"axis": axis, "start": picks[0], "stop": picks[0] + 1})
        return [ctx.apply("squeeze", [part], {"axis": (axis,)})]
    if picks == list(range(picks[0], picks[0] + len(picks))):
        return [ctx.apply("slice", [x], {"axis": axis, "start": picks[0], "stop": picks[0] + len(picks)})]
    parts = [ctx.part("slice", [x], {"axis": axis, "start": i, "stop": i + 1}, suffix=f"pick{k}")
             for k, i in enumerate(picks)]
    return [ctx.apply("concat", parts, {"axis": axis})]


@importer("SoftmaxCrossEntropyLoss")
def _sce(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("reduction", "mean") != "mean" or ctx.has(2) or "ignore_index" in a:
        raise ctx.refuse("only reduction='mean' without weights or ignore_index is supported")
    return [ctx.apply("softmax_cross_entropy", [ctx.input(0), ctx.input(1)], kind=NodeKind.LOSS)]


# -- more activations, split, more convolutions, class losses ---------------------------------
for _onnx_op, _op in {"HardSwish": "hardswish", "Mish": "mish", "Softsign": "softsign"}.items():
    IMPORTERS[_onnx_op] = _same(_op)


@importer("HardSigmoid")
def _hardsigmoid(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1.0 / 6.0) < 1e-7 and beta == 0.5:  # PyTorch's hardsigmoid
        return [ctx.apply("hardsigmoid", [ctx.input(0)])]
    y = ctx.part("add", [ctx.part("mul", [ctx.input(0), alpha]), beta])
    return [ctx.apply("clip", [y], {"min": 0.0, "max": 1.0})]


@importer("Selu")
def _selu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE

    alpha, gamma = float(a.get("alpha", 1.67326319217681884765625)), float(a.get("gamma", 1.05070102214813232421875))
    if abs(alpha - SELU_ALPHA) > 1e-6 or abs(gamma - SELU_SCALE) > 1e-6:
        raise ctx.refuse(f"Selu with alpha {alpha} and gamma {gamma} (graphdl has the standard constants only)")
    return [ctx.apply("selu", [ctx.input(0)])]


@importer("Celu")
def _celu(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    return [ctx.apply("celu", [ctx.input(0)], {"alpha": float(a.get("alpha", 1.0))})]


@importer("Split")
def _split(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x = ctx.input(0)
    axis = int(a.get("axis", 0)) % len(x.shape)
    sizes = ctx.const(1) if ctx.has(1) else a.get("split")
    if sizes is None:
        count, size = len(node.output), x.shape[axis]
        if size is None:
            raise ctx.refuse(f"splitting axis {axis}, whose size is unknown, is not supported")
        step = -(-size // count)  # ONNX: equal parts, the last one smaller
        sizes = [min(step, size - k * step) for k in range(count)]
    outs = ctx.graph.apply_multi("split", [x], {"sizes": tuple(int(s) for s in sizes), "axis": axis},
                                 name=ctx.name())
    return list(outs)


@importer("ConvTranspose")
def _conv_transpose(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, w = ctx.input(0), ctx.input(1, NodeKind.PARAM)
    if "output_shape" in a or a.get("auto_pad", "NOTSET") != "NOTSET":
        raise ctx.refuse("output_shape and auto_pad are not supported; give pads and output_padding")
    attrs = _window(ctx, a, x, list(a.get("kernel_shape", w.shape[2:])))
    attrs["groups"] = int(a.get("group", 1))
    attrs["output_padding"] = tuple(a.get("output_padding", (0, 0)))
    ins = [x, w] + ([ctx.input(2, NodeKind.PARAM)] if ctx.has(2) else [])
    return [ctx.apply("conv_transpose2d", ins, attrs)]


@importer("NegativeLogLikelihoodLoss")
def _nll(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("reduction", "mean") != "none":
        raise ctx.refuse("only reduction='none' is imported (reduce the per-sample values with ReduceMean/Sum)")
    ins = [ctx.input(0), ctx.input(1)] + ([ctx.input(2, NodeKind.CONSTANT)] if ctx.has(2) else [])
    attrs = {} if "ignore_index" not in a else {"ignore_index": int(a["ignore_index"])}
    return [ctx.apply("class_nll", ins, attrs)]


# -- shape arithmetic: Shape -> Gather/Slice/Unsqueeze/Concat/Mul -> Reshape ------------------
@importer("Shape")
def _shape(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    dims = list(ctx.input(0).shape)
    start, end = int(a.get("start", 0)), a.get("end")
    ctx.shape_values[node.output[0]] = dims[start:None if end is None else int(end)]
    return [None]


def _on_sizes(fn: Importer, sized: Callable[[ImportContext, Any, dict[str, Any]], list[int | None] | None]
              ) -> Importer:
    """An importer that computes on sizes when its first input is a shape value, else builds nodes."""

    def build(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
        if any(i in ctx.shape_values for i in node.input):
            out = sized(ctx, node, a)
            if out is None:
                raise ctx.refuse("this computation on shapes is not supported")
            ctx.shape_values[node.output[0]] = out
            return [None]
        return fn(ctx, node, a)

    return build


def _sized_gather(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    sizes, index = ctx.sizes(0), ctx.const(1)
    if sizes is None or int(a.get("axis", 0)) != 0:
        return None
    return [sizes[int(i)] for i in np.asarray(index).reshape(-1)]


def _sized_same(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    return ctx.sizes(0)  # Unsqueeze/Squeeze/Identity/Cast of a 0-d or 1-d size list keep the sizes


def _sized_concat(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    parts = [ctx.sizes(i) for i in range(len(node.input))]
    return None if any(p is None for p in parts) else [d for p in parts for d in p]


def _sized_slice(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    sizes, start, end = ctx.sizes(0), ctx.const(1), ctx.const(2)
    steps = ctx.const(4, [1])
    if sizes is None or len(start) != 1 or int(steps[0]) != 1:
        return None
    return sizes[int(start[0]):int(min(end[0], len(sizes)))]


def _sized_arith(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[int | None] | None:
    x, y = ctx.sizes(0), ctx.sizes(1)
    if x is None or y is None:
        return None
    fn = {"Mul": lambda p, q: p * q, "Add": lambda p, q: p + q, "Sub": lambda p, q: p - q,
          "Div": lambda p, q: p // q}[node.op_type]
    n = max(len(x), len(y))
    x, y = (x * n if len(x) == 1 else x), (y * n if len(y) == 1 else y)
    return [None if p is None or q is None else int(fn(p, q)) for p, q in zip(x, y)]


def _div(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    x, y = ctx.input(0), ctx.input(1)
    integer = all(np.dtype(t.dtype).kind in "iu" for t in (x, y))
    return [ctx.apply("trunc_divide" if integer else "div", [x, y])]  # ONNX's integer Div truncates


IMPORTERS["Div"] = _div
for _onnx_op, _sized in (("Gather", _sized_gather), ("Unsqueeze", _sized_same), ("Squeeze", _sized_same),
                         ("Identity", _sized_same), ("Concat", _sized_concat), ("Slice", _sized_slice),
                         ("Mul", _sized_arith), ("Add", _sized_arith), ("Sub", _sized_arith),
                         ("Div", _sized_arith)):
    IMPORTERS[_onnx_op] = _on_sizes(IMPORTERS[_onnx_op], _sized)


# -- math ops -------------------------------------------------------------------------------
for _onnx_op, _op in {"Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan",
                      "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
                      "Floor": "floor", "Ceil": "ceil", "Round": "round", "Reciprocal": "reciprocal",
                      "IsNaN": "isnan", "Not": "logical_not", "And": "logical_and", "Or": "logical_or",
                      "Xor": "logical_xor"}.items():
    IMPORTERS[_onnx_op] = _same(_op)


@importer("IsInf")
def _isinf(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if not (a.get("detect_negative", 1) and a.get("detect_positive", 1)):
        raise ctx.refuse("IsInf detecting one sign only is not supported")
    return [ctx.apply("isinf", [ctx.input(0)])]


@importer("Cast")
def _cast(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if node.input[0] in ctx.shape_values:  # sizes stay sizes
        ctx.shape_values[node.output[0]] = list(ctx.shape_values[node.input[0]])
        return [None]
    dtype = _DTYPES.get(int(a["to"]))
    if dtype is None:
        raise ctx.refuse(f"Cast to ONNX type {a['to']} (graphdl has float32/64, int32/64, bool)")
    x = ctx.input(0)
    if np.dtype(x.dtype) == np.dtype(dtype):
        return [x]
    return [ctx.apply("astype", [x], {"dtype": np.dtype(dtype).name})]


@importer("ArgMax", "ArgMin")
def _arg(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("select_last_index", 0):
        raise ctx.refuse("select_last_index=1 is not supported (graphdl picks the first extremum)")
    op = "argmax" if node.op_type == "ArgMax" else "argmin"
    return [ctx.apply(op, [ctx.input(0)], {"axis": int(a.get("axis", 0)), "keepdims": bool(a.get("keepdims", 1))})]


@importer("CumSum")
def _cumsum(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    if a.get("exclusive", 0):
        raise ctx.refuse("exclusive=1 is not supported")
    axis = int(np.asarray(ctx.const(1)).reshape(-1)[0])
    return [ctx.apply("cumsum", [ctx.input(0)], {"axis": axis, "reverse": bool(a.get("reverse", 0))})]


@importer("Mod")
def _mod(ctx: ImportContext, node: Any, a: dict[str, Any]) -> list[Tensor | None]:
    # fmod=1: C's fmod (sign of the dividend); fmod=0: Python's % (sign of the divisor)
    return [ctx.apply("fmod" if a.get("fmod", 0) else "remainder", [ctx.input(0), ctx.input(1)])]
