"""Sub-graphs: tracing a Python function of Tensors once into an ``IR`` stored in a node (a scan's body).

While a body is traced, every builder around it redirects the nodes built on it into the body's
``BodyBuilder``; an outer value the body reads becomes one of the body's input placeholders (a capture),
and a pure node that reads only outer values is built outside the body instead (hoisted out of the loop).
Parameters made by layers created inside the body go to the outer graph as usual (``add_node`` is not
redirected) and are captured where the body reads them.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from graphdl.builder import Builder
from graphdl.errors import DTypeError, GraphError, ShapeError, whole_number
from graphdl.ir import IR, Node, NodeKind, format_shape, user_origin
from graphdl.registry import get_op
from graphdl.tensor import Tensor


class BodyBuilder(Builder):
    """The builder of a body: captures outer values as placeholders and hoists loop-invariant nodes."""

    def __init__(self, name: str, parent: Builder) -> None:
        super().__init__(name, parent.dtype)
        self.parent = parent
        self.captured: dict[tuple[int, str], Tensor] = {}  # (id of outer builder, ref) -> placeholder
        self.captures: list[Tensor] = []  # the outer values, in placeholder order

    def input(self, base: str, shape: tuple, dtype: str, origin: str) -> Tensor:
        """A placeholder of the body that varies per step (a carry or a time slice)."""
        return self.add_node(Node(self.fresh(base), NodeKind.PLACEHOLDER, "placeholder", shape=shape, dtype=dtype,
                                  origin=origin))

    def capture(self, t: Tensor) -> Tensor:
        key = (id(t.graph), t.name)
        found = self.captured.get(key)
        if found is None:
            name = self.fresh("in/" + t.name.replace(":", "_"))
            found = self.add_node(Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=t.shape, dtype=t.dtype,
                                       origin=t.node.origin))
            self.captured[key] = found
            self.captures.append(t)
        return found

    def _as_tensor(self, t: Tensor | float | int, like: Tensor | None) -> Tensor:
        if isinstance(t, Tensor) and t.graph is not self:
            return self.capture(t)
        return super()._as_tensor(t, like)

    def build(self, op: str, inputs: Sequence[Tensor | float | int], attrs: Mapping[str, Any] | None = None,
              *, name: str | None = None, kind: NodeKind | None = None) -> Tensor:
        opdef = get_op(op)
        if not opdef.effects.pure or opdef.modal:
            what = "draws random numbers" if opdef.effects.random else (
                "writes state" if opdef.effects.writes else "depends on the training mode" if opdef.modal
                else "communicates")
            raise GraphError(f"{op} at node '{name or op}' (defined at {user_origin()}) {what}, which a scan body "
                             "cannot do: the body runs the same way at every step. Apply it outside the scan "
                             "(e.g. dropout on xs or on the stacked ys)")
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        if tensors and all(t.graph is not self for t in tensors):  # reads only outer values: hoist it
            return self.parent.build(op, inputs, attrs, name=name, kind=kind)
        return super().build(op, inputs, attrs, name=name, kind=kind)


@contextlib.contextmanager
def tracing(body: BodyBuilder) -> Iterator[None]:
    """Redirect the nodes built on every enclosing builder into ``body`` while the block runs."""
    chain, b = [], body.parent
    while b is not None:
        chain.append((b, b.redirect))
        b.redirect = body
        b = b.parent if isinstance(b, BodyBuilder) else None
    try:
        yield
    finally:
        for b, previous in chain:
            b.redirect = previous


def _as_list(value: Any, what: str, where: str) -> tuple[list[Tensor], bool]:
    """A Tensor or a tuple/list of Tensors as a list, and whether it was a sequence."""
    seq = isinstance(value, tuple | list)
    items = list(value) if seq else [value]
    for k, t in enumerate(items):
        if not isinstance(t, Tensor):
            label = f"{what} {k}" if seq else what
            raise GraphError(f"scan{where}: {label} is a {type(t).__name__}, not a graph Tensor; {what} must be a "
                             "Tensor or a tuple of Tensors")
    return items, seq


def _source(fn: Callable[..., Any]) -> str:
    try:
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", "<body>")


def scan(body: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False, name: str | None = None, remat: bool = False) -> tuple[Any, Any]:
    """Loop ``body(carry, x) -> (new_carry, y)`` over the leading axis of ``xs`` (JAX's ``lax.scan``).

    ``init`` is a Tensor or a tuple/list of Tensors; each new carry must keep its shape and dtype. ``xs``
    is a Tensor, a tuple of Tensors (one time step each is ``x``) or None with ``length=``. ``y`` is a
    Tensor, a tuple of Tensors or None; ``ys`` stacks them on a new leading axis, aligned with ``xs``
    (also with ``reverse=True``, which scans from the last step). ``body`` is traced once into one
    ``scan`` node's sub-graph; outer Tensors it reads become inputs of that node. Returns
    ``(final_carry, ys)`` in the structure ``init`` and ``y`` had. For the gradient, a training plan stores
    per step the values the body's VJP reads; ``remat=True`` stores only the carries and recomputes each
    step in the backward loop (less memory, one more forward pass; ``jax.checkpoint``).
    """
    where = "" if name is None else f" '{name}'"
    if not callable(body):
        raise GraphError(f"scan{where}: body must be a function body(carry, x) -> (new_carry, y), got "
                         f"{type(body).__name__}")
    if name is not None and not isinstance(name, str):
        raise GraphError(f"scan: name must be a string, got {name!r:.40}")
    if length is not None:
        length = whole_number(length, f"scan{where}: length", 0, GraphError)
    for flag, value in (("reverse", reverse), ("remat", remat)):
        if not isinstance(value, bool):
            raise GraphError(f"scan{where}: {flag} must be True or False, got {value!r:.40}")
    carries, carry_seq = _as_list(init, "init", where)
    seqs, xs_seq = ([], False) if xs is None else _as_list(xs, "xs", where)
    if xs is None and length is None:
        raise GraphError(f"scan{where}: without xs, give the number of steps as length=")
    if not carries + seqs:
        raise GraphError(f"scan{where}: give at least one Tensor as init or xs")
    outer = (carries + seqs)[0].graph
    outer = outer.redirect or outer  # a scan inside a body being traced
    steps = length
    for k, s in enumerate(seqs):
        if not s.shape:
            raise ShapeError(f"scan{where}: xs {k} '{s.name}' is a scalar; every xs needs a leading time axis")
        if s.shape[0] is not None:
            if steps is not None and s.shape[0] != steps:
                raise ShapeError(f"scan{where}: xs {k} '{s.name}' {format_shape(s.shape)} has {s.shape[0]} steps but "
                                 f"{'length=' if length is not None else 'xs 0 has'} {steps}; give every xs the same "
                                 "leading (time) dimension")
            steps = s.shape[0]
    origin = user_origin()
    b = BodyBuilder(f"{name or 'scan'}/body", outer)
    c_in = [b.input(f"carry{k}" if carry_seq else "carry", c.shape, c.dtype, origin) for k, c in enumerate(carries)]
    x_in = [b.input(f"x{k}" if xs_seq else "x", s.shape[1:], s.dtype, origin) for k, s in enumerate(seqs)]
    with tracing(b):
        result = body(tuple(c_in) if carry_seq else (c_in[0] if c_in else None),
                      (tuple(x_in) if xs_seq else x_in[0]) if seqs else None)
    src = _source(body)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise GraphError(f"scan{where}: the body ({src}) must return (new_carry, y), got {type(result).__name__}")
    new, y = result
    new_c, new_seq = _as_list(new, "the body's new carry", where)
    if len(new_c) != len(carries) or new_seq != carry_seq:
        raise GraphError(f"scan{where}: the body ({src}) returns {len(new_c)} carr{'y' if len(new_c) == 1 else 'ies'} "
                         f"{'as a tuple' if new_seq else 'as one Tensor'}, but init has {len(carries)} "
                         f"{'as a tuple' if carry_seq else 'as one Tensor'}; return the same structure")
    ys, y_seq = ([], False) if y is None else _as_list(y, "the body's y", where)
    new_c = [b._as_tensor(t, None) for t in new_c]  # outer values returned as they are
    ys = [b._as_tensor(t, None) for t in ys]
    for k, (old, t) in enumerate(zip(carries, new_c, strict=True)):
        label = f"carry {k}" if carry_seq else "the carry"
        if t.dtype != old.dtype:
            raise DTypeError(f"scan{where}: {label} goes in as {old.dtype} but the body returns it as {t.dtype} "
                             f"(node {t.node.describe()}; body at {src}); return the new carry in the same dtype "
                             "(use .astype)")
        if t.shape != old.shape:
            raise ShapeError(f"scan{where}: {label} goes in as {format_shape(old.shape)} but the body returns it "
                             f"as {format_shape(t.shape)} (node {t.node.describe()}; body at {src}); return a "
                             "new carry of the same shape as the old one")
    captures = list(b.captures)
    placeholders = [n for n in b.nodes.values() if n.kind is NodeKind.PLACEHOLDER]
    others = [n for n in b.nodes.values() if n.kind is not NodeKind.PLACEHOLDER]
    ir = IR(b.name, tuple(placeholders + others), tuple(t.name for t in (*new_c, *ys)))
    attrs = {"body": ir, "carries": len(carries), "xs": len(seqs), "reverse": bool(reverse),
             "length": length, "remat": bool(remat)}
    outs = outer.apply_multi("scan", [*carries, *seqs, *captures], attrs, name=name)
    final = tuple(outs[:len(carries)])
    stacked = tuple(outs[len(carries):])
    final_out = final if carry_seq else (final[0] if final else None)
    ys_out = None if y is None else (stacked if y_seq else stacked[0])
    return final_out, ys_out
