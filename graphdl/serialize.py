"""One model file: a zip of manifest.json, graph.json and weights.npz, written atomically.

The manifest names the format and its version, the graphdl version, and the SHA-256 of each member.
Loading checks all of it and never runs code from the file: JSON for the graph, ``np.load`` with
``allow_pickle=False`` for the weights, and ops looked up by name in the op table.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from graphdl.errors import GraphDLError, ModelFileError
from graphdl.ir import IR, Node, NodeKind, make_attrs, name_problem

FORMAT_NAME = "graphdl-model"
FORMAT_VERSION = 1
MEMBERS = ("graph.json", "weights.npz")


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def graph_to_json(ir: IR) -> dict[str, Any]:
    """The IR as plain JSON data."""
    return {
        "name": ir.name,
        "outputs": list(ir.outputs),
        "nodes": [
            {"name": n.name, "kind": n.kind.value, "op": n.op, "inputs": list(n.inputs),
             "attrs": {k: _jsonable(v) for k, v in n.attrs}, "shape": list(n.shape),
             "dtype": n.dtype, "origin": n.origin}
            for n in ir.nodes
        ],
    }


def graph_from_json(data: dict[str, Any]) -> IR:
    """Rebuild the IR from ``graph_to_json`` data; malformed data raises ModelFileError."""
    for d in data.get("nodes", []) if isinstance(data, dict) else []:
        problem = name_problem(d.get("name") if isinstance(d, dict) else None)
        if problem is not None:
            raise ModelFileError(f"graph.json is malformed: {problem}")
    try:
        nodes = tuple(
            Node(name=str(d["name"]), kind=NodeKind(d["kind"]), op=str(d["op"]),
                 inputs=tuple(str(i) for i in d["inputs"]), attrs=make_attrs(dict(d["attrs"])),
                 shape=tuple(None if s is None else int(s) for s in d["shape"]), dtype=str(np.dtype(d["dtype"])),
                 origin=str(d.get("origin", "<file>")))
            for d in data["nodes"]
        )
        return IR(str(data["name"]), nodes, tuple(str(o) for o in data["outputs"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"graph.json is malformed: {type(e).__name__}: {e}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_mode(path: str) -> int:
    """Keep an existing file's permissions; otherwise what open() would give (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (an Executable) to ``path`` atomically: a failed save leaves the old file intact."""
    from graphdl import __version__

    path = os.fspath(path)
    data = graph_to_json(model.ir)
    if model.objective is not None:
        data["objective"] = model.objective
    graph_bytes = json.dumps(data, indent=1).encode()
    buf = io.BytesIO()
    np.savez(buf, **model.values)
    weights_bytes = buf.getvalue()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "graphdl_version": __version__,
        "members": {"graph.json": _sha256(graph_bytes), "weights.npz": _sha256(weights_bytes)},
    }
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".gdl", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("manifest.json", json.dumps(manifest, indent=1))
                z.writestr("graph.json", graph_bytes)
                z.writestr("weights.npz", weights_bytes)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | os.PathLike[str]) -> tuple[IR, dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a model file: (IR, weights, manifest). Every problem is a ModelFileError."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "manifest.json" not in names:
                raise ModelFileError(f"{path} is a zip file but not a graphdl model (no manifest.json)")
            manifest = json.loads(z.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise ModelFileError(f"{path} is not a graphdl model (format {manifest.get('format')!r})")
            version = manifest.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
                raise ModelFileError(
                    f"{path} has format version {version}; this graphdl reads versions 1 to {FORMAT_VERSION}"
                    " (upgrade graphdl to read newer files)")
            blobs = {}
            for member in MEMBERS:
                if member not in names:
                    raise ModelFileError(f"{path} lacks {member}; the file is incomplete")
                blob = z.read(member)
                if _sha256(blob) != manifest.get("members", {}).get(member):
                    raise ModelFileError(f"{path}: {member} does not match its checksum; the file is corrupted")
                blobs[member] = blob
    except FileNotFoundError:
        raise
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path} is not a readable graphdl model file (truncated or corrupted?): "
                             f"{type(e).__name__}: {e}") from None
    data = json.loads(blobs["graph.json"])
    ir = graph_from_json(data)
    objective = data.get("objective") if isinstance(data, dict) else None
    if objective is not None and (not isinstance(objective, str) or objective not in ir.outputs):
        raise ModelFileError(f"{path}: graph.json names objective {objective!r}, which is not one of its outputs")
    manifest = {**manifest, "objective": objective}
    try:
        with np.load(io.BytesIO(blobs["weights.npz"]), allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{path}: weights.npz is unreadable: {e}") from None
    return ir, weights, manifest


def load(path: str | os.PathLike[str]) -> Any:
    """Load a model file into a runnable Executable, without the script that built it."""
    from graphdl.executable import Executable
    from passes import CompileSpec, compile_graph

    ir, weights, manifest = read(path)
    stored = [n for n in ir.nodes if n.kind in (NodeKind.PARAM, NodeKind.STATE, NodeKind.CONSTANT)
              and n.op != "scalar"]
    for n in stored:
        w = weights.get(n.name)
        if w is None:
            raise ModelFileError(f"{path}: weights.npz has no array for {n.describe()}")
        if w.shape != n.shape or str(w.dtype) != n.dtype:
            raise ModelFileError(f"{path}: weight '{n.name}' is {w.shape} {w.dtype}, the graph says "
                                 f"{n.shape} {n.dtype}")
    try:  # re-check the graph as the compiler would (unknown ops, bad shapes, cycles)
        ir = compile_graph(ir, CompileSpec(ir.outputs))
    except GraphDLError as e:
        raise ModelFileError(f"{path}: the stored graph does not compile: {e}") from None
    objective = manifest["objective"]
    if objective is None and any(n.kind is NodeKind.UPDATE for n in ir.nodes):
        # Files written before the objective was recorded: the only scalar output, if there is one.
        scalars = [o for o in ir.outputs if ir.node_map()[o].shape == ()]
        objective = scalars[0] if len(scalars) == 1 else None
    return Executable(ir, {k: np.array(v) for k, v in weights.items()}, objective=objective)
