"""Shared by the rewriting passes: drop nodes and point their readers at replacements."""

from __future__ import annotations

from collections.abc import Mapping

from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, node_of, parse_ref, ref, replace_node
from graphdl.registry import get_op

LEAF_KINDS = STORED_KINDS | {NodeKind.PLACEHOLDER}


def is_pure(node: Node) -> bool:
    """A value that depends only on its inputs and attributes: safe to merge, fold or drop.

    Computed nodes ask their op's declared effects (no writes, no random numbers); of the leaves only
    scalar constants qualify (feeds, parameters and state change between runs).
    """
    if node.kind in LEAF_KINDS:
        return node.kind is NodeKind.CONSTANT and node.op == "scalar"
    return get_op(node.op).effects.pure


def writes(node: Node) -> tuple[int, ...]:
    """The inputs a computed node writes in place, as its op declares (empty for leaves and pure ops)."""
    return () if node.kind in LEAF_KINDS else get_op(node.op).effects.writes


def resolve(forward: Mapping[str, str], value: str) -> str:
    """Where a reference points once the nodes in ``forward`` are dropped (chains followed).

    ``forward`` maps a node name to the value that replaces it: any value for a single-output node,
    or the name of an equivalent node for a multi-output one (``a:1`` then becomes ``b:1``).
    """
    if value not in forward and ":" not in value:
        return value  # the common case: output 0 of a node that stays
    node, k = parse_ref(value)
    while node in forward:
        node, k = parse_ref(forward[node]) if k == 0 else (node_of(forward[node]), k)
    return ref(node, k)


def redirect(ir: IR, forward: Mapping[str, str], replace: Mapping[str, Node] | None = None) -> IR:
    """Drop each node in ``forward`` (its readers read ``forward[name]`` instead, chains resolved)
    and swap in the nodes of ``replace``. Outputs must not be in ``forward``."""
    replace = replace or {}
    if not forward and not replace:
        return ir

    def target(name: str) -> str:
        return resolve(forward, name)

    nodes = []
    for n in ir.nodes:
        if n.name in forward:
            continue
        n = replace.get(n.name, n)
        inputs = tuple([target(i) for i in n.inputs])
        nodes.append(n if inputs == n.inputs else replace_node(n, inputs=inputs))
    return ir.replace(nodes=tuple(nodes))
