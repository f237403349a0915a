"""GraphDLError and its subclasses: every user mistake raises one of these."""

from __future__ import annotations


class GraphDLError(Exception):
    """Base class of every error graphdl raises on purpose."""


class GraphError(GraphDLError):
    """The graph is malformed: duplicate names, unknown inputs, cycles, wrong graph."""


class ShapeError(GraphDLError):
    """An op's inputs have shapes its shape rule rejects."""


class DTypeError(GraphDLError):
    """An op's inputs have dtypes it cannot combine."""


class GradientError(GraphDLError):
    """A gradient was asked for that cannot be built (no rule, disconnected input)."""


class FeedError(GraphDLError):
    """A feed is missing, unknown, or has the wrong shape or dtype."""


class CompileError(GraphDLError):
    """A compiler pass failed; the message names the pass and those before it."""


class ExecutionError(GraphDLError):
    """A kernel failed at run time; the message names the node, op and input shapes."""


class ModelFileError(GraphDLError):
    """A model file is truncated, corrupted, foreign or from an unknown format version."""


class VizError(GraphDLError):
    """Drawing failed, usually because Graphviz's `dot` program is not installed."""


class NonFiniteError(ExecutionError):
    """A step produced NaN or inf (the objective, or with check_numerics a named node); no state was changed."""


class ResourceError(GraphDLError):
    """A plan or a file would need more memory (or another resource) than allowed or available."""


def whole_number(value: object, what: str, low: int = 0, error: type[GraphDLError] = GraphDLError,
                 hint: str = "") -> int:
    """``value`` as an int if it is one (NumPy's too, never a bool) >= ``low``, else ``error`` naming ``what``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise error(f"{what} must be a whole number >= {low}, got {value!r} ({type(value).__name__}){hint}")
    return int(value)


def file_path(path: object, what: str, error: type[GraphDLError] = GraphDLError) -> str:
    """``path`` as a str if it is one or an os.PathLike, else ``error`` saying ``what`` takes a path."""
    import os

    if not isinstance(path, str | os.PathLike):
        raise error(f"{what} takes a file path (a str or a pathlib.Path), got {type(path).__name__} {path!r:.60}")
    return os.fspath(path)


def real_number(value: object, what: str, error: type[GraphDLError] = GraphDLError) -> float:
    """``value`` as a float if it is a finite real number (NumPy's too, never a bool), else ``error``."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise error(f"{what} must be a finite number, got {value!r:.40} ({type(value).__name__})")
    return float(value)


def flag(value: object, what: str, error: type[GraphDLError] = GraphDLError) -> bool:
    """``value`` as a bool if it is True or False (NumPy's bools too), else ``error`` naming ``what`` (an
    array would otherwise meet ``if value:`` and NumPy's "truth value ... is ambiguous")."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise error(f"{what} must be True or False, got {value!r:.40} ({type(value).__name__})")


def choice(value: object, what: str, options: tuple[str, ...], error: type[GraphDLError] = GraphDLError) -> str:
    """``value`` if it is one of the strings ``options``, else ``error`` naming ``what`` and listing them."""
    if isinstance(value, str) and value in options:
        return value
    listed = ", ".join(repr(o) for o in options)
    raise error(f"{what} must be one of {listed}, got {value!r:.40} ({type(value).__name__})")
