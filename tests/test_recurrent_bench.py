"""The lstm_train benchmark workload computes the same step in graphdl and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from bench import lstm_models
from bench.competitors import WORKLOADS

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_lstm_workload_is_registered_and_matches_pytorch() -> None:
    assert "lstm_train" in WORKLOADS
    ex, feeds = lstm_models.graphdl_workload("lstm_train")
    step = lstm_models.torch_lstm()
    x = torch.from_numpy(next(iter(feeds.values())))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small GEMMs: threads only cost time (and the machine may be shared)
    try:
        with gd.num_threads(1):
            for _ in range(2):  # the second loss also checks the first update
                ours, theirs = ex.run(feeds)[0], step(x).item()
                np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)
