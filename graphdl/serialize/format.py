"""What every part of the model file format shares: its name and version, the members of the zip, the
``Limits`` on what a load reads and allocates, and the checksum the manifest records per member.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


def sha256(data: bytes) -> str:
    """The hex SHA-256 digest the manifest records for a member."""
    return hashlib.sha256(data).hexdigest()
