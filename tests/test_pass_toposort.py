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


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 14), seed=st.integers(0, 10_000))
def test_the_in_order_check_agrees_with_the_dependency_edges(n: int, seed: int) -> None:
    """The one-walk check (``_in_order``) says yes exactly when every data and control edge points forward,
    on random orders of graphs with parameters and the updates writing them."""
    from passes.toposort import _in_order, dependency_edges

    rng = random.Random(seed)
    sgd = (("lr", 0.1), ("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0))
    nodes = [Node("w0", NodeKind.PARAM, "param", shape=(2,)), Node("w1", NodeKind.PARAM, "param", shape=(2,))]
    for i in range(n):
        if rng.random() < 0.3:
            nodes.append(Node(f"u{i}", NodeKind.UPDATE, "sgd_update", (f"w{rng.randrange(2)}", rng.choice(nodes).name),
                              attrs=sgd, shape=()))
        else:
            inputs = tuple(rng.choice([m for m in nodes if m.kind is not NodeKind.UPDATE]).name for _ in range(2))
            nodes.append(Node(f"n{i}", NodeKind.OP, "add", inputs, shape=(2,)))
    if rng.random() < 0.5:
        rng.shuffle(nodes)
    ir = IR("g", tuple(nodes))
    names = {m.name for m in nodes}
    position = {m.name: i for i, m in enumerate(nodes)}
    edges_forward = all(position[a] < position[b] for a, b in dependency_edges(ir))
    assert names == set(position)
    assert _in_order(ir) == edges_forward
