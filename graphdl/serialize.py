"""One model file: a zip of manifest.json, graph.json and weights.npz, written atomically.

The manifest names the format and its version, the graphdl version, and the SHA-256 of each member.
Loading never runs code from the file (JSON for the graph, ``.npy`` headers parsed and checked
before any array is allocated, ops looked up by name in the op table) and fails only with
``ModelFileError``: the graph is checked against a strict schema (docs/FORMAT.md), every shape
is re-inferred, and every size is bounded by ``Limits`` before anything is read or allocated.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import signal
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from graphdl.errors import GraphDLError, ModelFileError, file_path
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, make_attrs, name_problem, parse_ref, value_info
from graphdl.registry import DTYPES, OpDef, attr_problems, get_op, infer, with_defaults

FORMAT_NAME = "graphdl-model"
#: Version 2 writes every attribute of every node (v1 left defaults out); this graphdl reads 1 and 2.
FORMAT_VERSION = 2
MEMBERS = ("graph.json", "weights.npz")
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds on what ``load`` reads and allocates; a file beyond any of them is refused.

    Pass your own to ``gd.load(path, limits=gd.serialize.Limits(weights_bytes=...))`` for larger models.
    """

    file_bytes: int = 8 * GiB  # the model file on disk
    manifest_bytes: int = 64 * 1024  # manifest.json, inflated
    graph_bytes: int = 64 * MiB  # graph.json, inflated
    weights_bytes: int = 4 * GiB  # weights.npz, inflated (all arrays together)
    nodes: int = 1_000_000  # nodes in graph.json
    dim: int = 2**40  # any single dimension of a declared shape
    rank: int = 32  # dimensions of a declared shape
    text: int = 1000  # characters of the graph's name and of a node's origin


DEFAULT_LIMITS = Limits()
_LEAF_OPS = {NodeKind.PLACEHOLDER: ("placeholder",), NodeKind.PARAM: ("param",), NodeKind.STATE: ("state",),
             NodeKind.CONSTANT: ("constant", "scalar")}
_NODE_KEYS = {"name", "kind", "op", "inputs", "attrs", "shape", "dtype", "origin", "extra_outputs"}
_OPTIONAL_NODE_KEYS = {"origin", "extra_outputs"}
_GRAPH_KEYS = {"name", "outputs", "nodes", "objective"}
_MANIFEST_KEYS = {"format", "format_version", "graphdl_version", "members"}
_CHUNK = 1 * MiB


# -- writing ----------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, IR):  # a sub-graph (a scan's body): an object like graph.json's top level
        return graph_to_json(v)
    return v


def _complete_attrs(n: Node) -> dict[str, Any]:
    """Every attribute of ``n``, defaults filled in (format v2 stores them all)."""
    attrs = dict(n.attrs)
    if (n.kind in STORED_KINDS and n.op != "scalar") or n.kind is NodeKind.PLACEHOLDER:
        return attrs
    return with_defaults(get_op(n.op), attrs)


def _node_to_json(n: Node) -> dict[str, Any]:
    d = {"name": n.name, "kind": n.kind.value, "op": n.op, "inputs": list(n.inputs),
         "attrs": {k: _jsonable(v) for k, v in sorted(_complete_attrs(n).items())}, "shape": list(n.shape),
         "dtype": n.dtype, "origin": n.origin}
    if n.extra:  # outputs 1..k of a multi-output node (absent for single-output nodes, as in older files)
        d["extra_outputs"] = [{"shape": list(s), "dtype": t} for s, t in n.extra]
    return d


def graph_to_json(ir: IR) -> dict[str, Any]:
    """The IR as plain JSON data, every attribute explicit. Inputs and outputs are value references
    (``node`` or ``node:k``, output k of a multi-output node)."""
    return {"name": ir.name, "outputs": list(ir.outputs), "nodes": [_node_to_json(n) for n in ir.nodes]}


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


#: A temporary older than this is swept even if its pid is alive (the pid may have been reused).
STALE_SECONDS = 15 * 60


def temp_name(target: str) -> str:
    """``.<target>.tmp-<pid>-<random>`` next to ``target``: recognisable, and its writer identifiable."""
    directory, base = os.path.split(os.path.abspath(target))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but not ours, or not a pid we can ask about: leave it to the age rule
    return True


def sweep_temporaries(target: str, now: float | None = None) -> list[str]:
    """Remove temporaries of earlier saves of ``target`` whose process is gone (or that are older than
    STALE_SECONDS), and mkstemp-style ``.tmp-*.gdl`` files of older graphdl versions older than that.
    Returns the removed paths."""
    directory, base = os.path.split(os.path.abspath(target))
    ours = re.compile(rf"\.{re.escape(base)}\.tmp-(\d+)-[0-9a-f]{{8}}")
    legacy = re.compile(r"\.tmp-[a-z0-9_]{8}\.gdl")
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = ours.fullmatch(entry.name)
        if m is None and not legacy.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            old = now - info.st_mtime > STALE_SECONDS
            if m is not None:
                pid = int(m.group(1))
                if pid == os.getpid() or (_pid_alive(pid) and not old):
                    continue
            elif not old:
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            continue  # another save swept it first, or we may not remove it: not this save's problem
    return removed


class _Terminated(BaseException):
    """Raised inside save() by SIGTERM, so the temporary file is removed before the process ends."""


@contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """While saving (main thread only), turn SIGTERM into an exception, then deliver it as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)  # the previous handler (by default: terminate)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (an Executable) to ``path`` atomically: a failed or interrupted save leaves the
    old file intact and no temporary file behind; temporaries of killed earlier saves are swept."""
    from graphdl import __version__

    path = file_path(path, "save")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot save the model to {path}: the folder {directory} does not "
                                "exist; create it first", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot save the model to {path}: it is a folder", path)
    data = graph_to_json(model.ir)
    if model.objective is not None:
        data["objective"] = model.objective
    graph_bytes = json.dumps(data, indent=1, allow_nan=True).encode()
    buf = io.BytesIO()
    np.savez(buf, **model.values)
    weights_bytes = buf.getvalue()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "graphdl_version": __version__,
        "members": {"graph.json": _sha256(graph_bytes), "weights.npz": _sha256(weights_bytes)},
    }
    sweep_temporaries(path)
    tmp = temp_name(path)
    with _cleanup_on_sigterm():
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                    z.writestr("manifest.json", json.dumps(manifest, indent=1))
                    z.writestr("graph.json", graph_bytes)
                    z.writestr("weights.npz", weights_bytes)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _file_mode(path))
            os.replace(tmp, path)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                e.add_note(f"while saving the model to {path}")
            raise


# -- reading ----------------------------------------------------------------------------------
def _fail(path: str, message: str) -> ModelFileError:
    return ModelFileError(f"{path}: {message}")


def _open_regular(path: str, limits: Limits) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file within the size limit; never blocks
    (a FIFO or device is refused before opening, and the open itself is non-blocking)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, device or socket)"
        raise ModelFileError(f"{path} is {what}; a model file is a regular file written by Executable.save")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ModelFileError(f"{path}: cannot open it ({e.strerror or e})") from None
    f = os.fdopen(fd, "rb")
    info = os.fstat(fd)  # what we opened, in case the path was swapped after the first check
    if not stat.S_ISREG(info.st_mode) or info.st_size > limits.file_bytes:
        f.close()
        raise ModelFileError(f"{path} is not a regular file of at most {limits.file_bytes:,} bytes "
                             f"({info.st_size:,} bytes); raise Limits.file_bytes to load it")
    return f


def _read_member(path: str, z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, why: str) -> bytes:
    """One member, inflated in chunks: refused from its directory entry if it claims more than ``limit``
    bytes, and again while inflating if it turns out to hold more."""
    if info.file_size > limit:
        raise _fail(path, f"{info.filename} would inflate to {info.file_size:,} bytes; the limit is {limit:,} "
                    f"({why})")
    out = bytearray()
    with z.open(info) as f:
        while chunk := f.read(min(_CHUNK, limit + 1 - len(out))):
            out += chunk
            if len(out) > limit:
                raise _fail(path, f"{info.filename} inflates to more than {limit:,} bytes ({why})")
    return bytes(out)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def _parse_json(path: str, member: str, blob: bytes) -> Any:
    try:
        return json.loads(blob.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _fail(path, f"{member} is not valid JSON: {type(e).__name__}: {str(e)[:200]}") from None


def _check_manifest(path: str, manifest: Any) -> int:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelFileError(f"{path} is not a graphdl model (format {str(fmt)[:60]!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {str(version)[:20]}; this graphdl reads versions 1 to "
                             f"{FORMAT_VERSION} (upgrade graphdl to read newer files)")
    unknown = set(manifest) - _MANIFEST_KEYS
    if unknown:
        raise _fail(path, f"manifest.json has unknown keys {sorted(unknown)[:5]}")
    if not isinstance(manifest.get("graphdl_version"), str) or len(manifest["graphdl_version"]) > 100:
        raise _fail(path, "manifest.json: graphdl_version must be a short string")
    members = manifest.get("members")
    if not isinstance(members, dict) or set(members) != set(MEMBERS) or not all(
            isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in members.values()):
        raise _fail(path, f"manifest.json: members must map exactly {list(MEMBERS)} to SHA-256 hex digests")
    return version


class _Archive:
    """The open zip of a model file, its members listed and checked, the manifest read and checked."""

    def __init__(self, path: str, f: IO[bytes], limits: Limits) -> None:
        self.path, self.limits = path, limits
        try:
            self.zip = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            raise ModelFileError(f"{path} is not a readable graphdl model file (truncated or corrupted?): "
                                 f"{type(e).__name__}: {e}") from None
        infos = self.zip.infolist()
        names = [i.filename for i in infos]
        if "manifest.json" not in names:
            raise ModelFileError(f"{path} is a zip file but not a graphdl model (no manifest.json)")
        if len(set(names)) != len(names):
            raise _fail(path, "the zip holds two members with the same name; the file was tampered with")
        extra = set(names) - {"manifest.json", *MEMBERS}
        if extra:
            raise _fail(path, f"unexpected members {sorted(extra)[:5]}; a model file holds manifest.json, "
                        "graph.json and weights.npz only")
        self.infos = {i.filename: i for i in infos}
        self.manifest = _parse_json(path, "manifest.json", self.member("manifest.json", limits.manifest_bytes,
                                                                        checked=False))
        self.version = _check_manifest(path, self.manifest)

    def member(self, name: str, limit: int, checked: bool = True,
               why: str = "see graphdl.serialize.Limits") -> bytes:
        """A member's bytes, bounded by ``limit`` and (``checked``) matching the manifest's checksum."""
        if name not in self.infos:
            raise ModelFileError(f"{self.path} lacks {name}; the file is incomplete")
        blob = _read_member(self.path, self.zip, self.infos[name], limit, why)
        if checked and _sha256(blob) != self.manifest["members"][name]:
            raise ModelFileError(f"{self.path}: {name} does not match its checksum; the file is corrupted")
        return blob


# -- graph.json schema --------------------------------------------------------------------------
def _check_shape(where: str, shape: Any, limits: Limits, known: bool) -> tuple[int | None, ...]:
    if not isinstance(shape, list) or len(shape) > limits.rank:
        raise ValueError(f"{where}: shape must be a list of at most {limits.rank} dimensions, got {str(shape)[:60]}")
    for d in shape:
        if d is None and not known:
            continue
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= limits.dim:
            what = "a non-negative int" + ("" if known else " or null")
            raise ValueError(f"{where}: every dimension must be {what} (at most {limits.dim}), got "
                             f"{str(d)[:30]} in {str(shape)[:60]}")
    return tuple(shape)


#: How deeply sub-graphs (a scan inside a scan's body) may nest in a file.
MAX_NESTING = 8


def _body_from_json(where: str, key: str, value: Any, version: int, limits: Limits, depth: int) -> IR:
    """A sub-graph attribute, checked like the top-level graph (same schema, shapes re-derived)."""
    if depth >= MAX_NESTING:
        raise ValueError(f"{where}: sub-graphs nest more than {MAX_NESTING} deep")
    if not isinstance(value, dict) or "objective" in value:
        raise ValueError(f"{where}: attribute '{key}' must be a sub-graph object with name, nodes and outputs")
    try:
        return _reinfer(graph_from_json(value, version, limits, depth=depth + 1))
    except ModelFileError as e:
        raise ValueError(f"{where}: in its sub-graph '{key}': {e}") from None


def _check_node(d: Any, index: int, version: int, limits: Limits, depth: int = 0) -> Node:
    if not isinstance(d, dict):
        raise ValueError(f"node #{index} must be an object, got {type(d).__name__}")
    problem = name_problem(d.get("name"))
    if problem is not None:
        raise ValueError(f"node #{index}: {problem}")
    name = d["name"]
    where = f"node '{name}'"
    missing = (_NODE_KEYS - _OPTIONAL_NODE_KEYS) - set(d)
    unknown = set(d) - _NODE_KEYS
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing keys {sorted(missing)}"] if missing else []) + ([f"unknown keys {sorted(unknown)}"]
                                                                        if unknown else [])))
    try:
        kind = NodeKind(d["kind"]) if isinstance(d["kind"], str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise ValueError(f"{where}: kind must be one of {[k.value for k in NodeKind]}, got {str(d['kind'])[:40]!r}")
    op_name, inputs, attrs, dtype = d["op"], d["inputs"], d["attrs"], d["dtype"]
    if not isinstance(op_name, str):
        raise ValueError(f"{where}: op must be a string")
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ValueError(f"{where}: inputs must be a list of node names")
    if not isinstance(attrs, dict):
        raise ValueError(f"{where}: attrs must be an object")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"{where}: dtype must be one of {list(DTYPES)}, got {str(dtype)[:30]!r}")
    origin = d.get("origin", "<file>")
    if not isinstance(origin, str) or len(origin) > limits.text:
        raise ValueError(f"{where}: origin must be a string of at most {limits.text} characters")
    leaf = kind in _LEAF_OPS
    op: OpDef | None = None
    if leaf:
        if op_name not in _LEAF_OPS[kind]:
            raise ValueError(f"{where}: a {kind.value} node has op {' or '.join(_LEAF_OPS[kind])}, got "
                             f"{op_name[:40]!r}")
        if op_name == "scalar":
            op = get_op("scalar")
        elif inputs:
            raise ValueError(f"{where}: a {kind.value} node has no inputs")
        elif attrs and not (kind is NodeKind.STATE and attrs == {"init": "zeros"}):
            raise ValueError(f"{where}: a {kind.value} node has no attributes"
                             + (" other than init: 'zeros'" if kind is NodeKind.STATE else ""))
    else:
        if any(op_name in ops for ops in _LEAF_OPS.values()):
            raise ValueError(f"{where}: op {op_name!r} belongs to a leaf node, not a {kind.value} node")
        try:
            op = get_op(op_name)
        except GraphDLError as e:
            raise ValueError(f"{where}: {e}") from None
    if op is not None:
        if op.arity is not None and len(inputs) != op.arity:
            raise ValueError(f"{where}: {op.name} takes {op.arity} inputs, got {len(inputs)}")
        if op.writes and kind is not NodeKind.UPDATE:
            raise ValueError(f"{where}: {op.name} writes into its inputs, so its kind must be 'update'")
        attrs = {k: _body_from_json(where, k, v, version, limits, depth) if k in op.bodies else v
                 for k, v in attrs.items()}
        problems = attr_problems(op, attrs, complete=version >= 2)
        if problems:
            raise ValueError(f"{where} ({op.name}): {'; '.join(problems)}")
        attrs = with_defaults(op, attrs)
    if op is None and "extra_outputs" in d:
        raise ValueError(f"{where}: a {kind.value} node has one output")
    if op is not None and op.attr_schema is None:
        raise ValueError(f"{where}: op '{op.name}' declares no attribute schema, so it cannot be loaded")
    shape = _check_shape(where, d["shape"], limits, known=kind in STORED_KINDS)
    extra = []
    raw_extra = d.get("extra_outputs", [])
    if not isinstance(raw_extra, list) or (not raw_extra and "extra_outputs" in d) or len(raw_extra) > 64:
        raise ValueError(f"{where}: extra_outputs must be a non-empty list of at most 64 outputs")
    for k, e in enumerate(raw_extra, start=1):
        if not isinstance(e, dict) or set(e) != {"shape", "dtype"} or e["dtype"] not in DTYPES:
            raise ValueError(f"{where}: output {k} must be an object with a shape and a dtype in {list(DTYPES)}")
        extra.append((_check_shape(f"{where} output {k}", e["shape"], limits, known=False), e["dtype"]))
    return Node(name=name, kind=kind, op=op_name, inputs=tuple(inputs), attrs=make_attrs(attrs), shape=shape,
                dtype=dtype, origin=origin, extra=tuple(extra))


def graph_from_json(data: Any, version: int = FORMAT_VERSION, limits: Limits = DEFAULT_LIMITS, *,
                    depth: int = 0) -> IR:
    """Rebuild the IR from ``graph_to_json`` data, checking it against the schema in docs/FORMAT.md:
    every key and type, node kinds and ops, attributes per op, unique names, inputs that exist.
    Anything else raises ModelFileError (without a path; ``read`` adds it)."""
    try:
        if not isinstance(data, dict):
            raise ValueError("the top level must be an object")
        missing, unknown = {"name", "outputs", "nodes"} - set(data), set(data) - _GRAPH_KEYS
        if missing or unknown:
            raise ValueError(f"top-level keys: missing {sorted(missing)}, unknown {sorted(unknown)[:5]}")
        if not isinstance(data["name"], str) or len(data["name"]) > limits.text:
            raise ValueError(f"the graph's name must be a string of at most {limits.text} characters")
        raw = data["nodes"]
        if not isinstance(raw, list) or not 0 < len(raw) <= limits.nodes:
            raise ValueError(f"nodes must be a non-empty list of at most {limits.nodes:,} nodes")
        nodes = tuple(_check_node(d, i, version, limits, depth) for i, d in enumerate(raw))
        names = {n.name: 1 + len(n.extra) for n in nodes}  # name -> number of outputs
        if len(names) != len(nodes):
            seen: set[str] = set()
            dup = next(n.name for n in nodes if n.name in seen or seen.add(n.name))  # type: ignore[func-returns-value]
            raise ValueError(f"node name '{dup}' appears twice")

        def exists(value: Any) -> bool:
            node, k = parse_ref(value) if isinstance(value, str) else ("", -1)
            return 0 <= k < names.get(node, 0)

        for n in nodes:
            absent = [i for i in n.inputs if not exists(i)]
            if absent:
                raise ValueError(f"node {n.describe()} reads '{absent[0][:60]}', which is not a value of the graph")
        outputs = data["outputs"]
        if depth:  # a sub-graph's outputs (a scan body's new carries and ys) may repeat a value or be none
            if not isinstance(outputs, list) or not all(exists(o) for o in outputs):
                raise ValueError("outputs must be a list of values of the sub-graph (node or node:k)")
        elif (not isinstance(outputs, list) or not outputs or not all(exists(o) for o in outputs)
                or len(set(outputs)) != len(outputs)):
            raise ValueError("outputs must be a non-empty list of distinct values of the graph (node or node:k)")
        objective = data.get("objective")
        if objective is not None and (not isinstance(objective, str) or objective not in outputs):
            raise ValueError(f"objective {str(objective)[:60]!r} is not one of the outputs")
        return IR(data["name"], nodes, tuple(outputs))
    except ValueError as e:
        raise ModelFileError(f"graph.json is malformed: {e}") from None


def _reinfer(ir: IR) -> IR:
    """Sort the graph (a file may list nodes in any order) and re-derive every computed shape and dtype
    from the op rules; a rule that fails in any way, or disagrees with the file, names the node."""
    from graphdl.ir import format_shape
    from passes.toposort import toposort

    try:
        ir = toposort(ir)
    except GraphDLError as e:
        raise ModelFileError(f"graph.json: {e}") from None
    by_name: dict[str, Node] = {}
    upgraded: dict[str, Node] = {}
    for n in ir.nodes:
        by_name[n.name] = n
        if (n.kind in STORED_KINDS and n.op != "scalar") or n.kind is NodeKind.PLACEHOLDER:
            continue
        op, ins = get_op(n.op), [value_info(by_name, i) for i in n.inputs]
        try:
            shapes, dtypes = infer(op, tuple(s for s, _ in ins), tuple(t for _, t in ins), dict(n.attrs))
        except Exception as e:  # any failure of a rule on file data is the file's fault
            message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            raise ModelFileError(f"graph.json: node {n.describe()} is inconsistent with its inputs "
                                 f"({', '.join(format_shape(s) for s, _ in ins)}): {str(message)[:300]}") from None
        if not n.extra and len(shapes) > 1 and (shapes[0], dtypes[0]) == (n.shape, n.dtype):
            # Written before the op gained outputs (batch_norm's batch statistics): the file reads output 0 only.
            n = dataclasses.replace(n, extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)))
            by_name[n.name] = n
            upgraded[n.name] = n
        if shapes != n.shapes or dtypes != n.dtypes:
            stored = ", ".join(f"{format_shape(s)} {t}" for s, t in zip(n.shapes, n.dtypes, strict=True))
            given = ", ".join(f"{format_shape(s)} {t}" for s, t in zip(shapes, dtypes, strict=True))
            raise ModelFileError(f"graph.json: node {n.describe()} is stored as {stored}, but its op gives {given}")
    if upgraded:
        ir = ir.replace(nodes=tuple(upgraded.get(n.name, n) for n in ir.nodes))
    return ir


# -- weights ------------------------------------------------------------------------------------
def _read_array(path: str, z: zipfile.ZipFile, info: zipfile.ZipInfo, node: Node) -> np.ndarray:
    """One ``.npy`` member, its header checked against the node before the array is allocated."""
    where = f"weights.npz: array '{node.name}'"
    with z.open(info) as f:
        try:
            major, minor = np.lib.format.read_magic(f)
            if (major, minor) == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif (major, minor) == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {major}.{minor}")
        except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile) as e:
            raise _fail(path, f"{where} has an unreadable .npy header: {str(e)[:200]}") from None
        if dtype.hasobject or dtype.fields is not None or not dtype.isnative or dtype != np.dtype(node.dtype):
            raise _fail(path, f"{where} is {dtype.str}, the graph says {node.dtype}")
        if tuple(shape) != node.shape or fortran:
            raise _fail(path, f"{where} is {tuple(shape)}{' (Fortran order)' if fortran else ''}, the graph says "
                        f"{node.shape} (C order)")
        nbytes = math.prod(node.shape) * dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise _fail(path, f"{where} holds {info.file_size - f.tell():,} bytes of data, {nbytes:,} expected")
        arr = np.empty(node.shape, dtype)
        view = memoryview(arr.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
        done = 0
        while done < nbytes:
            got = f.readinto(view[done:done + _CHUNK])
            if not got:
                raise _fail(path, f"{where} is truncated")
            done += got
    return arr


def read_weights(path: str, blob: bytes, ir: IR) -> dict[str, np.ndarray]:
    """The arrays of weights.npz: exactly one per stored node, each checked against its node."""
    stored = {n.name: n for n in ir.nodes if n.kind in STORED_KINDS and n.op != "scalar"}
    try:
        z = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise _fail(path, f"weights.npz is unreadable: {e}") from None
    weights: dict[str, np.ndarray] = {}
    with z:
        for info in z.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or key not in stored:
                raise _fail(path, f"weights.npz holds {info.filename[:80]!r}, which the graph does not declare")
            if key in weights:
                raise _fail(path, f"weights.npz holds '{key}' twice")
            weights[key] = _read_array(path, z, info, stored[key])
    for name, n in stored.items():
        if name not in weights:
            raise _fail(path, f"weights.npz has no array for {n.describe()}")
    return weights


#: Bytes an .npz spends per array besides its data: zip headers and directory entry (name twice) plus
#: the .npy header (at most 64 KiB in format 1.0, which is what np.savez writes for graphdl's arrays).
NPZ_OVERHEAD = 64 * 1024


def weights_bound(ir: IR) -> int:
    """The most bytes weights.npz can hold for the arrays ``ir`` declares (a tighter limit than Limits)."""
    total = 0
    for n in ir.nodes:
        if n.kind in STORED_KINDS and n.op != "scalar":
            total += math.prod(n.shape) * np.dtype(n.dtype).itemsize + NPZ_OVERHEAD + 2 * len(n.name.encode())
    return total + 1024


def read(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS
         ) -> tuple[IR, dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a model file: (IR, weights, manifest). Every problem is a ModelFileError.

    Order: the zip directory and the manifest, then graph.json (bounded, checksum, schema, shapes),
    then weights.npz, bounded by what the graph declares, each array's header checked before allocating.
    """
    path = os.fspath(path)
    try:
        with _open_regular(path, limits) as f:
            archive = _Archive(path, f, limits)
            with archive.zip:
                data = _parse_json(path, "graph.json", archive.member("graph.json", limits.graph_bytes))
                try:
                    ir = _reinfer(graph_from_json(data, archive.version, limits))
                except ModelFileError as e:
                    raise _fail(path, str(e)) from None
                bound = weights_bound(ir)
                blob = archive.member("weights.npz", min(limits.weights_bytes, bound), why=(
                    "the arrays the graph declares, plus headers" if bound <= limits.weights_bytes
                    else "Limits.weights_bytes"))
        weights = read_weights(path, blob, ir)
    except ModelFileError:
        raise
    except MemoryError:
        raise _fail(path, "not enough memory to read it; lower the sizes in graphdl.serialize.Limits "
                    "to refuse such files early") from None
    except Exception as e:
        raise _fail(path, f"unreadable ({type(e).__name__}: {str(e)[:200]})") from None
    return ir, weights, {**archive.manifest, "objective": data.get("objective")}
