"""Random well-formed graphs for property tests: elementwise/matmul DAGs over one batch placeholder."""

from __future__ import annotations

from hypothesis import strategies as st

import graphdl as gd

UNARY = ("relu", "tanh", "sigmoid", "neg", "exp")
BINARY = ("add", "sub", "mul")


@st.composite
def random_graphs(draw: st.DrawFn, max_nodes: int = 25) -> tuple[gd.Graph, list[gd.Tensor]]:
    """A graph of random unary/binary ops (and a few reductions) on (None, 8) values; returns outputs."""
    with gd.Graph("random", dtype="float64") as g:
        values = [gd.placeholder("x", (None, 8))]
        for _ in range(draw(st.integers(1, max_nodes))):
            kind = draw(st.sampled_from(("unary", "binary", "binary", "sum")))
            a = draw(st.sampled_from(values))
            if kind == "unary":
                values.append(g.apply(draw(st.sampled_from(UNARY)), [a]))
            elif kind == "binary":
                b = draw(st.sampled_from(values))
                values.append(g.apply(draw(st.sampled_from(BINARY)), [a, b]))
            else:
                values.append(gd.ops.sum(a, axis=1, keepdims=True) * 0.1 + a)
        outputs = draw(st.lists(st.sampled_from(values[1:]), min_size=1, max_size=3, unique_by=lambda t: t.name))
    return g, outputs
