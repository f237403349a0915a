"""Helpers that craft model files byte by byte: valid checksums over edited members, raw zips, bombs."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from graphdl import serialize


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def manifest_for(graph: bytes, weights: bytes, version: int = serialize.FORMAT_VERSION) -> dict[str, Any]:
    return {"format": "graphdl-model", "format_version": version, "graphdl_version": "0.1.0",
            "members": {"graph.json": serialize.sha256(graph), "weights.npz": serialize.sha256(weights)}}


def zip_members(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, blob in members:
            z.writestr(name, blob)
    return buf.getvalue()


def model_bytes(graph: dict[str, Any] | bytes, weights: dict[str, np.ndarray] | bytes,
                manifest: dict[str, Any] | None = None) -> bytes:
    """A model file whose manifest has valid checksums for the given members."""
    g = graph if isinstance(graph, bytes) else json.dumps(graph).encode()
    w = weights if isinstance(weights, bytes) else npz_bytes(weights)
    m = manifest if manifest is not None else manifest_for(g, w)
    return zip_members([("manifest.json", json.dumps(m).encode()), ("graph.json", g), ("weights.npz", w)])


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, deflated data, crc, compressed size, claimed uncompressed size) entries, the
    data written as given: the directory may claim anything (no zip64: sizes below 4 GiB)."""
    out = io.BytesIO()
    central = []
    for name, data, crc, csize, usize in members:
        offset = out.tell()
        fn = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, csize, usize, len(fn), 0) + fn)
        out.write(data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, csize, usize,
                                   len(fn), 0, 0, 0, 0, 0, offset) + fn)
    start = out.tell()
    cd = b"".join(central)
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), start, 0))
    return out.getvalue()


def zero_bomb(inflated: int, crc: bool = True) -> tuple[bytes, int]:
    """A raw deflate stream of ``inflated`` zero bytes (a multiple of 1 MiB), built without inflating
    it: identical fully-flushed blocks repeated. Returns (stream, crc32 of the zeros, or 0 if not ``crc``)."""
    mib = 1 << 20
    assert inflated % mib == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(mib)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # a full flush resets the state, so every block is the same bytes
    stream = block * (inflated // mib) + c.flush(zlib.Z_FINISH)
    value = 0
    for _ in range(inflated // mib if crc else 0):
        value = zlib.crc32(zeros, value)
    return stream, value


def bomb_file(member: str, inflated: int, claim: int | None = None, *, crc: bool = True) -> bytes:
    """A model file whose ``member`` inflates to ``inflated`` zero bytes; its directory entry claims
    ``claim`` bytes (default: the truth). The other members are small and valid-looking."""
    stream, zcrc = zero_bomb(inflated, crc)
    manifest = json.dumps(manifest_for(b"{}", npz_bytes({}))).encode()
    small = {"manifest.json": manifest, "graph.json": b"{}", "weights.npz": npz_bytes({})}
    entries = []
    for name in ("manifest.json", "graph.json", "weights.npz"):
        if name == member:
            entries.append((name, stream, zcrc, len(stream), inflated if claim is None else claim))
        else:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = c.compress(small[name]) + c.flush()
            entries.append((name, data, zlib.crc32(small[name]), len(data), len(small[name])))
    return raw_zip(entries)
