"""toposort: valid order for any DAG, definition order kept among ties, cycles named."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from graphdl.ir import IR, Node, NodeKind
from passes.toposort import toposort


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_random_dags_are_ordered_inputs_first(n: int, seed: int) -> None:
    rng = random.Random(seed)
    nodes = [Node("n0", NodeKind.PLACEHOLDER, "placeholder", shape=(2,), dtype="float64")]
    for i in range(1, n):
        k = rng.randint(1, 2)
        inputs = tuple(f"n{rng.randrange(i)}" for _ in range(k))
        nodes.append(Node(f"n{i}", NodeKind.OP, "add" if k == 2 else "neg", inputs, shape=(2,), dtype="float64"))
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    out = toposort(IR("g", tuple(shuffled)))
    position = {m.name: i for i, m in enumerate(out.nodes)}
    assert sorted(position) == sorted(m.name for m in nodes)
    assert all(position[i] < position[m.name] for m in out.nodes for i in m.inputs)
    assert toposort(IR("g", tuple(nodes))).nodes == tuple(nodes)  # already ordered: unchanged


def test_updates_run_after_every_reader_of_what_they_write() -> None:
    nodes = (
        Node("w", NodeKind.PARAM, "param", shape=(2,)),
        Node("g", NodeKind.OP, "neg", ("w",), shape=(2,)),
        Node("upd", NodeKind.UPDATE, "sgd_update", ("w", "g"),
             attrs=(("lr", 0.1), ("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0)), shape=()),
        Node("late", NodeKind.OP, "relu", ("w",), shape=(2,)),
    )
    order = [n.name for n in toposort(IR("u", nodes)).nodes]
    assert order.index("upd") > order.index("late")


def test_an_ordered_graph_is_returned_as_is_without_importing_networkx() -> None:
    import subprocess
    import sys

    code = ("import sys, graphdl as gd\n"
            "with gd.Graph('g') as g:\n"
            "    x = gd.placeholder('x', (None, 4)); y = gd.losses.MSE()(gd.layers.Linear(4, 4)(x), x)\n"
            "gd.compile([y], optimizer=gd.optim.Adam()).run({'x': __import__('numpy').ones((2, 4))})\n"
            "print('networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    nodes = (Node("x", NodeKind.PLACEHOLDER, "placeholder", shape=(2,)),
             Node("y", NodeKind.OP, "neg", ("x",), shape=(2,)))
    ir = IR("g", nodes)
    assert toposort(ir) is ir
