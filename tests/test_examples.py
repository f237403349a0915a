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
    assert "weights restored" in proc.stdout and (tmp_path / "best.gdl").exists()
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "curves.png").shape[0] > 100  # next to the SVG


@pytest.mark.slow
def test_char_lm_pipeline(tmp_path) -> None:
    """A short run of the character LM: trains, reports bits per character against both baselines, saves,
    reloads in a fresh process and samples (the full run is what beats the bigram)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_char_lm.py"), "--out", str(tmp_path),
                           "--steps", "20", "--batch", "8", "--no-progress", "--no-check"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bits per character (unigram" in proc.stdout and "sampled in a fresh process" in proc.stdout
    assert os.path.exists(tmp_path / "char_lm.gdl")


@pytest.mark.slow
def test_char_lstm_pipeline(tmp_path) -> None:
    """A short run of the LSTM character LM: trains, reports bits per character against both baselines,
    saves, reloads in a fresh process and samples (the full run is what beats the bigram)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_char_lstm.py"), "--out",
                           str(tmp_path), "--steps", "10", "--batch", "8", "--no-progress", "--no-check"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bits per character (unigram" in proc.stdout and "sampled in a fresh process" in proc.stdout
    assert os.path.exists(tmp_path / "char_lstm.gdl")
