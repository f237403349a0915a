"""Op tables of the ONNX importers and exporters: each family fills its own with a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def registrar(table: dict[str, F]) -> Callable[..., Callable[[F], F]]:
    """A decorator factory: ``@importer("Add", "Sub")`` or ``@exporter("add")`` puts the function in
    ``table`` under those op names."""

    def decorator(*ops: str) -> Callable[[F], F]:
        def register(fn: F) -> F:
            for op in ops:
                table[op] = fn
            return fn

        return register

    return decorator
