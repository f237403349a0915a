"""The Python a bound plan runs: one line per step, in chunks of CHUNK steps (graphdl/executor.py binds it).

Nothing from the graph becomes code: kernels and arrays are named by index only, and each line's comment
(the node's name and op) is escaped to printable ASCII, so no name can end the line it is on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from graphdl.plan import Plan, Step


def comment_text(label: str) -> str:
    """``label`` made safe for a comment in generated code: backslash escapes (``ascii``) for
    everything outside printable ASCII, so newlines, carriage returns and other line breaks cannot occur."""
    return ascii(str(label))[1:-1]


#: Steps per generated function: CPython compiles a function in time that grows faster than its
#: length, so long plans are split into chunks called in turn.
CHUNK = 256


def generate_source(plan: Plan, value_names: list[str], chunk: int | None = None) -> list[tuple[str, list[int]]]:
    """One function per chunk of steps, with the indices (into ``value_names``) of the values it uses.

    In chunk c, ``k<j>`` is the kernel of its j-th step (plan step ``c * chunk + j``) and ``v<i>`` the
    i-th value it uses (``value_names[used[i]]``, in order of first use), both globals of the chunk's
    own namespace: no closure (a function with thousands of free variables compiles slowly; a global
    load costs the same at run time), and chunks of a repeated pattern of steps (stacked layers) have
    the same code, compiled once (``BoundPlan``). Each step is one line with its node's name and op in
    a comment.

    Nothing from the graph becomes code: kernels and arrays are named by index only, and the comment
    is escaped to printable ASCII (``comment_text``), so no name can end the line it is on."""
    index = {name: i for i, name in enumerate(value_names)}
    return [(src, [index[v] for v in used]) for src, _, used in chunk_sources(plan.steps, chunk or CHUNK)]


def chunk_sources(steps: tuple[Step, ...], chunk: int) -> list[tuple[str, str, list[str]]]:
    """Per chunk: (source with comments, the same code without them, the values it uses in order)."""
    out = []
    for c0 in range(0, max(len(steps), 1), chunk):
        local: dict[str, int] = {}  # value -> its number in this chunk
        code = ["def chunk():"]
        comments = [f"def chunk_{c0 // chunk}():"]
        for j, s in enumerate(steps[c0:c0 + chunk]):
            args = ", ".join([f"v{local.setdefault(i, len(local))}" for i in (*s.inputs, *s.outputs)])
            line = f"    k{j}({args})"
            code.append(line)
            comments.append(f"{line}  # {comment_text(f'{s.node} ({s.op})')}")
        if len(code) == 1:
            code.append("    pass")
            comments.append("    pass")
        out.append(("\n".join(comments) + "\n", "\n".join(code) + "\n", list(local)))
    return out


FIRST_STEP_LINE = 2  # line of a chunk's first step in its generated source


def sequence(chunks: list[Callable[[], None]]) -> Callable[[], None]:
    """One function calling the chunks' functions in turn."""

    def step() -> None:
        for chunk in chunks:
            chunk()

    return step



class Lines(Sequence[str]):
    """A chunk's generated lines for ``linecache``, split from the plan's source when first read (a
    traceback, a debugger): a plan of 100k steps would otherwise keep 100k line strings beside it."""

    __slots__ = ("_end", "_lines", "_source", "_start")

    def __init__(self, source: str, start: int, end: int) -> None:
        self._source, self._start, self._end = source, start, end
        self._lines: list[str] | None = None

    def _split(self) -> list[str]:
        if self._lines is None:
            self._lines = self._source[self._start:self._end].splitlines(True)
        return self._lines

    def __getitem__(self, index):  # type: ignore[override]  # an int or a slice, as a list
        return self._split()[index]

    def __len__(self) -> int:
        return len(self._split())
