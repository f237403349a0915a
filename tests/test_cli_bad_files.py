"""The CLI turns any bad file into one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import graphdl as gd
from graphdl.cli import main
from tests.modelfiles import bomb_file


def _bad_files(tmp_path, mlp) -> dict[str, str]:
    good = tmp_path / "good.gdl"
    gd.compile([mlp.logits]).save(good)
    data = good.read_bytes()
    files = {"missing": str(tmp_path / "missing.gdl"), "directory": str(tmp_path), "text": str(tmp_path / "t.gdl"),
             "truncated": str(tmp_path / "cut.gdl"), "flipped": str(tmp_path / "flip.gdl"),
             "bomb": str(tmp_path / "bomb.gdl"), "fifo": str(tmp_path / "pipe.gdl"), "empty": str(tmp_path / "e.gdl")}
    (tmp_path / "t.gdl").write_text("not a model\nat all")
    (tmp_path / "cut.gdl").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40
    (tmp_path / "flip.gdl").write_bytes(bytes(flipped))
    (tmp_path / "bomb.gdl").write_bytes(bomb_file("graph.json", 1024 << 20, crc=False))
    (tmp_path / "e.gdl").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.gdl")
    return files


@pytest.mark.parametrize("command", ["info", "viz"])
def test_bad_files_give_one_line_and_a_nonzero_exit(tmp_path, mlp, capsys, command) -> None:
    for what, path in _bad_files(tmp_path, mlp).items():
        code = main([command, path, *(["-o", str(tmp_path / "out.svg")] if command == "viz" else [])])
        err = capsys.readouterr().err
        assert code != 0, what
        assert len(err.strip().splitlines()) == 1 and err.startswith("graphdl: error: "), (what, err)
        assert "Traceback" not in err


def test_no_traceback_from_the_real_command(tmp_path, mlp) -> None:
    files = _bad_files(tmp_path, mlp)
    root = os.path.dirname(os.path.dirname(os.path.abspath(gd.__file__)))
    for what in ("directory", "fifo", "truncated"):
        proc = subprocess.run([sys.executable, "-m", "graphdl.cli", "info", files[what]], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": root})
        assert proc.returncode == 1, (what, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, (what, proc.stderr)
