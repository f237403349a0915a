"""The examples run end to end and reach their accuracy targets."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_train_digits_mlp(tmp_path) -> None:
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_digits.py"), "--out", str(tmp_path),
                           "--no-progress"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    acc = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    assert acc >= 0.96
    assert "identical outputs" in proc.stdout
    assert (tmp_path / "train.svg").exists() and (tmp_path / "mlp.gdl").exists()
