"""What compilation produces for one set of concrete feed shapes: steps and a buffer table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Step:
    """Run ``op`` of node ``node``: read ``inputs``, write ``outputs`` (value references; none for updates)."""

    node: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def output(self) -> str | None:
        """The first output (the only one of a single-output node), or None for an update."""
        return self.outputs[0] if self.outputs else None


@dataclass(frozen=True, slots=True)
class BufferSlot:
    """Where one computed value lives: ``nbytes`` at ``offset`` in the shared arena."""

    offset: int
    nbytes: int


class LiveRanges(Mapping[str, tuple[int, int]]):
    """Value reference -> (step computing it, last step reading it), in step order: two lists of step
    numbers beside the values' list (a dict of 100k tuples costs 80 B a value; this, 16), indexed by
    name on the first lookup."""

    __slots__ = ("_first", "_index", "_last", "_values")

    def __init__(self, values: Sequence[str], first: Sequence[int], last: Sequence[int]) -> None:
        self._values, self._first, self._last = values, first, last
        self._index: dict[str, int] | None = None

    def __getitem__(self, value: str) -> tuple[int, int]:
        if self._index is None:
            self._index = {v: i for i, v in enumerate(self._values)}
        i = self._index[value]
        return self._first[i], self._last[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"LiveRanges({dict(self.items())!r})"


@dataclass(frozen=True)
class Plan:
    """A specialised schedule: concrete shapes, steps in order, arena offsets for computed values.

    ``shapes``, ``dtypes``, ``slots`` and ``live_ranges`` are keyed by value reference (``node`` or
    ``node:k`` for output k of a multi-output node): every output has its own slot.

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
    live_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: Node name -> arena slots of the scratch buffers its kernel declared, live during its step only.
    workspace: dict[str, tuple[BufferSlot, ...]] = field(default_factory=dict)
