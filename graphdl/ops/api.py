"""The functional API of the math ops (NumPy/PyTorch names): arithmetic, logical functions, reductions and
scans, and the argument helpers the other functional modules share. The elementwise math functions (``exp``,
``sin``, ``round``, ``isnan`` ...) are in ``graphdl.ops.math_functions``.

Float-only functions (``div``, ``mean``, ``var`` ...) convert integer and bool inputs to the graph's
float dtype first, as PyTorch does. Reductions take ``axis`` or ``dim`` and ``keepdims`` or ``keepdim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphdl.dtypes import is_float
from graphdl.errors import GraphError
from graphdl.errors import flag as _as_flag
from graphdl.tensor import Tensor

Axis = int | Sequence[int] | None


def _tensor(*inputs: object) -> Tensor:
    for i in inputs:
        if isinstance(i, Tensor):
            return i
    raise GraphError("at least one argument must be a graph node (a Tensor); wrap arrays with gd.constant()")


def _apply(op: str, *inputs: Tensor | float, **attrs: object) -> Tensor:
    return _tensor(*inputs).graph.apply(op, inputs, attrs)


def _node(value: object, what: str) -> Tensor:
    """``value`` if it is a graph node, else GraphError naming the argument (for functions that read its
    shape before building their node)."""
    if not isinstance(value, Tensor):
        raise GraphError(f"{what} must be a graph node (a Tensor), got {type(value).__name__} {value!r:.40}; "
                         "wrap arrays with gd.constant()")
    return value


def _seq(value: object) -> object:
    """A list or tuple as a tuple, anything else as it is: the op's attribute schema then checks it."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _int(value: object, what: str) -> int:
    """A whole number (NumPy's too), else GraphError naming the argument (for arithmetic before the node)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise GraphError(f"{what} must be an int, got {type(value).__name__} {value!r:.40}")
    return int(value)


def to_float(x: Tensor | float) -> Tensor | float:
    """x itself when floating (or a Python number), else x converted to the graph's float dtype."""
    if isinstance(x, Tensor) and not is_float(x.dtype):
        return x.graph.apply("astype", [x], {"dtype": x.graph.dtype})
    return x


def _float_apply(op: str, *inputs: Tensor | float, **attrs: object) -> Tensor:
    return _apply(op, *(to_float(i) for i in inputs), **attrs)


def _axis(axis: Axis, dim: Axis) -> Axis:
    """The axes given as ``axis`` (NumPy's name) or ``dim`` (PyTorch's); the op's attribute schema checks them."""
    if dim is not None:
        if axis is not None:
            raise GraphError(f"give the reduction axes once, as axis or as dim (got axis={axis}, dim={dim})")
        return dim
    return axis


def _flag(name: str, value: object) -> bool:
    """A True/False argument (NumPy's bools too), else GraphError naming it."""
    return _as_flag(value, name, GraphError)


def _reduce(op: str, a: Tensor, axis: Axis, dim: Axis, keepdims: bool, keepdim: bool, **attrs: object) -> Tensor:
    keep = _flag("keepdims", keepdims) or _flag("keepdim", keepdim)
    return _apply(op, a, axis=_axis(axis, dim), keepdims=keep, **attrs)


# -- binary arithmetic ---------------------------------------------------------------------------------
def div(a: Tensor | float, b: Tensor | float, rounding_mode: str | None = None) -> Tensor:
    """a / b as torch.div: true division (integers give floats), or rounded "floor" / "trunc" division."""
    if rounding_mode is None:
        return _float_apply("div", a, b)
    if not isinstance(rounding_mode, str) or rounding_mode not in ("floor", "trunc"):
        raise GraphError(f"rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    return _apply("floor_divide" if rounding_mode == "floor" else "trunc_divide", a, b)


def true_divide(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a / b, always floating."""
    return div(a, b)


def floor_divide(a: Tensor | float, b: Tensor | float) -> Tensor:
    """floor(a / b), the // operator (Python and PyTorch semantics)."""
    return _apply("floor_divide", a, b)


def remainder(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a - b * floor(a / b), the % operator: the result has the sign of b."""
    return _apply("remainder", a, b)


def fmod(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a - b * trunc(a / b) (C fmod): the result has the sign of a."""
    return _apply("fmod", a, b)


def not_equal(a: Tensor | float, b: Tensor | float) -> Tensor:
    """Boolean a != b (``!=`` on Tensors is identity, as in TF1; use this for elementwise)."""
    return _apply("not_equal", a, b)


def logical_and(a: Tensor, b: Tensor) -> Tensor:
    """Boolean and of the truth values (nonzero) of a and b."""
    return _apply("logical_and", a, b)


def logical_or(a: Tensor, b: Tensor) -> Tensor:
    """Boolean or of the truth values of a and b."""
    return _apply("logical_or", a, b)


def logical_xor(a: Tensor, b: Tensor) -> Tensor:
    """Boolean xor of the truth values of a and b."""
    return _apply("logical_xor", a, b)


def logical_not(a: Tensor) -> Tensor:
    """Boolean not of the truth value of a."""
    return _apply("logical_not", a)


def astype(a: Tensor, dtype: str) -> Tensor:
    """a converted to dtype ('float32', 'int64', 'bool', ...)."""
    return _apply("astype", a, dtype=str(dtype))


# -- reductions and scans ---------------------------------------------------------------------------
def sum(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Sum over axis (all when None); bool and integers sum to int64."""
    return _reduce("sum", a, axis, dim, keepdims, keepdim)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Mean over axis (all when None)."""
    return _reduce("mean", to_float(a), axis, dim, keepdims, keepdim)


def max(a: Tensor, axis: Axis | Tensor = None, keepdims: bool = False, *, dim: Axis = None,
        keepdim: bool = False) -> Tensor:
    """Largest entry over axis (torch.amax; ties share the gradient); max(a, b) of two Tensors is maximum."""
    if isinstance(axis, Tensor):
        return maximum(a, axis)
    return _reduce("max", a, axis, dim, keepdims, keepdim)


def min(a: Tensor, axis: Axis | Tensor = None, keepdims: bool = False, *, dim: Axis = None,
        keepdim: bool = False) -> Tensor:
    """Smallest entry over axis (torch.amin; ties share the gradient); min(a, b) of two Tensors is minimum."""
    if isinstance(axis, Tensor):
        return minimum(a, axis)
    return _reduce("min", a, axis, dim, keepdims, keepdim)


def amax(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Same as max over axes."""
    return _reduce("max", a, axis, dim, keepdims, keepdim)


def amin(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Same as min over axes."""
    return _reduce("min", a, axis, dim, keepdims, keepdim)


def maximum(a: Tensor | float, b: Tensor | float) -> Tensor:
    """Elementwise larger of a and b (ties share the gradient)."""
    return _apply("maximum", a, b)


def minimum(a: Tensor | float, b: Tensor | float) -> Tensor:
    """Elementwise smaller of a and b (ties share the gradient)."""
    return _apply("minimum", a, b)


def prod(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Product over axis (all when None)."""
    return _reduce("prod", a, axis, dim, keepdims, keepdim)


def _correction(correction: float | None, unbiased: bool | None, ddof: float | None) -> float:
    given = [v for v in (correction, unbiased, ddof) if v is not None]
    if len(given) > 1:
        raise GraphError("give one of correction, unbiased and ddof")
    if unbiased is not None:
        return 1.0 if _flag("unbiased", unbiased) else 0.0
    if given and (isinstance(given[0], bool | np.bool_) or not isinstance(given[0], int | float | np.number)):
        raise GraphError(f"correction/ddof must be a number, got {given[0]!r:.40}")
    return float(given[0]) if given else 1.0


def var(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False,
        correction: float | None = None, unbiased: bool | None = None, ddof: float | None = None) -> Tensor:
    """Variance over axis, dividing by N - correction (default 1 as in PyTorch; NumPy's ddof=0 is correction=0)."""
    return _reduce("var", to_float(a), axis, dim, keepdims, keepdim, correction=_correction(correction, unbiased, ddof))


def std(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False,
        correction: float | None = None, unbiased: bool | None = None, ddof: float | None = None) -> Tensor:
    """Standard deviation over axis: sqrt(var) with the same correction."""
    return _reduce("std", to_float(a), axis, dim, keepdims, keepdim, correction=_correction(correction, unbiased, ddof))


def logsumexp(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None,
              keepdim: bool = False) -> Tensor:
    """log(sum(exp(a))) over axis, without overflow."""
    return _reduce("logsumexp", to_float(a), axis, dim, keepdims, keepdim)


def any(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Boolean: some entry over axis is nonzero."""
    return _reduce("any", a, axis, dim, keepdims, keepdim)


def all(a: Tensor, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Boolean: every entry over axis is nonzero."""
    return _reduce("all", a, axis, dim, keepdims, keepdim)


def _single_axis(axis: int | None, dim: int | None) -> int | None:
    out = _axis(axis, dim)
    if out is not None and not isinstance(out, int):
        raise GraphError(f"argmax/argmin take a single axis, got {out}")
    return out


def argmax(a: Tensor, axis: int | None = None, keepdims: bool = False, *, dim: int | None = None,
           keepdim: bool = False) -> Tensor:
    """int64 index of the largest entry along axis (of the flattened input when None); the first of ties."""
    return _apply("argmax", a, axis=_single_axis(axis, dim), keepdims=_flag("keepdims", keepdims) or _flag(
        "keepdim", keepdim))


def argmin(a: Tensor, axis: int | None = None, keepdims: bool = False, *, dim: int | None = None,
           keepdim: bool = False) -> Tensor:
    """int64 index of the smallest entry along axis (of the flattened input when None); the first of ties."""
    return _apply("argmin", a, axis=_single_axis(axis, dim), keepdims=_flag("keepdims", keepdims) or _flag(
        "keepdim", keepdim))


def cumsum(a: Tensor, axis: int | None = None, *, dim: int | None = None, reverse: bool = False) -> Tensor:
    """Running sum along axis (from the end when reverse=True); bool and integers give int64."""
    return _apply("cumsum", a, axis=_single_axis(axis, dim), reverse=reverse)


def cumprod(a: Tensor, axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """Running product along axis."""
    return _apply("cumprod", a, axis=_single_axis(axis, dim))


__all__ = [n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "Sequence", "GraphError", "Tensor", "is_float", "Axis")]
