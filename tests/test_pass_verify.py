"""verify on hand-built IRs: which error a malformed node gets first."""

from __future__ import annotations

import pytest

from graphdl.errors import CompileError
from graphdl.ir import IR, Node, NodeKind
from passes.verify import verify


def _x(name: str = "x") -> Node:
    return Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=(2,))


def _tanh(name: str, *inputs: str) -> Node:
    return Node(name, NodeKind.OP, "tanh", inputs, shape=(2,))


@pytest.mark.parametrize("second", [
    _tanh("t", "x"),  # otherwise fine
    _tanh("t", "nowhere"),  # and reads a missing node
    _tanh("t", "x", "x"),  # and has the wrong number of inputs
])
def test_a_duplicate_name_is_reported_first(second: Node) -> None:
    with pytest.raises(CompileError, match=r"node name 't' appears twice"):
        verify(IR("g", (_x(), _tanh("t", "x"), second), ("t",)))


def test_a_node_cannot_read_itself() -> None:
    with pytest.raises(CompileError, match=r"'t' \(tanh.*reads 't' before it is defined"):
        verify(IR("g", (_x(), _tanh("t", "t")), ("t",)))


def test_a_valid_ir_is_returned_unchanged() -> None:
    ir = IR("g", (_x(), _tanh("t", "x"), _tanh("u", "t")), ("u",))
    assert verify(ir) is ir
