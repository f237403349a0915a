"""Text forms: the summary counts a shared parameter once and shows each node's inputs and outputs."""

from __future__ import annotations

import re

import graphdl as gd


def test_summary_counts_a_layer_used_five_times_once() -> None:
    with gd.Graph("shared") as g:
        x = gd.placeholder("x", (None, 4))
        fc = gd.layers.Linear(4, 4, name="fc")
        h = x
        for _ in range(5):
            h = fc(h)
        a, b = gd.ops.split(h, [1, 3], axis=1)
        gd.ops.sum(a) + gd.ops.sum(b)
    table = g.summary()
    assert "total parameters: 20" in table
    assert re.search(r"^fc\s+linear\s+x\s+\(\?, 4\)\s+20$", table, re.M)
    assert re.search(r"^fc_4\s+linear\s+fc_3\s+\(\?, 4\)\s+0 \(shares fc\)$", table, re.M)
    assert re.search(r"^split\s+split\s+fc_4\s+\(\?, 1\), \(\?, 3\)\s+0$", table, re.M)  # every output
    assert re.search(r"^sum_1\s+sum\s+split:1\s+\(\)", table, re.M)  # which output a node reads


def test_summary_agrees_with_the_parameter_count_of_the_compiled_model() -> None:
    with gd.Graph("two") as g:
        x = gd.placeholder("x", (None, 3))
        enc = gd.layers.Linear(3, 5, name="enc")
        y = gd.layers.Linear(5, 2, name="head")(gd.ops.relu(enc(x)) + gd.ops.relu(enc(x)))
    exe = gd.compile([y])
    total = sum(v.size for v in exe.parameters().values())
    assert f"total parameters: {total:,}" in g.summary() and f"total parameters: {total:,}" in exe.summary()
