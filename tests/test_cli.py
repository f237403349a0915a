"""The graphdl command line."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import graphdl as gd
from graphdl.cli import main


def test_info_lists_inputs_outputs_parameters_and_bytes(mlp, tmp_path, capsys) -> None:
    path = tmp_path / "m.gdl"
    gd.compile([mlp.loss], optimizer=gd.optim.Adam()).save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("training", "x ", "(?, 64)", "y ", "int64", "fc1.W", "(64, 128)", "32.0 KiB", "fc2.b",
                 "optimizer.t", "parameters: 9,610 values"):
        assert text in out, text


def test_viz_writes_svg(mlp, tmp_path) -> None:
    path = tmp_path / "m.gdl"
    gd.compile([mlp.logits]).save(path)
    out = tmp_path / "m.svg"
    proc = subprocess.run([sys.executable, "-m", "graphdl.cli", "viz", str(path), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    assert "wrote" in proc.stdout
    ET.parse(out)


def test_bad_file_is_a_clean_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.gdl"
    bad.write_bytes(b"PK\x03\x04 nonsense")
    assert main(["info", str(bad)]) == 1
    assert "graphdl: error:" in capsys.readouterr().err
