"""Reading a model file: ``read`` opens the zip, checks the manifest and each member's checksum, then
graph.json (bounded, schema, shapes re-derived) and weights.npz, each array's ``.npy`` header checked
against its node before the array is allocated. Every problem is a ``ModelFileError``; every size is
bounded by ``Limits`` before anything is read or allocated.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import zipfile
from typing import IO, Any

import numpy as np

from graphdl.errors import ModelFileError
from graphdl.ir import IR, STORED_KINDS, Node
from graphdl.serialize.format import DEFAULT_LIMITS, FORMAT_NAME, FORMAT_VERSION, MEMBERS, Limits, MiB, sha256
from graphdl.serialize.graph_json import graph_from_json, reinfer

_MANIFEST_KEYS = {"format", "format_version", "graphdl_version", "members"}
_CHUNK = 1 * MiB


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
        if checked and sha256(blob) != self.manifest["members"][name]:
            raise ModelFileError(f"{self.path}: {name} does not match its checksum; the file is corrupted")
        return blob


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
                    ir = reinfer(graph_from_json(data, archive.version, limits))
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
