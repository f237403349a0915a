"""examples/train_digits_cnn.py reaches 98 % test accuracy in under two minutes and reloads identically."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_train_digits_cnn(tmp_path) -> None:
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_digits_cnn.py"), "--out",
                           str(tmp_path), "--no-progress"], capture_output=True, text=True, timeout=240, env=env)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    acc = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    assert acc >= 0.98
    assert "identical predictions" in proc.stdout
    assert seconds < 120, f"took {seconds:.0f} s"
    assert (tmp_path / "digits_cnn.gdl").exists() and (tmp_path / "digits_cnn.svg").exists()
    assert "weights restored" in proc.stdout and (tmp_path / "best.gdl").exists() and (tmp_path / "curves.png").exists()
