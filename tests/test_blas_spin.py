"""The thread mode does not depend on the import order (graphdl/threads.py): fresh processes importing
NumPy or graphdl first run a CNN step holding the threads, give BLAS its count back and get the same bits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = """
import hashlib, os
import numpy as np
import graphdl as gd
from graphdl import layers, threads
from graphdl.cli import system_info

with gd.Graph("cnn", seed=0):
    x = gd.placeholder("x", (None, 1, 16, 16))
    h = layers.MaxPool2D(2)(layers.ReLU()(layers.Conv2D(1, 32, 3, padding=1)(x)))
    h = layers.MaxPool2D(2)(layers.ReLU()(layers.Conv2D(32, 16, 3, padding=1)(h)))
    logits = layers.Linear(16 * 4 * 4, 10)(layers.Flatten()(h))
    y = gd.placeholder("y", (None,), dtype="int64")
    loss = gd.losses.SoftmaxCrossEntropy()(logits, y)
train = gd.compile([loss], gd.optim.SGD(0.05))
rng = np.random.default_rng(0)
feeds = {x: rng.standard_normal((32, 1, 16, 16), dtype=np.float32), y: rng.integers(0, 10, 32)}
gd.set_num_threads(2)
for _ in range(3):
    train.run(feeds)
digest = hashlib.sha256(b"".join(v.tobytes() for _, v in sorted(train.parameters().items()))).hexdigest()[:16]
mode = [line for line in system_info().splitlines() if line.startswith("threads:")][0]
holds = train.bound_plan({"x": (32, 1, 16, 16), "y": (32,)}).splits
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), threads.SPLIT_MIN, holds, threads._blas().get_num_threads(), digest,
      mode, sep="|")
"""


def _probe(first: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GRAPHDL_SPLIT_MIN",
                                                               "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    clean["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", f"{first}\n{PROBE}"], env={**clean, **env}, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1].split("|")


def test_both_import_orders_hold_the_threads_give_them_back_and_agree_to_the_bit() -> None:
    numpy_first = _probe("import numpy")
    graphdl_first = _probe("import graphdl")
    # graphdl no longer sets OpenBLAS's spin; the kernels split, the plan holds; BLAS has its 2 threads after
    assert numpy_first[:4] == graphdl_first[:4] == ["None", "65536", "True", "2"]
    assert numpy_first[4] == graphdl_first[4]  # the same parameters after 3 steps
    assert numpy_first[5] == graphdl_first[5] and "steps of plans" in numpy_first[5]


def test_split_min_off_stays_an_override_in_either_order() -> None:
    for first in ("import numpy", "import graphdl"):
        spin, split_min, holds, count, _, mode = _probe(first, GRAPHDL_SPLIT_MIN="off")
        assert (split_min, holds, count) == ("None", "False", "2") and "off" in mode
    assert _probe("import numpy", GRAPHDL_SPLIT_MIN="4096")[1:3] == ["4096", "True"]


def test_a_malformed_split_min_is_refused_by_name() -> None:
    from graphdl.errors import GraphError
    from graphdl.threads import SPLIT_ON, _split_min

    assert (_split_min(""), _split_min(" OFF "), _split_min("4096")) == (SPLIT_ON, None, 4096)
    for bad in ("of", "-1", "1e5", "64k"):
        with pytest.raises(GraphError, match=rf"GRAPHDL_SPLIT_MIN must be .* got '{bad}'"):
            _split_min(bad)
    env = {**os.environ, "PYTHONPATH": ROOT, "GRAPHDL_SPLIT_MIN": "of"}
    out = subprocess.run([sys.executable, "-c", "import graphdl"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "GRAPHDL_SPLIT_MIN must be a whole number" in out.stderr
