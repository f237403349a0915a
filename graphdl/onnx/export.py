"""Export: a model's inference plan as an ONNX ModelProto, one table-driven exporter per op.

A training executable is exported through its inference plan: gradient and update nodes are dropped and
every mode-dependent node (BatchNorm, Dropout) is set to inference mode explicitly, so BatchNorm reads
its running statistics and Dropout is the identity. Unknown dimensions stay symbolic (``batch`` for the
leading one), parameters become initializers under their graph names, and ONNX node and value names are
the graphdl node names (helper nodes are ``<node>/<part>``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graphdl.errors import GraphDLError, GraphError, file_path
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, make_attrs, node_of, parse_ref, ref, value_info
from graphdl.registry import get_op

if TYPE_CHECKING:
    import onnx

    from graphdl.graph import Tensor

#: The ONNX opset written by default (Gelu needs 20, LayerNormalization 17).
DEFAULT_OPSET = 21
#: The oldest opset the exporters can write (Softmax/ReduceSum/Squeeze take their opset-13 forms).
MIN_OPSET = 13
#: Initializer doc strings telling the importer which kind of stored node an initializer was.
KIND_TAG = {NodeKind.PARAM: "graphdl:param", NodeKind.STATE: "graphdl:state", NodeKind.CONSTANT: "graphdl:constant"}


class ExportError(GraphDLError):
    """A graph cannot be written as ONNX: an op without an exporter, a training-only op, a bad opset."""


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ExportError("ONNX export needs the onnx package: pip install graphdl[onnx]") from None
    return onnx


class ExportContext:
    """What an exporter sees: emit ONNX nodes and initializers for one graphdl node at a time."""

    def __init__(self, onnx: Any, opset: int, nodes: dict[str, Node]) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes = nodes
        self.onnx_nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set(nodes)

    def fresh(self, base: str) -> str:
        """A value or node name not used yet: ``base``, else ``base_1``, ..."""
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def emit(self, op_type: str, inputs: Sequence[str], name: str, outputs: Sequence[str] | None = None,
             **attrs: Any) -> str:
        """Add an ONNX node ``name`` (its single output has the same name unless ``outputs`` says)."""
        outputs = [name] if outputs is None else list(outputs)
        self.onnx_nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0]

    def helper(self, node: Node, part: str, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Add an intermediate ONNX node ``<node>/<part>``; returns its output name."""
        return self.emit(op_type, inputs, self.fresh(f"{node.name}/{part}"), **attrs)

    def initializer(self, name: str, value: np.ndarray, kind: NodeKind = NodeKind.CONSTANT) -> str:
        """Add an initializer (``kind`` recorded in its doc string for the importer)."""
        t = self.onnx.numpy_helper.from_array(np.require(value, requirements="C"), name)
        t.doc_string = KIND_TAG[kind]
        self.initializers.append(t)
        return name

    def const(self, node: Node, part: str, value: Any, dtype: Any = np.int64) -> str:
        """A helper constant initializer ``<node>/<part>`` (shapes, axes, bounds)."""
        return self.initializer(self.fresh(f"{node.name}/{part}"), np.asarray(value, dtype=dtype))

    def dtype(self, ref: str) -> np.dtype:
        """The dtype of the value ``ref`` (``node`` or ``node:k``)."""
        return np.dtype(value_info(self.nodes, ref)[1])

    def shape(self, ref: str) -> tuple:
        """The (symbolic) shape of the value ``ref``."""
        return tuple(value_info(self.nodes, ref)[0])


Exporter = Callable[[ExportContext, Node], None]


def same(op_type: str) -> Exporter:
    """An exporter writing one ONNX node of ``op_type`` with the graphdl node's inputs and name."""

    def export(ctx: ExportContext, n: Node) -> None:
        ctx.emit(op_type, n.inputs, n.name)

    return export


def export_body(ctx: ExportContext, owner: Node, body: IR, exporters: dict[str, Exporter]) -> Any:
    """A sub-graph (a scan's body) as an ONNX GraphProto: node names prefixed by ``owner``'s so they never
    meet outer names; the inputs after the scanned ones (captures) are Identity nodes reading the owner's
    inputs from the outer scope; every output an Identity of its own (outputs may repeat a value)."""
    prefix = f"{owner.name}/"

    def rename(value: str) -> str:
        node, k = parse_ref(value)
        return ref(prefix + node, k)

    nodes = tuple(dataclasses.replace(m, name=prefix + m.name, inputs=tuple(map(rename, m.inputs))) for m in body.nodes)
    inner = ExportContext(ctx.onnx, ctx.opset, {m.name: m for m in nodes})
    inner._names |= ctx._names
    placeholders = [m for m in nodes if m.kind is NodeKind.PLACEHOLDER]
    n_state = owner.attr["carries"] + owner.attr["xs"]
    inputs = [_value_info(ctx.onnx, m.name, m.shape, m.dtype, [None] * len(m.shape)) for m in placeholders[:n_state]]
    for m, outer in zip(placeholders[n_state:], owner.inputs[n_state:], strict=True):
        inner.emit("Identity", [outer], m.name)
    for m in nodes:
        if m.kind is not NodeKind.PLACEHOLDER:
            if m.op not in exporters:
                raise ExportError(f"{owner.describe()}: its body's node {m.describe()} has no ONNX exporter")
            exporters[m.op](inner, m)
    outputs = []
    for k, value in enumerate(map(rename, body.outputs)):
        name = inner.emit("Identity", [value], inner.fresh(f"{prefix}out{k}"))
        shape, dtype = value_info(inner.nodes, value)
        outputs.append(_value_info(ctx.onnx, name, shape, dtype, [None] * len(shape)))
    ctx._names |= inner._names
    return ctx.onnx.helper.make_graph(inner.onnx_nodes, prefix + "body", inputs, outputs,
                                      initializer=inner.initializers)


def _reads(onnx_nodes: Sequence[Any]) -> set[str]:
    """Every value name the nodes read, including from inside their sub-graphs (a Scan body's captures)."""
    names = set()
    for node in onnx_nodes:
        names.update(node.input)
        for attr in node.attribute:
            if attr.HasField("g"):
                names |= _reads(attr.g.node)
    return names


def _tensor_type(onnx: Any, dtype: str) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _value_info(onnx: Any, name: str, shape: Sequence[int | None], dtype: str, symbolic: Sequence[str | None]) -> Any:
    dims = [d if d is not None else s for d, s in zip(shape, symbolic)]
    return onnx.helper.make_tensor_value_info(name, _tensor_type(onnx, dtype), dims)


def _input_dims(node: Node) -> list[str | None]:
    return ["batch" if i == 0 else f"{node.name}_dim{i}" for i in range(len(node.shape))]


def _output_dims(shape: Sequence[int | None]) -> list[str | None]:
    return ["batch" if i == 0 else None for i in range(len(shape))]


def _names(outputs: Sequence[Tensor | str]) -> list[str]:
    from graphdl.tensor import Tensor

    if isinstance(outputs, str | Tensor):
        outputs = [outputs]
    bad = [o for o in outputs if not isinstance(o, str | Tensor)]
    if bad:
        raise ExportError(f"outputs are nodes or node names, got {bad[0]!r} ({type(bad[0]).__name__})")
    return [o if isinstance(o, str) else o.name for o in outputs]


def inference_ir(source: Any, outputs: Sequence[Tensor | str] | None = None) -> tuple[IR, dict[str, np.ndarray]]:
    """The compiled inference plan of an Executable or Graph computing ``outputs``, and its stored arrays.

    Defaults: an executable's outputs other than its training objective (all of them if that leaves
    none); for a Graph, every node nothing reads except losses and stored values.
    """
    from graphdl.executable import Executable
    from graphdl.graph import Builder
    from passes import CompileSpec, compile_graph

    if isinstance(source, Executable):
        from passes.pool_blocks import unfuse

        ir, values = unfuse(source.ir), source.values  # fused layers are nodes of their own again
        default = [o for o in ir.outputs if o != source.objective] or list(ir.outputs)
    elif isinstance(source, Builder):
        ir, values = source.freeze(), getattr(source, "values", {})
        read = {i for n in ir.nodes for i in n.inputs}
        default = [n.name for n in ir.nodes if n.name not in read and n.kind in (NodeKind.OP, NodeKind.GRADIENT)]
    else:
        raise ExportError(f"gd.onnx.export takes an Executable or a Graph, got {type(source).__name__}")
    names = _names(outputs) if outputs is not None else default
    by_name = ir.node_map()
    if not names:
        raise ExportError(f"'{ir.name}' has no outputs to export; pass outputs=[...]")
    for o in names:
        if node_of(o) not in by_name:
            raise ExportError(f"'{o}' is not a node of '{ir.name}'; its outputs are {list(ir.outputs)}. A value the "
                              "compiler no longer computes (a ReLU's, when the max pooling reading it now runs "
                              "first) is exported from the graph you built: gd.onnx.export(graph, path, outputs=...)")
        if by_name[node_of(o)].kind is NodeKind.UPDATE:
            raise ExportError(f"{by_name[node_of(o)].describe()} is an optimizer update; it has no value to export")
    nodes = []
    for n in ir.nodes:
        if n.kind is NodeKind.UPDATE:
            continue
        if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER and get_op(n.op).modal:
            n = dataclasses.replace(n, attrs=make_attrs({**n.attr, "training": False}))  # keeps every output
        nodes.append(n)
    options = {"training": False, "from_plan": isinstance(source, Executable)}
    compiled = compile_graph(IR(ir.name, tuple(nodes), tuple(names)), CompileSpec(tuple(names), options=options))
    return compiled, dict(values)


def to_model(source: Any, outputs: Sequence[Tensor | str] | None = None, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The ONNX model (checked with ``onnx.checker.check_model(..., full_check=True)``) of the inference plan."""
    from graphdl import __version__
    from graphdl.onnx.exporters import EXPORTERS, TRAINING_ONLY

    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset {opset!r} is not supported; use a whole number from {MIN_OPSET} to {newest}")
    ir, values = inference_ir(source, outputs)
    # Refuse up front, naming every op that cannot be written.
    bad = [n for n in ir.nodes if n.kind not in STORED_KINDS and n.kind is not NodeKind.PLACEHOLDER
           and n.op not in EXPORTERS]
    if bad:
        lines = [f"{n.describe()}: " + ("a training-only op (gradient or update); export the forward outputs"
                                        if n.op in TRAINING_ONLY else "no ONNX exporter for this op") for n in bad]
        raise ExportError(f"cannot export '{ir.name}' to ONNX opset {opset}:\n  " + "\n  ".join(lines))
    nodes = ir.node_map()
    ctx = ExportContext(onnx, opset, nodes)
    inputs = []
    for n in ir.nodes:
        if n.kind is NodeKind.PLACEHOLDER:
            inputs.append(_value_info(onnx, n.name, n.shape, n.dtype, _input_dims(n)))
        elif n.kind in STORED_KINDS and n.op != "scalar":
            if n.name not in values:
                raise GraphError(f"no value for {n.describe()}; load the model's weights first")
            ctx.initializer(n.name, np.asarray(values[n.name]), n.kind)
        else:
            EXPORTERS[n.op](ctx, n)
    outs = []
    for o in ir.outputs:
        shape, dtype = value_info(nodes, o)
        outs.append(_value_info(onnx, o, shape, dtype, _output_dims(shape)))
    # State only training reads (Dropout's counter) is not part of the inference model.
    read = _reads(ctx.onnx_nodes) | set(ir.outputs)
    inits = [t for t in ctx.initializers if t.name in read]
    graph = onnx.helper.make_graph(ctx.onnx_nodes, ir.name, inputs, outs, initializer=inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="graphdl",
                                   producer_version=__version__)
    model.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:  # an exporter bug
        raise ExportError(f"the ONNX model of '{ir.name}' fails onnx.checker: {e}") from None
    return model


def export(source: Any, path: str | os.PathLike[str], outputs: Sequence[Tensor | str] | None = None,
           opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write the inference plan of ``source`` (an Executable or a Graph) to ``path`` as ONNX; returns the model.

    ``outputs`` (nodes or names) default to the executable's outputs other than its training objective.
    The file is written atomically.
    """
    path = file_path(path, "gd.onnx.export")
    model = to_model(source, outputs, opset)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return model
