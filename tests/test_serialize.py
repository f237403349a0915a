"""Saving and loading: one file, checked on load, atomic on save, never running code from the file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import graphdl as gd
from graphdl import serialize

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_save_then_load_in_a_fresh_process_gives_identical_outputs(mlp, batch, tmp_path) -> None:
    xb, _ = batch
    predict = gd.compile([mlp.logits])
    path = tmp_path / "mlp.gdl"
    predict.save(path)
    np.save(tmp_path / "x.npy", xb)
    code = ("import sys, numpy as np, graphdl as gd; m = gd.load(sys.argv[1]); "
            "np.save(sys.argv[3], m.run({'x': np.load(sys.argv[2])})[0])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(gd.__file__)))  # this checkout, not the installed one
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                   check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": root})
    assert np.array_equal(np.load(tmp_path / "y.npy"), predict.run({"x": xb})[0])


def test_file_layout_manifest_and_checksums(mlp, tmp_path) -> None:
    path = tmp_path / "m.gdl"
    gd.compile([mlp.logits]).save(path)
    with zipfile.ZipFile(path) as z:
        assert set(z.namelist()) == {"manifest.json", "graph.json", "weights.npz"}
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["format"] == "graphdl-model" and manifest["format_version"] == serialize.FORMAT_VERSION
        assert manifest["graphdl_version"] == gd.__version__
        assert set(manifest["members"]) == {"graph.json", "weights.npz"}
        np.load(io.BytesIO(z.read("weights.npz")), allow_pickle=False)  # plain arrays only


def test_training_model_resumes_exactly_with_its_optimizer_state(tmp_path, batch) -> None:
    from tests.conftest import build_mlp

    xb, yb = batch
    a = build_mlp()
    train = gd.compile([a.loss], optimizer=gd.optim.Adam(lr=1e-2))
    for _ in range(3):
        train.run({"x": xb, "y": yb})
    train.save(tmp_path / "train.gdl")
    resumed = gd.load(tmp_path / "train.gdl")
    assert resumed.training and int(resumed.state()["optimizer.t"]) == 3
    expected = [train.run({"x": xb, "y": yb})[0] for _ in range(3)]
    got = [resumed.run({"x": xb, "y": yb})[0] for _ in range(3)]
    assert np.array_equal(expected, got)
    for k, v in train.parameters().items():
        assert np.array_equal(v, resumed.parameters()[k])


def _saved(tmp_path, mlp) -> bytes:
    path = tmp_path / "good.gdl"
    gd.compile([mlp.logits]).save(path)
    return path.read_bytes()


def test_truncated_file_is_a_model_file_error(tmp_path, mlp) -> None:
    data = _saved(tmp_path, mlp)
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.gdl"
        bad.write_bytes(data[:cut])
        with pytest.raises(gd.ModelFileError, match=r"truncated or corrupted|incomplete|checksum"):
            gd.load(bad)


def test_corrupted_member_is_caught_by_its_checksum(tmp_path, mlp) -> None:
    path = tmp_path / "good.gdl"
    _saved(tmp_path, mlp)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    weights = bytearray(members["weights.npz"])
    weights[len(weights) // 2] ^= 0xFF
    members["weights.npz"] = bytes(weights)
    bad = tmp_path / "bad.gdl"
    with zipfile.ZipFile(bad, "w") as z:
        for n, blob in members.items():
            z.writestr(n, blob)
    with pytest.raises(gd.ModelFileError, match=r"weights.npz does not match its checksum"):
        gd.load(bad)
    raw = bytearray(path.read_bytes())  # flip a byte inside the compressed stream
    raw[len(raw) // 3] ^= 0x55
    (tmp_path / "flip.gdl").write_bytes(bytes(raw))
    with pytest.raises(gd.ModelFileError):
        gd.load(tmp_path / "flip.gdl")


def test_foreign_and_future_files(tmp_path) -> None:
    (tmp_path / "text.gdl").write_text("hello")
    with pytest.raises(gd.ModelFileError, match="not a readable graphdl model"):
        gd.load(tmp_path / "text.gdl")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(gd.ModelFileError, match="no manifest.json"):
        gd.load(tmp_path / "other.zip")
    with zipfile.ZipFile(tmp_path / "future.gdl", "w") as z:
        z.writestr("manifest.json", json.dumps({"format": "graphdl-model", "format_version": 99}))
    with pytest.raises(gd.ModelFileError, match="format version 99"):
        gd.load(tmp_path / "future.gdl")


def test_unknown_op_in_file_is_refused_not_executed(tmp_path, mlp) -> None:
    ir = gd.compile([mlp.logits]).ir
    data = serialize.graph_to_json(ir)
    data["nodes"][-1]["op"] = "os.system"
    graph = json.dumps(data).encode()
    weights = io.BytesIO()
    np.savez(weights, **{k: v for k, v in mlp.g.values.items()})
    manifest = {"format": "graphdl-model", "format_version": 1, "graphdl_version": "0",
                "members": {"graph.json": serialize.sha256(graph),
                            "weights.npz": serialize.sha256(weights.getvalue())}}
    with zipfile.ZipFile(tmp_path / "evil.gdl", "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("graph.json", graph)
        z.writestr("weights.npz", weights.getvalue())
    with pytest.raises(gd.ModelFileError, match="unknown op 'os.system'"):
        gd.load(tmp_path / "evil.gdl")


def test_failed_save_keeps_the_previous_file(tmp_path, mlp, monkeypatch) -> None:
    path = tmp_path / "m.gdl"
    predict = gd.compile([mlp.logits])
    predict.save(path)
    good = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        predict.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.gdl"]  # no temporary file left behind


def test_loads_a_file_written_by_format_version_1() -> None:
    """A file committed when format version 1 was current must keep loading."""
    m = gd.load(os.path.join(DATA, "mlp_v1.gdl"))
    x = np.load(os.path.join(DATA, "mlp_v1_x.npy"))
    expected = np.load(os.path.join(DATA, "mlp_v1_logits.npy"))
    # Same kernels, but OpenBLAS picks its code path per CPU, so the last bit may differ between machines.
    np.testing.assert_allclose(m.run({"x": x})[0], expected, rtol=1e-6, atol=1e-6)
