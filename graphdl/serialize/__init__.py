"""One model file: a zip of manifest.json, graph.json and weights.npz, written atomically.

The manifest names the format and its version, the graphdl version, and the SHA-256 of each member.
Loading never runs code from the file (JSON for the graph, ``.npy`` headers parsed and checked
before any array is allocated, ops looked up by name in the op table) and fails only with
``ModelFileError``: the graph is checked against a strict schema (docs/FORMAT.md), every shape
is re-inferred, and every size is bounded by ``Limits`` before anything is read or allocated.

The format, by part: format.py (name, version, members, ``Limits``, checksums), graph_json.py (the IR as
JSON and back, with the schema checks), writing.py (``save``: atomic writes, temporary files, sweeping)
and reading.py (``read``: the archive, the manifest, the weights). This package gathers their public names.
"""

from __future__ import annotations

from graphdl.serialize.format import DEFAULT_LIMITS, FORMAT_NAME, FORMAT_VERSION, MEMBERS, GiB, Limits, MiB, sha256
from graphdl.serialize.graph_json import MAX_NESTING, graph_from_json, graph_to_json, reinfer
from graphdl.serialize.reading import NPZ_OVERHEAD, read, read_weights, weights_bound
from graphdl.serialize.writing import STALE_SECONDS, save, sweep_temporaries, temp_name

__all__ = [
    "DEFAULT_LIMITS", "FORMAT_NAME", "FORMAT_VERSION", "MAX_NESTING", "MEMBERS", "NPZ_OVERHEAD", "STALE_SECONDS",
    "GiB", "Limits", "MiB", "graph_from_json", "graph_to_json", "read", "read_weights", "reinfer", "save", "sha256",
    "sweep_temporaries", "temp_name", "weights_bound",
]
