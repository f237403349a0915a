"""Attribute schemas: the type of each attribute an op accepts (``OpDef.attr_schema``), checked by the
builder and by the model-file loader, and the dtypes nodes and attributes may name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an attribute that has none: it must be given.
REQUIRED: Any = _Required()


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: The default of an attribute that may be left out and then means nothing (no default is filled in,
#: not even in a format-v2 file): for ops whose attributes depend on another one (remap_adjoint's ``of``).
ABSENT: Any = _Absent()
#: Integers in attributes stay well inside int64 and float64's exact range.
INT_LIMIT = 2**53


@dataclass(frozen=True)
class AttrSpec:
    """The type of one op attribute: what the builder accepts and what a model file may hold.

    ``kind`` is one of ``bool`` (a real bool, never a string or 0/1), ``int`` (not a bool),
    ``float`` (an int or float, not a bool), ``str`` (one of ``choices`` if given), ``ints`` (a
    sequence of ints, of ``length`` if given) and ``axes`` (None, an int, or a sequence of ints).
    ``nullable`` also allows None; ``low``/``high`` bound numbers (and each of ``ints``).
    ``default`` is REQUIRED when the attribute must be given.
    """

    kind: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    length: int | None = None
    low: float | None = None
    high: float | None = None
    #: ``ints`` only: entries may be None (an unknown dimension, as in a target shape).
    unknown: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if value is None:
            return None if self.nullable else f"must be {self.describe()}, got null/None"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be a bool, got {_show(value)}"
        if self.kind in ("int", "float"):
            ok = isinstance(value, int) if self.kind == "int" else isinstance(value, int | float)
            if not ok or isinstance(value, bool):
                return f"must be {self.describe()}, got {_show(value)}"
            return self._bounds(value)
        if self.kind == "str":
            if not isinstance(value, str):
                return f"must be a string, got {_show(value)}"
            if self.choices and value not in self.choices:
                return f"must be one of {', '.join(repr(c) for c in self.choices)}, got {_show(value)}"
            return None
        if self.kind == "axes" and isinstance(value, int) and not isinstance(value, bool):
            return self._bounds(value)
        if self.kind in ("ints", "axes"):
            if not isinstance(value, tuple | list) or any(
                    isinstance(v, bool) or not (isinstance(v, int) or (v is None and self.unknown)) for v in value):
                return f"must be {self.describe()}, got {_show(value)}"
            if self.length is not None and len(value) != self.length:
                return f"must have {self.length} entries, got {len(value)}"
            if len(value) > 64:
                return f"has {len(value)} entries; at most 64 are allowed"
            return next((p for p in map(self._bounds, (v for v in value if v is not None)) if p), None)
        if self.kind == "graph":  # a sub-graph (a scan body): the file format validates its nodes
            from graphdl.ir import IR

            return None if isinstance(value, IR) else f"must be a sub-graph (IR), got {_show(value)}"
        if self.kind == "entries":  # a list of short lists of ints, None and short strings (index entries)
            ok = isinstance(value, tuple | list) and len(value) <= 64 and all(
                isinstance(e, tuple | list) and len(e) <= 8 and all(
                    x is None or (isinstance(x, str) and len(x) <= 16)
                    or (isinstance(x, int) and not isinstance(x, bool) and abs(x) <= INT_LIMIT) for x in e)
                for e in value)
            return None if ok else f"must be {self.describe()}, got {_show(value)}"
        raise AssertionError(f"unknown attribute kind {self.kind!r}")

    def _bounds(self, value: float) -> str | None:
        if isinstance(value, int) and abs(value) > INT_LIMIT:
            return f"{value} is out of range (|x| <= 2**53)"
        if isinstance(value, float) and self.low is not None and math.isnan(value):
            return "must not be NaN"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}, got {value}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}, got {value}"
        return None

    def describe(self) -> str:
        text = {"bool": "a bool", "int": "an int", "float": "a number", "str": "a string",
                "ints": "a list of ints" + (" or nulls" if self.unknown else ""),
                "axes": "an int or a list of ints",
                "entries": "a list of index entries (lists of ints, nulls and short strings)",
                "graph": "a sub-graph"}[self.kind]
        return text + (" or None" if self.nullable else "")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def Bool(default: Any = REQUIRED) -> AttrSpec:
    return AttrSpec("bool", default)


def Int(default: Any = REQUIRED, low: float | None = None, high: float | None = None,
        nullable: bool = False) -> AttrSpec:
    return AttrSpec("int", default, low=low, high=high, nullable=nullable)


def Float(default: Any = REQUIRED, low: float | None = None, high: float | None = None,
          nullable: bool = False) -> AttrSpec:
    return AttrSpec("float", default, low=low, high=high, nullable=nullable)


def Str(*choices: str, default: Any = REQUIRED, nullable: bool = False) -> AttrSpec:
    return AttrSpec("str", default, choices=choices, nullable=nullable)


def Ints(length: int | None = None, default: Any = REQUIRED, low: float | None = None,
         nullable: bool = False, unknown: bool = False) -> AttrSpec:
    return AttrSpec("ints", default, length=length, low=low, nullable=nullable, unknown=unknown)


def Axes(default: Any = None, nullable: bool = True, low: float | None = None) -> AttrSpec:
    """One int or several (an axis or axes, repeat counts); None (all axes) unless ``nullable`` is False."""
    return AttrSpec("axes", default, nullable=nullable, low=low)


#: dtypes a node may have and attributes may name.
DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
