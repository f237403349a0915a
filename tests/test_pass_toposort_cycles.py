"""toposort: cycles behind and ahead of acyclic parts are found and named; ties keep definition order."""

from __future__ import annotations

import pytest

import graphdl as gd
from graphdl.ir import IR, Node, NodeKind
from passes.toposort import toposort


def _neg(name: str, *inputs: str) -> Node:
    return Node(name, NodeKind.OP, "neg", inputs, shape=(1,))


def test_cycle_with_a_tail_and_a_head_names_only_the_cycle() -> None:
    x = Node("x", NodeKind.PLACEHOLDER, "placeholder", shape=(1,))
    nodes = (x, _neg("head", "x"), _neg("p", "head", "r"), _neg("q", "p"), _neg("r", "q"),
             _neg("tail1", "q"), _neg("tail2", "tail1"))
    with pytest.raises(gd.CompileError, match=r"cycle: (p -> q -> r -> p|q -> r -> p -> q|r -> p -> q -> r);"):
        toposort(IR("cyc", nodes))


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(gd.CompileError, match=r"cycle: s -> s"):
        toposort(IR("cyc", (_neg("s", "s"),)))


def test_order_is_definition_order_among_ready_nodes() -> None:
    x = Node("x", NodeKind.PLACEHOLDER, "placeholder", shape=(1,))
    nodes = (_neg("b", "a"), x, _neg("a", "x"), _neg("c", "x"))
    assert [n.name for n in toposort(IR("g", nodes)).nodes] == ["x", "a", "b", "c"]
