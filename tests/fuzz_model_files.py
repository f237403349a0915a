"""A seeded fuzzer over real model files: the only allowed outcomes of loading a mutated file are
``ModelFileError`` or "loads and behaves identically" (same outputs on a fixed feed as the original).

Families: bit flips, truncations, zip-structure edits, manifest edits, graph.json edits and weights edits
(both with valid checksums recomputed), bombs, and non-regular files. Edits that make a *valid different
model* (a weight's value, a float attribute's value, an op swapped for another with the same signature,
an update node nothing reads dropped) are not generated: they are not faults. graph.json edits are type
confusions (a value of another JSON type), deletions, additions, duplicates, reorders, renames, dangling
references and out-of-range numbers.

Run ``python tests/fuzz_model_files.py --cases 20000`` for a table by family and outcome; it uses whatever
``graphdl`` is importable, so it can also measure an older checkout (``PYTHONPATH=old/checkout``).
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import os
import random
import struct
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

import graphdl as gd

ALLOWED = ("ModelFileError", "identical")
#: (family, model, edit, outcome) of the first cases outside ALLOWED, for the report.
EXAMPLES: list[tuple[str, str, str, str]] = []


# -- the models ---------------------------------------------------------------------------------
def _mlp(train: bool) -> tuple[gd.Executable, dict[str, np.ndarray]]:
    with gd.Graph("mlp", seed=0):
        x = gd.placeholder("x", (None, 16))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = gd.layers.ReLU()(gd.layers.Linear(16, 32, name="fc1")(x))
        logits = gd.layers.Linear(32, 5, name="fc2")(h)
        loss = gd.losses.SoftmaxCrossEntropy()(logits, y)
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((4, 16)).astype("float32"), "y": rng.integers(0, 5, 4)}
    if train:
        return gd.compile([loss], optimizer=gd.optim.Adam(lr=1e-2)), feed
    return gd.compile([logits]), {"x": feed["x"]}


def _cnn() -> tuple[gd.Executable, dict[str, np.ndarray]]:
    with gd.Graph("cnn", seed=0):
        x = gd.placeholder("x", (None, 2, 6, 6))
        h = gd.layers.Conv2D(2, 3, 3, padding=1, name="conv")(x)
        h = gd.layers.BatchNorm2D(3, name="bn")(h)
        h = gd.layers.ReLU()(h)
        h = gd.layers.MaxPool2D(2)(h)
        out = gd.layers.Linear(27, 4, name="head")(gd.layers.Flatten()(h))
    model = gd.compile([out], training=False)
    for _k, v in model.state().items():  # non-trivial running statistics
        v[...] = np.linspace(0.5, 1.5, v.size).reshape(v.shape).astype(v.dtype)
    rng = np.random.default_rng(2)
    return model, {"x": rng.standard_normal((3, 2, 6, 6)).astype("float32")}


def build_models(tmpdir: str) -> dict[str, tuple[bytes, dict[str, np.ndarray]]]:
    """name -> (file bytes, feed) for the MLP, the CNN with BatchNorm and the Adam training MLP."""
    out = {}
    for name, (model, feed) in (("mlp", _mlp(False)), ("cnn", _cnn()), ("train", _mlp(True))):
        path = os.path.join(tmpdir, f"{name}.gdl")
        model.save(path)
        with open(path, "rb") as f:
            out[name] = (f.read(), feed)
    return out


def behaviour(model: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of two runs (the second shows a training step's effect)."""
    return [o.copy() for _ in range(2) for o in model.run(feed)]


# -- file surgery -------------------------------------------------------------------------------
def members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def rezip(items: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, blob in items:
                z.writestr(name, blob)
    return buf.getvalue()


def with_members(data: bytes, graph: bytes | None = None, weights: bytes | None = None,
                 manifest: dict | None = None, checksums: bool = True) -> bytes:
    """The file with graph.json / weights.npz / manifest replaced, checksums recomputed."""
    import hashlib

    m = dict(members(data))
    g = graph if graph is not None else m["graph.json"]
    w = weights if weights is not None else m["weights.npz"]
    man = manifest if manifest is not None else json.loads(m["manifest.json"])
    if checksums and isinstance(man.get("members"), dict):
        man = {**man, "members": {**man["members"], "graph.json": hashlib.sha256(g).hexdigest(),
                                  "weights.npz": hashlib.sha256(w).hexdigest()}}
    return rezip([("manifest.json", json.dumps(man).encode()), ("graph.json", g), ("weights.npz", w)])


def _other_type_values(v: Any) -> list[Any]:
    """JSON values of a different type than ``v`` (a type confusion, never a same-typed semantic edit)."""
    pool = [None, "False", "1", "", True, False, 0, 1, -1, 1.5, -2.5, 1e308, 2**70, [], [1], [None], {}, {"a": 1},
            "x" * 300, [[1, 2]], float("nan")]

    def same(a: Any, b: Any) -> bool:
        num = (int, float)
        if isinstance(a, bool) or isinstance(b, bool):
            return isinstance(a, bool) and isinstance(b, bool)
        if isinstance(a, num) and isinstance(b, num):
            return True
        if isinstance(a, list) and isinstance(b, list):
            return all(isinstance(x, int) for x in a + b) and not any(isinstance(x, bool) for x in a + b)
        return type(a) is type(b)

    return [p for p in pool if not same(p, v)]


def mutate_graph(g: dict, rng: random.Random) -> str:
    """One edit of graph.json data in place; returns its name."""
    nodes = g["nodes"]
    n = rng.choice(nodes)
    choice = rng.randrange(16)
    if choice == 0:
        key = rng.choice(sorted(n))
        del n[key]
        return f"drop node key {key}"
    if choice == 1:
        key = rng.choice(sorted(n))
        n[key] = rng.choice(_other_type_values(n[key]))
        return f"retype node key {key}"
    if choice == 2 and n["attrs"]:
        key = rng.choice(sorted(n["attrs"]))
        n["attrs"][key] = rng.choice(_other_type_values(n["attrs"][key]))
        return "retype attr"
    if choice == 3 and n["attrs"]:
        del n["attrs"][rng.choice(sorted(n["attrs"]))]
        return "drop attr"
    if choice == 4:
        n["attrs"][rng.choice(["unknown", "training", "axis", "value", "__class__"])] = rng.choice([1, "x", True])
        return "add attr"
    if choice == 5 and n["inputs"]:
        k = rng.randrange(len(n["inputs"]))
        n["inputs"][k] = rng.choice(["nope", n["name"], n["inputs"][k] + ":1", n["inputs"][k] + ":0", "", 3,
                                     n["inputs"][k] + "\nimport os"])
        return "bad input"
    if choice == 6:
        n["op"] = rng.choice(["os.system", "", "param", "placeholder", "scalar", "__import__", "Linear", 7])
        return "bad op"
    if choice == 7:
        n["kind"] = rng.choice(["op", "loss", "gradient", "update", "param", "state", "constant", "placeholder",
                                "weird", None])
        return "change kind"
    if choice == 8 and n["shape"]:
        k = rng.randrange(len(n["shape"]))
        bad = [-1, 1.5, "3", True, 2**64]
        if n["kind"] != "placeholder":
            bad += [None, (n["shape"][k] or 0) + 1, 0]
        n["shape"][k] = rng.choice(bad)
        return "bad dim"
    if choice == 9:
        n["dtype"] = rng.choice(["object", "float", "<f4", 3, None, "complex128"]
                                + ([] if n["kind"] == "placeholder" else ["float64", "int64", "bool"]))
        return "bad dtype"
    if choice == 10:
        nodes.append(copy.deepcopy(n))
        return "duplicate node"
    if choice == 11:
        rng.shuffle(nodes)
        return "shuffle nodes"
    if choice == 12:
        n["name"] = rng.choice(["a\nb", "", "x" * 201, "a:1", n["name"] + "_renamed", "/x", 5, None])
        return "rename node"
    if choice == 13:
        key = rng.choice(["name", "outputs", "nodes", "objective", "extra"])
        if key in g and rng.random() < 0.5:
            del g[key]
            return f"drop top key {key}"
        g[key] = rng.choice([*_other_type_values(g.get(key, 0)), ["nope"], [g["outputs"][0]] * 2])
        return f"retype top key {key}"
    if choice == 14:
        n["extra_outputs"] = rng.choice([[], [{"shape": [1], "dtype": "float32"}], "x", [{"shape": [1]}]])
        return "extra outputs"
    # Only a node something depends on: dropping an unread update node is a valid model that trains less.
    read = {str(i).split(":")[0] for d in nodes for i in d.get("inputs", []) if isinstance(i, str)}
    read |= {str(o) for o in g.get("outputs", []) if isinstance(o, str)}
    candidates = [k for k, d in enumerate(nodes) if d.get("name") in read]
    del nodes[rng.choice(candidates) if candidates else 0]
    return "drop node"


def _npy(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=True)
    return b.getvalue()


def mutate_weights(blob: bytes, rng: random.Random) -> tuple[bytes, str]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = rng.choice(sorted(arrays))
    a = arrays[key]
    choice = rng.randrange(8)
    if choice == 0:
        del arrays[key]
        what = "drop array"
    elif choice == 1:
        arrays[rng.choice(["extra", key + "_2", "../evil"])] = np.zeros(rng.choice([1, 1000]), np.float32)
        what = "extra array"
    elif choice == 2:
        arrays[key] = a.astype(rng.choice([np.float64, np.int64, np.float16, np.int32]))
        what = "dtype"
    elif choice == 3:
        arrays[key] = a.reshape(-1) if a.ndim > 1 else np.concatenate([a.reshape(-1), [0]]).astype(a.dtype)
        what = "shape"
    elif choice == 4:
        arrays[key] = np.asfortranarray(a.T).T.copy(order="F") if a.ndim > 1 else a.astype(a.dtype.newbyteorder())
        what = "order"
    elif choice == 5:
        items = [(f"{k}.npy", _npy(np.array([v], dtype=object) if k == key else v)) for k, v in arrays.items()]
        return rezip(items, zipfile.ZIP_STORED), "object array"
    elif choice == 6:
        items = [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]
        name, raw = items[0]
        raw = bytearray(raw)
        pos = rng.randrange(8, min(len(raw), 128))
        raw[pos] = rng.randrange(256)
        items[0] = (name, bytes(raw))
        return rezip(items, zipfile.ZIP_STORED), "npy header byte"
    else:
        items = [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]
        items.append(items[0])
        return rezip(items, zipfile.ZIP_STORED), "duplicate array"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), what


def mutate_manifest(m: dict, rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        m["format_version"] = rng.choice([0, 1, 3, 99, "1", True, None, 1.0, 2**70, -1])
        return "version"
    if choice == 1:
        m["format"] = rng.choice(["other", None, "", 1])
        return "format"
    if choice == 2:
        key = rng.choice(sorted(m))
        del m[key]
        return f"drop {key}"
    if choice == 3:
        m[rng.choice(["extra", "members"])] = rng.choice([None, "x", [], {"graph.json": "0" * 64}])
        return "retype"
    m["graphdl_version"] = rng.choice([None, 1, "x" * 500, []])
    return "graphdl_version"


def mutate_zip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    items = members(data)
    choice = rng.randrange(7)
    if choice == 0:
        rng.shuffle(items)
        return rezip(items), "reorder members"
    if choice == 1:
        del items[rng.randrange(len(items))]
        return rezip(items), "drop member"
    if choice == 2:
        items.append(rng.choice(items))
        return rezip(items), "duplicate member"
    if choice == 3:
        items.append((rng.choice(["evil.py", "../x", "graph.json/"]), b"import os"))
        return rezip(items), "extra member"
    if choice == 4:
        return rezip(items, zipfile.ZIP_STORED), "stored (uncompressed)"
    if choice == 5:
        k = rng.randrange(len(items))
        items[k] = (items[k][0] + rng.choice(["x", ".bak", ""]).upper(), items[k][1])
        return rezip(items), "rename member"
    raw = bytearray(data)  # a byte in the central directory or end record
    pos = rng.randrange(max(0, len(raw) - 300), len(raw))
    raw[pos] = rng.randrange(256)
    return bytes(raw), "directory byte"


def _raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    out = io.BytesIO()
    central = []
    for name, data, crc, csize, usize in entries:
        offset, fn = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, csize, usize, len(fn), 0) + fn + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, csize, usize,
                                   len(fn), 0, 0, 0, 0, 0, offset) + fn)
    cd, start = b"".join(central), out.tell()
    out.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), start, 0))
    return out.getvalue()


def bomb(data: bytes, rng: random.Random, mib: int) -> tuple[bytes, str]:
    """One member replaced by ``mib`` MiB of deflated zeros (checksum in the manifest made to match
    only if small), its directory entry truthful or lying."""
    items = dict(members(data))
    target = rng.choice(["graph.json", "weights.npz", "manifest.json"])
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    stream = block * mib + c.flush(zlib.Z_FINISH)
    claim = rng.choice([mib << 20, 1000, (mib << 20) // 2])
    entries = []
    for name in ("manifest.json", "graph.json", "weights.npz"):
        if name == target:
            entries.append((name, stream, 0, len(stream), claim))
        else:
            d = zlib.compressobj(9, zlib.DEFLATED, -15)
            comp = d.compress(items[name]) + d.flush()
            entries.append((name, comp, zlib.crc32(items[name]), len(comp), len(items[name])))
    return _raw_zip(entries), f"{target} claim={'true' if claim == mib << 20 else 'lie'}"


# -- running cases ------------------------------------------------------------------------------
def outcome(path: str, feed: dict[str, np.ndarray], reference: list[np.ndarray], timeout: float = 10.0) -> str:
    box: list[str] = []

    def attempt() -> None:
        try:
            model = gd.load(path)
        except gd.ModelFileError:
            box.append("ModelFileError")
            return
        except BaseException as e:
            box.append(f"load raised {type(e).__name__}")
            return
        try:
            got = behaviour(model, feed)
        except BaseException as e:
            box.append(f"loaded, run raised {type(e).__name__}")
            return
        same = len(got) == len(reference) and all(
            a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
            for a, b in zip(got, reference))
        box.append("identical" if same else "loaded, behaves differently")

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else "blocked"


FAMILIES = ("bitflip", "truncate", "zip", "manifest", "graph", "weights", "bomb", "nonregular")


def make_case(family: str, data: bytes, rng: random.Random, tmpdir: str, bomb_mib: int) -> tuple[str, str]:
    """(path, edit) of one mutated file (or non-regular file) of the given family."""
    path = os.path.join(tmpdir, f"case-{rng.randrange(1 << 30)}.gdl")
    if family == "nonregular":
        kind = rng.choice(["fifo", "dir", "devnull", "symlink-dir", "missing"])
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "devnull":
            return "/dev/null", kind
        elif kind == "symlink-dir":
            os.symlink(tmpdir, path)
        return path, kind
    if family == "bitflip":
        raw = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        out, edit = bytes(raw), "bits"
    elif family == "truncate":
        out, edit = data[:rng.randrange(len(data))], "cut"
    elif family == "zip":
        out, edit = mutate_zip(data, rng)
    elif family == "manifest":
        m = json.loads(dict(members(data))["manifest.json"])
        edit = mutate_manifest(m, rng)
        out = with_members(data, manifest=m, checksums=edit not in ("drop members", "retype"))
    elif family == "graph":
        g = json.loads(dict(members(data))["graph.json"])
        edit = mutate_graph(g, rng)
        try:
            blob = json.dumps(g).encode()
        except (TypeError, ValueError):
            blob = json.dumps(g, default=str).encode()
        out = with_members(data, graph=blob)
    elif family == "weights":
        blob, edit = mutate_weights(dict(members(data))["weights.npz"], rng)
        out = with_members(data, weights=blob)
    else:
        out, edit = bomb(data, rng, bomb_mib)
    with open(path, "wb") as f:
        f.write(out)
    return path, edit


def run(cases: int, seed: int = 0, bomb_mib: int = 64, progress: Callable[[int], None] | None = None
        ) -> dict[tuple[str, str], collections.Counter]:
    """Run ``cases`` cases spread over families and models; (family, model) -> Counter of outcomes."""
    rng = random.Random(seed)
    table: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory() as tmpdir:
        models = build_models(tmpdir)
        refs = {name: behaviour(gd.load(os.path.join(tmpdir, f"{name}.gdl")), feed)
                for name, (_, feed) in models.items()}
        weights = {"bitflip": 3, "truncate": 1, "zip": 2, "manifest": 1, "graph": 6, "weights": 3,
                   "bomb": 0.2, "nonregular": 0.2}
        for i in range(cases):
            family = rng.choices(FAMILIES, [weights[f] for f in FAMILIES])[0]
            name = rng.choice(sorted(models))
            data, feed = models[name]
            path, edit = make_case(family, data, rng, tmpdir, bomb_mib)
            result = outcome(path, feed, refs[name])
            table[(family, name)][result] += 1
            if result not in ALLOWED and len(EXAMPLES) < 50:
                EXAMPLES.append((family, name, edit, result))
            if path != "/dev/null":
                if os.path.islink(path) or os.path.isfile(path):
                    os.unlink(path)
                elif os.path.isdir(path):
                    os.rmdir(path)
                elif os.path.exists(path):
                    os.unlink(path)
            if progress:
                progress(i)
    return table


def format_table(table: dict[tuple[str, str], collections.Counter]) -> str:
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (family, _), c in table.items():
        by_family[family].update(c)
    lines = [f"{'family':<11} {'cases':>6}  outcomes"]
    total: collections.Counter = collections.Counter()
    for family in FAMILIES:
        c = by_family.get(family, collections.Counter())
        total.update(c)
        lines.append(f"{family:<11} {sum(c.values()):>6}  " + ", ".join(f"{k}: {v}" for k, v in c.most_common()))
    lines.append(f"{'all':<11} {sum(total.values()):>6}  " + ", ".join(f"{k}: {v}" for k, v in total.most_common()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bomb-mib", type=int, default=64)
    args = p.parse_args(argv)
    table = run(args.cases, args.seed, args.bomb_mib)
    print(format_table(table))
    bad = sum(v for c in table.values() for k, v in c.items() if k not in ALLOWED)
    print(f"cases outside the allowed outcomes: {bad}; graphdl from {os.path.dirname(gd.__file__)}")
    for example in EXAMPLES[:20]:
        print("  ", *example)
    return 0


if __name__ == "__main__":
    sys.exit(main())
