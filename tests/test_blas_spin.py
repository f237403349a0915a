"""OpenBLAS's idle spin and the batch-split kernels' default (graphdl/threads.py), in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = "import os, graphdl.threads as t; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), t.SPLIT_MIN)"


def _probe(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GRAPHDL_SPLIT_MIN")}
    clean["PYTHONPATH"] = ROOT
    code = f"{first}\n{PROBE}"
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize(("first", "env", "expected"), [
    ("import graphdl", {}, "20 65536"),  # before NumPy: a short spin, so the kernels split
    ("import numpy, graphdl", {}, "None None"),  # NumPy's BLAS already loaded with its long spin: no split
    ("import numpy, graphdl", {"OPENBLAS_THREAD_TIMEOUT": "10"}, "10 65536"),  # the user's short spin
    ("import graphdl", {"OPENBLAS_THREAD_TIMEOUT": "28"}, "28 None"),  # the user's long spin is kept
    ("import graphdl", {"GRAPHDL_SPLIT_MIN": "off"}, "20 None"),
    ("import numpy, graphdl", {"GRAPHDL_SPLIT_MIN": "4096"}, "None 4096"),
])
def test_split_default_follows_the_blas_spin(first: str, env: dict, expected: str) -> None:
    assert _probe(first, **env) == expected
