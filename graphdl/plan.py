"""What compilation produces for one set of concrete feed shapes: steps and a buffer table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Step:
    """Run ``op`` of node ``node``: read ``inputs`` (value names), write ``output`` (or nothing)."""

    node: str
    op: str
    inputs: tuple[str, ...]
    output: str | None


@dataclass(frozen=True, slots=True)
class BufferSlot:
    """Where one computed value lives: ``nbytes`` at ``offset`` in the shared arena."""

    offset: int
    nbytes: int


@dataclass(frozen=True)
class Plan:
    """A specialised schedule: concrete shapes, steps in order, arena offsets for computed values.

    Feeds, parameters, state and constants are not in the arena: they are bound by name. Values
    whose slots overlap in the arena are never live at the same step (``plan_buffers`` ensures it).
    """

    steps: tuple[Step, ...]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    slots: dict[str, BufferSlot]
    arena_bytes: int
    naive_bytes: int
    lower_bound_bytes: int
    feeds: tuple[str, ...]
    outputs: tuple[str, ...]
    live_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Node name -> arena slots of the scratch buffers its kernel declared, live during its step only.
    workspace: dict[str, tuple[BufferSlot, ...]] = field(default_factory=dict)
