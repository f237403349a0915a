"""Shared fixtures: the README's MLP graph, built fresh for each test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import settings
from tqdm import tqdm

import graphdl as gd
from graphdl import layers, losses

# tqdm's monitor thread wakes up and allocates while other tests measure allocations (tracemalloc sees
# every thread); progress bars work without it.
tqdm.monitor_interval = 0

# CI runs must be reproducible: the same examples on every run (locally, hypothesis explores anew).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@dataclass
class MLP:
    g: gd.Graph
    x: gd.Tensor
    y: gd.Tensor
    fc1: layers.Linear
    logits: gd.Tensor
    loss: gd.Tensor


def build_mlp(dtype: str = "float32", seed: int = 0) -> MLP:
    with gd.Graph("mlp", dtype=dtype, seed=seed) as g:
        x = gd.placeholder("x", shape=(None, 64))
        y = gd.placeholder("y", shape=(None,), dtype="int64")
        fc1 = layers.Linear(64, 128, name="fc1")
        h = layers.ReLU()(fc1(x))
        logits = layers.Linear(128, 10, name="fc2")(h)
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return MLP(g, x, y, fc1, logits, loss)


@pytest.fixture
def mlp() -> MLP:
    return build_mlp()


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 64)).astype("float32"), rng.integers(0, 10, 32)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", type=int, default=2000,
                     help="cases for tests/test_fuzz_model_files.py (default 2000; use 20000+ for a deep run)")
