"""Dtypes: promotion of mixed operands (PyTorch/NumPy category rules) and the dtype rules ops share.

Values may be bool, integer or floating. Promotion works by category, as in PyTorch: any floating
operand makes the result floating (the widest float among the floating operands, so
``float32 + int64`` stays float32), else any integer operand makes it integer (NumPy's rule among
integers), else bool. Python numbers are "weak": they take the dtype of the tensor they meet
(``x_int + 1`` stays integer, ``x_int + 0.5`` becomes the graph's float dtype).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from graphdl.registry import RuleError


@functools.cache  # a pure function of a handful of dtype names, asked once per node built
def kind(dtype: str) -> str:
    """'b' (bool), 'i' (signed or unsigned integer) or 'f' (floating)."""
    k = np.dtype(dtype).kind
    return "i" if k in "iu" else k


def is_float(dtype: str) -> bool:
    return kind(dtype) == "f"


@functools.cache  # pure; NumPy's promotion and dtype naming cost microseconds per call
def result_dtype(*dtypes: str) -> str:
    """The promoted dtype of operands of these dtypes (see the module docstring)."""
    for k in ("f", "i"):
        same = [d for d in dtypes if kind(d) == k]
        if same:
            return str(np.result_type(*same))
    return "bool"


def scalar_dtype(value: object, like: str | None, default_float: str) -> str:
    """The dtype a Python number takes next to a tensor of dtype ``like`` (weak scalar typing)."""
    if isinstance(value, bool | np.bool_):
        return like if like is not None else "bool"
    if isinstance(value, int | np.integer):
        return like if like is not None and kind(like) in "fi" else "int64"
    if like is not None and is_float(like):
        return like
    return default_float


def promote(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of arithmetic ops: the promoted dtype of all inputs."""
    return result_dtype(*dtypes)


def promote_numeric(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of arithmetic that bool cannot take (``-``, ``**``, ``%``, ``//``)."""
    out = result_dtype(*dtypes)
    if out == "bool":
        raise RuleError("arithmetic on bool values", "convert them first with .astype('int64') or "
                        ".astype('float32')", kind="dtype")
    return out


def promote_no_bool(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of subtraction and negation, which PyTorch refuses for any bool operand."""
    if "bool" in dtypes:
        raise RuleError("subtraction and negation of bool values are not defined",
                        "use logical_xor / ~ for bool logic, or convert with .astype('int64')", kind="dtype")
    return result_dtype(*dtypes)


def floating(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of float-only math (sin, log, ...): the inputs' promoted dtype, which must be floating.

    The functional API (``gd.ops.sin``) converts integer and bool inputs to the graph's float dtype
    first, as PyTorch does.
    """
    out = result_dtype(*dtypes)
    if not is_float(out):
        raise RuleError(f"inputs have dtypes {', '.join(dtypes)}, but this op needs floating values",
                        "convert them with .astype('float32') (gd.ops functions do this for you)", kind="dtype")
    return out


def boolean(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of comparisons and predicates: any inputs, bool output."""
    return "bool"


def logical(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> str:
    """Dtype rule of ``&``, ``|``, ``^`` and ``~``: bool (or integer, bitwise) inputs of one category."""
    out = result_dtype(*dtypes)
    if is_float(out):
        raise RuleError(f"logical/bitwise ops need bool or integer values, got {', '.join(dtypes)}",
                        "build the operands with comparisons (x > 0) or convert with .astype('bool')",
                        kind="dtype")
    return out
