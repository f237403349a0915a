"""Data parallelism as a compiler pass: gradient all-reduces become nodes of the plan.

``allreduce_gradients`` (called by ``add_training`` when a plan is compiled with ``distributed=``)
groups the gradients into buckets of about ``bucket_bytes``, in the order the backward pass produces
them (the last layer's first), and replaces each gradient by its mean over the ranks:
``allreduce_start`` of a bucket, ``allreduce_wait``, then one ``bucket_slice`` per gradient.
``schedule_collectives`` then moves each start right after its last gradient is computed and each
wait just before its first reader, so the all-reduces run while later backward kernels execute.
Every rank compiles the same graph, so every rank issues the same collectives in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from graphdl.builder import Builder, Tensor
from graphdl.ir import IR, Node


def allreduce_gradients(b: Builder, pairs: Sequence[tuple[Tensor, Tensor]], order: Sequence[str], *,
                        bucket_bytes: int, timeout: float) -> list[tuple[Tensor, Tensor]]:
    """(param, mean-over-ranks gradient) pairs; ``order`` lists node names in the order they are computed."""
    position = {name: i for i, name in enumerate(order)}
    by_readiness = sorted(pairs, key=lambda pg: position.get(pg[1].name, len(position)))
    buckets: list[list[tuple[Tensor, Tensor]]] = [[]]
    size = 0
    for p, g in by_readiness:
        nbytes = math.prod(g.shape) * np.dtype(g.dtype).itemsize
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append((p, g))
        size += nbytes
    averaged: dict[str, Tensor] = {}
    for k, bucket in enumerate(buckets):
        start = b.apply("allreduce_start", [g for _, g in bucket], {"bucket": k},
                        name=b.fresh(f"allreduce/{k}/start"))
        done = b.apply("allreduce_wait", [start], {"bucket": k, "timeout": float(timeout)},
                       name=b.fresh(f"allreduce/{k}/wait"))
        offset = 0
        for p, g in bucket:
            averaged[p.name] = b.apply("bucket_slice", [done], {"offset": offset, "shape": tuple(g.shape)},
                                       name=b.fresh(f"allreduce/{p.name}"))
            offset += math.prod(g.shape)
    return [(p, averaged[p.name]) for p, _ in pairs]


def schedule_collectives(ir: IR) -> IR:
    """Starts as early as their inputs allow, waits as late as their readers allow (order stays valid)."""
    nodes = list(ir.nodes)
    if not any(n.op == "allreduce_start" for n in nodes):
        return ir
    for start in [n for n in nodes if n.op == "allreduce_start"]:
        nodes.remove(start)
        index = {n.name: i for i, n in enumerate(nodes)}
        nodes.insert(max(index[i] for i in start.inputs) + 1, start)
    for wait in [n for n in nodes if n.op == "allreduce_wait"]:
        nodes.remove(wait)
        first = min((i for i, n in enumerate(nodes) if wait.name in n.inputs), default=len(nodes))
        nodes.insert(first, wait)
    return ir.replace(nodes=tuple(nodes))


def collective_nodes(ir: IR) -> list[Node]:
    """The all-reduce nodes of a plan, in order (for tests and reports)."""
    return [n for n in ir.nodes if n.op in ("allreduce_start", "allreduce_wait")]
