"""Saves leave nothing behind: temporaries removed on errors and signals, killed saves' temporaries swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import graphdl as gd
from graphdl import serialize
from graphdl.serialize import writing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A child that saves the MLP to argv[1]; with argv[2] == "stall" its fsync announces itself and sleeps, so
# the parent can signal it while the temporary file is on disk.
CHILD = f"""
import os, sys, time
sys.path.insert(0, {ROOT!r})
import graphdl as gd
from graphdl.serialize import writing
from tests.conftest import build_mlp
model = gd.compile([build_mlp().logits])
if sys.argv[2] == "stall":
    def stall(fd):
        open(sys.argv[1] + ".ready", "w").close()
        time.sleep(60)
    writing.os.fsync = stall
while True:
    model.save(sys.argv[1])
"""


def _leftovers(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if ".tmp-" in p)


def _start_and_stall(target) -> subprocess.Popen:
    ready = str(target) + ".ready"
    if os.path.exists(ready):
        os.unlink(ready)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target), "stall"])
    deadline = time.time() + 60
    while not os.path.exists(ready):
        assert proc.poll() is None and time.time() < deadline, "the child did not reach the save"
        time.sleep(0.02)
    os.unlink(ready)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_save_removes_the_temporary_and_keeps_the_old_file(tmp_path, mlp, sig) -> None:
    target = tmp_path / "m.gdl"
    gd.compile([mlp.logits]).save(target)
    old = target.read_bytes()
    proc = _start_and_stall(target)
    assert _leftovers(tmp_path), "the temporary should exist while the save is stalled"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert _leftovers(tmp_path) == []
    assert target.read_bytes() == old


@pytest.mark.slow
def test_kill_9_during_save_leaves_a_temporary_that_the_next_save_sweeps(tmp_path, mlp) -> None:
    target = tmp_path / "m.gdl"
    model = gd.compile([mlp.logits])
    model.save(target)
    old = target.read_bytes()
    for _ in range(3):
        proc = _start_and_stall(target)  # its save first sweeps the previous child's temporary
        proc.kill()
        proc.wait(timeout=30)
        assert target.read_bytes() == old  # never a torn file
        assert len(_leftovers(tmp_path)) == 1  # what kill -9 cannot avoid: this child's temporary
    model.save(target)
    assert _leftovers(tmp_path) == []
    assert gd.load(target).run({"x": np.zeros((1, 64), np.float32)})[0].shape == (1, 10)


def test_sweep_keeps_live_savers_and_removes_dead_or_stale_ones(tmp_path) -> None:
    target = str(tmp_path / "m.gdl")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    names = {
        "dead": f".m.gdl.tmp-{dead_pid}-0123abcd",
        "live": f".m.gdl.tmp-{os.getppid()}-0123abcd",  # our parent is alive: a save in progress
        "stale_live": f".m.gdl.tmp-{os.getppid()}-89abcdef",
        "legacy_old": ".tmp-ab12cd34.gdl",
        "legacy_new": ".tmp-ef56gh78.gdl",
        "other_target": f".n.gdl.tmp-{dead_pid}-0123abcd",
        "unrelated": "m.gdl.tmp-notours",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    old = time.time() - serialize.STALE_SECONDS - 60
    for n in ("stale_live", "legacy_old"):
        os.utime(tmp_path / names[n], (old, old))
    removed = {os.path.basename(p) for p in serialize.sweep_temporaries(target)}
    assert removed == {names["dead"], names["stale_live"], names["legacy_old"]}


def test_save_errors_name_the_users_path(tmp_path, mlp) -> None:
    model = gd.compile([mlp.logits])
    missing = tmp_path / "no" / "such" / "m.gdl"
    with pytest.raises(FileNotFoundError, match=r"cannot save the model to .*no/such/m.gdl: the folder .*no/such "
                                                r"does not exist"):
        model.save(missing)
    with pytest.raises(IsADirectoryError, match=r"cannot save the model to .*: it is a folder"):
        model.save(tmp_path)
    assert os.listdir(tmp_path) == []


def test_an_exception_while_writing_removes_the_temporary(tmp_path, mlp, monkeypatch) -> None:
    model = gd.compile([mlp.logits])
    target = tmp_path / "m.gdl"

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writing.zipfile.ZipFile, "writestr", broken)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    assert os.listdir(tmp_path) == []


def test_paths_that_are_not_paths_are_named(mlp, tmp_path) -> None:
    """save, load, ONNX export and load take a str or a pathlib.Path; anything else is named."""
    train = gd.compile([mlp.loss], optimizer=gd.optim.SGD(0.1))
    for bad in (None, 3, ["m.gdl"]):
        with pytest.raises(gd.GraphDLError, match=r"save takes a file path \(a str or a pathlib.Path\)"):
            train.save(bad)
        with pytest.raises(gd.ModelFileError, match=r"gd.load takes a file path"):
            gd.load(bad)
        with pytest.raises(gd.ModelFileError, match=r"gd.onnx.load takes a file path"):
            gd.onnx.load(bad)
        with pytest.raises(gd.GraphDLError, match=r"gd.onnx.export takes a file path"):
            gd.onnx.export(train, bad)
    path = tmp_path / "m.gdl"  # a pathlib.Path works
    train.save(path)
    assert gd.load(path).outputs == train.outputs
    pytest.importorskip("onnx")
    for opset in ("x", 2.5, True, 3):
        with pytest.raises(gd.GraphDLError, match=r"opset .* is not supported; use a whole number from"):
            gd.onnx.export(train, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(gd.GraphDLError, match=r"outputs are nodes or node names, got 123"):
        gd.onnx.export(train, tmp_path / "m.onnx", outputs=[123])
