"""Guard steps a bound plan adds: a non-finite objective refuses the step before any update runs, and
``check_numerics`` names the first node whose output holds NaN or inf."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from graphdl.errors import NonFiniteError
from graphdl.ir import Node, format_shape


def finite_guard(node: Node, counter: np.ndarray | None) -> Callable[[np.ndarray], None]:
    """A step that refuses a non-finite objective before any update runs (one scalar test)."""
    isfinite = math.isfinite

    def check_finite(x: np.ndarray) -> None:
        if not isfinite(x):
            step = "" if counter is None else f" at training step {int(counter.reshape(-1)[0])}"
            raise NonFiniteError(
                f"the objective {node.describe()} is {float(x)}{step}; the step was refused and no parameter "
                "or state changed. Run with check_numerics=True to name the first node that produced a "
                "non-finite value; check the inputs for NaN/inf or lower the learning rate")

    return check_finite


def count_nonfinite(a: np.ndarray) -> str:
    nan = int(np.count_nonzero(np.isnan(a)))
    return f"{nan} NaN and {int(a.size - nan - np.count_nonzero(np.isfinite(a)))} inf"


def numerics_guard(node: Node, shape: tuple[int, ...]) -> Callable[[np.ndarray], None]:
    """A step that names the node if its output holds NaN or inf (check_numerics; allocates)."""

    def check_numerics(x: np.ndarray) -> None:
        if not np.isfinite(x).all():
            raise NonFiniteError(
                f"{node.describe()} produced non-finite values ({count_nonfinite(x)} of {x.size}) in its "
                f"{format_shape(shape)} {x.dtype} output; it is the first such node in plan order, and the "
                "step was refused before any parameter or state changed. Check this op's inputs (e.g. log or "
                "division of zero, overflow of exp) or lower the learning rate")

    return check_numerics


def floating(dtype: str | np.dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)
