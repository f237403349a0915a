"""Import: an ONNX file as a graphdl Graph, built through the public graph API after bounded checks.

Nothing from the file is executed or imported. Before parsing, the file's size is checked; before any
array is built, every tensor's declared size and data length (external data is refused), the opset and
every node's op are checked, so an unsupported op is refused up front with its name, node and opset.
Initializers become trainable parameters (BatchNorm's running statistics become state; initializers
graphdl itself exported keep their kind), so an imported model can be compiled with an optimizer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphdl.errors import GraphDLError, ModelFileError, file_path
from graphdl.graph import Graph, Tensor
from graphdl.ir import NodeKind

#: Files larger than this are refused before they are read (protobuf cannot hold more than 2 GiB anyway).
MAX_FILE_BYTES = 2**31 - 1
#: One tensor larger than this is refused before its array is built.
MAX_TENSOR_BYTES = 2**30
#: The opsets the importers read; the ops they map keep their semantics across this range.
MIN_OPSET = 13

_DTYPES = {1: np.float32, 11: np.float64, 7: np.int64, 6: np.int32, 9: np.bool_}
_KINDS = {"graphdl:param": NodeKind.PARAM, "graphdl:state": NodeKind.STATE, "graphdl:constant": NodeKind.CONSTANT}


class UnsupportedOpError(ModelFileError):
    """An ONNX model uses an op (or an op's variant) that graphdl cannot import."""


@dataclass
class ImportedModel:
    """An imported ONNX model: the graph, its inputs (by ONNX name) and outputs, ready to compile."""

    graph: Graph
    inputs: dict[str, Tensor]
    outputs: list[Tensor]
    opset: int
    producer: str = ""
    initializers: list[str] = field(default_factory=list)

    def compile(self, optimizer: Any = None, *, loss: Tensor | None = None, outputs: Sequence[Tensor] | None = None,
                **options: Any) -> Any:
        """``gd.compile`` the model's outputs (and ``loss``, for fine-tuning with ``optimizer``)."""
        from graphdl.compiler import compile

        outs = list(outputs if outputs is not None else self.outputs)
        if loss is not None and loss not in outs:
            outs.insert(0, loss)
        return compile(outs, optimizer, loss=loss, **options)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelFileError("reading ONNX files needs the onnx package: pip install graphdl[onnx]") from None
    return onnx


def _check_tensor(t: Any, where: str, max_tensor_bytes: int) -> None:
    """Refuse external data, unknown types, negative or huge sizes and data of the wrong length."""
    if t.data_location == 1 or len(t.external_data):
        raise ModelFileError(f"{where}: tensor '{t.name}' keeps its data in an external file; graphdl refuses "
                             "external data (save the model with all tensors inside the .onnx file)")
    dtype = _DTYPES.get(t.data_type)
    if dtype is None:
        raise ModelFileError(f"{where}: tensor '{t.name}' has ONNX data type {t.data_type}, which graphdl does not "
                             "read (float, double, int64, int32, bool)")
    if any(d < 0 for d in t.dims):
        raise ModelFileError(f"{where}: tensor '{t.name}' has negative dimensions {list(t.dims)}")
    count = math.prod(t.dims)
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > max_tensor_bytes:
        raise ModelFileError(f"{where}: tensor '{t.name}' {list(t.dims)} would take {nbytes:,} bytes, more than the "
                             f"limit of {max_tensor_bytes:,}")
    if t.raw_data:
        if len(t.raw_data) != nbytes:
            raise ModelFileError(f"{where}: tensor '{t.name}' {list(t.dims)} needs {nbytes:,} bytes of data but has "
                                 f"{len(t.raw_data):,}; the file is corrupted")
        return
    field_name = {1: "float_data", 11: "double_data", 7: "int64_data"}.get(t.data_type, "int32_data")
    have = len(getattr(t, field_name))
    if have != count:
        raise ModelFileError(f"{where}: tensor '{t.name}' {list(t.dims)} needs {count:,} values but has {have:,}; "
                             "the file is corrupted")


def read_model(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES,
               max_tensor_bytes: int = MAX_TENSOR_BYTES) -> Any:
    """Parse and check an ONNX file (size, tensors, external data, structure); every problem is a ModelFileError."""
    onnx = _import_onnx()
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ModelFileError(f"{path} is {size:,} bytes, more than the limit of {max_bytes:,}")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise  # as for graphdl's own files
    except OSError as e:
        raise ModelFileError(f"{path} cannot be read: {e}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends: the bytes are not an ONNX model
        raise ModelFileError(f"{path} is not a readable ONNX model (truncated or corrupted?): "
                             f"{type(e).__name__}: {e}") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelFileError(f"{path} is not an ONNX model (no graph or no opset)")
    where = path
    if len(model.graph.sparse_initializer):
        raise ModelFileError(f"{where}: sparse initializers are not supported")
    for t in model.graph.initializer:
        _check_tensor(t, where, max_tensor_bytes)
    for node in model.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                _check_tensor(a.t, f"{where}: node '{node.name}'", max_tensor_bytes)
            if len(a.tensors) or a.HasField("g") or len(a.graphs):
                raise UnsupportedOpError(f"{where}: node '{node.name}' ({node.op_type}) has tensor-list or subgraph "
                                         "attributes, which graphdl does not import")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # ValidationError, or a C++ error on a malformed graph
        raise ModelFileError(f"{path} fails onnx.checker: {type(e).__name__}: {e}") from None
    return model


def model_opset(model: Any, where: str) -> int:
    """The default-domain opset, checked to be one the importers read."""
    import onnx

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UnsupportedOpError(f"{where} uses ONNX opset {opset}; graphdl imports opsets {MIN_OPSET} to "
                                 f"{onnx.defs.onnx_opset_version()} (convert it with onnx.version_converter)")
    return opset


def check_supported(model: Any, opset: int, where: str) -> None:
    """Refuse, before anything is built, every node whose op has no importer (op, node name, opset)."""
    from graphdl.onnx.importers import IMPORTERS

    bad = [n for n in model.graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in IMPORTERS]
    if bad:
        lines = [f"op '{n.op_type}'{f' (domain {n.domain})' if n.domain else ''} at node "
                 f"'{n.name or n.output[0]}'" for n in bad]
        raise UnsupportedOpError(f"{where}: graphdl cannot import {len(bad)} node(s) of this opset-{opset} model:\n  "
                                 + "\n  ".join(lines) + f"\nsupported ops: {', '.join(sorted(IMPORTERS))}")


def load_model(model: Any, where: str = "<model>") -> ImportedModel:
    """Build a graphdl graph from a checked ``onnx.ModelProto`` (see ``read_model``)."""
    from graphdl.onnx.importers import ImportContext

    opset = model_opset(model, where)
    check_supported(model, opset, where)
    ctx = ImportContext(model, opset, where)
    try:
        return ctx.build()
    except UnsupportedOpError:
        raise
    except GraphDLError as e:
        raise ModelFileError(f"{where}: the ONNX graph does not build in graphdl: {e}") from None


def load(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES,
         max_tensor_bytes: int = MAX_TENSOR_BYTES) -> ImportedModel:
    """Read an ONNX file into a graphdl graph; ``.compile()`` it (with an optimizer and a loss to fine-tune).

    Malformed or hostile files raise ModelFileError (UnsupportedOpError for ops graphdl does not have);
    memory is bounded by ``max_bytes`` for the file and ``max_tensor_bytes`` per tensor.
    """
    path = file_path(path, "gd.onnx.load", ModelFileError)
    model = read_model(path, max_bytes, max_tensor_bytes)
    return load_model(model, path)

