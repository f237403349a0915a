"""The transformer benchmark times the same model and step in graphdl and PyTorch (same weights, same loss)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import harness, seq_models
from bench.competitors import WORKLOADS, graphdl_workload


def test_transformer_workload_is_registered_with_a_title() -> None:
    assert "transformer_train" in WORKLOADS and "transformer_train" in harness.TITLES
    assert seq_models.torch_step("cnn_train") is None and seq_models.graphdl_workload("cnn_train") is None


@pytest.mark.slow
def test_transformer_step_is_the_same_in_both_frameworks() -> None:
    torch = pytest.importorskip("torch")
    ex, feeds = graphdl_workload("transformer_train")
    step = seq_models.torch_transformer()
    x = torch.from_numpy(next(iter(feeds.values())))
    for _ in range(2):  # the second loss also checks that both took the same SGD step
        ours = float(ex.run(feeds)[0])
        theirs = step(x).item()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
