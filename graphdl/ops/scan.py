"""The scan op: a loop over the leading (time) axis whose body is a sub-graph stored in the node.

One ``scan`` node stands for the whole loop (JAX's ``lax.scan``; users call ``gd.ops.scan``, which traces
the body in graphdl/subgraph.py). Its attributes hold the body as data, an ``IR``:

- ``body``: the sub-graph. Its first placeholders, in node order, receive the node's inputs; its
  outputs are the new carries, then the per-step outputs ``y``.
- ``carries`` (how many inputs are initial carries), ``xs`` (how many are scanned sequences); the
  remaining inputs are captures: outer values the body reads, the same at every step.
- ``reverse``: scan from the last time step; ``length``: the number of steps when there are no ``xs``.
- ``history``: also output, per carry, the stacked carries entering each step (what the gradient needs).

Outputs: the final carries, the stacked ``y`` (a new leading axis aligned with ``xs``), then with
``history`` the stacked carries. The kernel binds the body once for its concrete shapes (its own plan
and arena, through the ``binder`` the executor passes in) and runs that bound plan once per step.
The gradient is another scan, running the other way, whose body is the body's vector-Jacobian product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, Shape, format_shape, value_info
from graphdl.registry import AttrSpec, Bool, GradContext, Int, OpDef, RuleError, fail, get_op, infer, register


def body_inputs(body: IR, count: int) -> list[Node]:
    """The body's first ``count`` placeholders, in node order: the ones receiving the node's inputs."""
    found = [n for n in body.nodes if n.kind is NodeKind.PLACEHOLDER][:count]
    if len(found) != count:
        fail(f"the body has {len(found)} placeholders but the node has {count} inputs")
    return found


def body_values(body: IR, in_shapes: Sequence[Shape], in_dtypes: Sequence[str] | None = None
                ) -> dict[str, tuple[Shape, str]]:
    """(shape, dtype) of every body value when its inputs have ``in_shapes`` (and ``in_dtypes``)."""
    info: dict[str, tuple[Shape, str]] = {}
    by_name: dict[str, Node] = {}
    inputs = {n.name: k for k, n in enumerate(body_inputs(body, len(in_shapes)))}
    for n in body.nodes:
        by_name[n.name] = n
        if n.name in inputs:
            k = inputs[n.name]
            shape, dtype = tuple(in_shapes[k]), n.dtype if in_dtypes is None else in_dtypes[k]
            if len(shape) != len(n.shape) or any(a is not None and b is not None and a != b
                                                 for a, b in zip(shape, n.shape, strict=True)):
                fail(f"body input '{n.name}' is {format_shape(n.shape)} but receives {format_shape(shape)}",
                     "give the scan inputs of the shapes the body was traced with")
            if dtype != n.dtype:
                raise RuleError(f"body input '{n.name}' is {n.dtype} but receives {dtype}", kind="dtype")
            info[n.name] = (shape, dtype)
        elif n.kind is NodeKind.PLACEHOLDER or (n.kind in STORED_KINDS and n.op != "scalar"):
            fail(f"body node '{n.name}' ({n.kind.value}) is not an input; a body reads outer values as inputs")
        else:
            ins = [info[i] if i in info else value_info(by_name, i) for i in n.inputs]
            shapes, dtypes = infer(get_op(n.op), tuple(s for s, _ in ins), tuple(d for _, d in ins), n.attr)
            info.update(zip(n.refs, zip(shapes, dtypes, strict=True), strict=True))
    return info


def _length(shapes: Sequence[Shape], attrs: dict[str, Any]) -> int | None:
    """The number of steps: the common leading dimension of the xs, else ``length``."""
    nc, nx, length = attrs["carries"], attrs["xs"], attrs.get("length")
    steps = length
    for k, s in enumerate(shapes[nc:nc + nx]):
        if not s:
            fail(f"scanned input {k} is a scalar; each of xs needs a leading (time) axis")
        if s[0] is not None:
            if steps is not None and s[0] != steps:
                fail(f"scanned input {k} has {s[0]} time steps, but "
                     f"{'length is' if length is not None else 'an earlier one has'} {steps}",
                     "give every xs the same leading dimension (and length=, if given, the same)")
            steps = s[0]
    if nx == 0 and length is None:
        fail("scan without xs needs length=")
    return steps if nx else length


def _scan_info(shapes: Sequence[Shape], dtypes: Sequence[str] | None, attrs: dict[str, Any]
               ) -> tuple[list[Shape], list[str]]:
    body: IR = attrs["body"]
    nc, nx = attrs["carries"], attrs["xs"]
    steps = _length(shapes, attrs)
    inner = [*shapes[:nc], *(s[1:] for s in shapes[nc:nc + nx]), *shapes[nc + nx:]]
    info = body_values(body, inner, dtypes)
    if len(body.outputs) < nc:
        fail(f"the body gives {len(body.outputs)} outputs but the scan has {nc} carries")
    outs = [info[o] for o in body.outputs]
    for k in range(nc):
        shape, want = outs[k][0], shapes[k]
        if len(shape) != len(want) or any(a is not None and b is not None and a != b for a, b in zip(shape, want)):
            fail(f"the body's carry {k} comes out {format_shape(shape)} but goes in {format_shape(want)}",
                 "return a new carry of the same shape as the old one")
    out_shapes = [shapes[k] for k in range(nc)] + [(steps, *s) for s, _ in outs[nc:]]
    out_dtypes = [d for _, d in outs]
    if attrs.get("history"):
        out_shapes += [(steps, *shapes[k]) for k in range(nc)]
        out_dtypes += out_dtypes[:nc]
    return out_shapes, out_dtypes


def _shape(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    return tuple(_scan_info(shapes, None, attrs)[0])


def _dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> tuple[str, ...]:
    inputs = body_inputs(attrs["body"], len(dtypes))
    nc, nx = attrs["carries"], attrs["xs"]
    shapes = [n.shape if k < nc or k >= nc + nx else (None, *n.shape) for k, n in enumerate(inputs)]
    return tuple(_scan_info(shapes, dtypes, attrs)[1])


Binder = Callable[[IR, dict[str, tuple[int, ...]]], Any]


def _kernel(attrs: dict[str, Any], in_shapes: tuple[tuple[int, ...], ...], out_shapes: tuple[tuple[int, ...], ...],
            dtypes: tuple[np.dtype, ...], binder: Binder | None = None) -> Callable[..., None]:
    if binder is None:
        raise RuleError("the scan kernel needs the executor's binder to compile its body")
    body: IR = attrs["body"]
    nc, nx, reverse = attrs["carries"], attrs["xs"], attrs["reverse"]
    n_in, ny = len(in_shapes), len(body.outputs) - nc
    steps = out_shapes[nc][0] if ny else (in_shapes[nc][0] if nx else attrs["length"])
    inputs = body_inputs(body, n_in)
    feed = {n.name: (in_shapes[k][1:] if nc <= k < nc + nx else in_shapes[k]) for k, n in enumerate(inputs)}
    bound = binder(body, feed)
    slots = [bound.arrays[n.name] for n in inputs]
    carry_in, x_in, cap_in = slots[:nc], slots[nc:nc + nx], slots[nc + nx:]
    body_out = bound.outputs
    new_carry, y_out = body_out[:nc], body_out[nc:]
    # A new carry that is another carry's input slot (a swap) must be staged before the copies.
    staged = any(o is c for o in new_carry for c in carry_in) and [np.empty_like(c) for c in carry_in]
    run_body = bound.compute
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    copyto = np.copyto

    def scan(*args: np.ndarray) -> None:
        init, xs, caps = args[:nc], args[nc:nc + nx], args[nc + nx:n_in]
        outs = args[n_in:]
        final, ys, hist = outs[:nc], outs[nc:nc + ny], outs[nc + ny:]
        for slot, value in zip(cap_in, caps):
            copyto(slot, value)
        for slot, value in zip(carry_in, init):
            copyto(slot, value)
        for t in order:
            for h, c in zip(hist, carry_in):
                h[t] = c
            for slot, x in zip(x_in, xs):
                slot[...] = x[t]
            run_body()
            for y, value in zip(ys, y_out):
                y[t] = value
            if staged:
                for s, value in zip(staged, new_carry):
                    copyto(s, value)
                for slot, s in zip(carry_in, staged):
                    copyto(slot, s)
            else:
                for slot, value in zip(carry_in, new_carry):
                    if slot is not value:
                        copyto(slot, value)
        for out, c in zip(final, carry_in):
            copyto(out, c)

    return scan


def _floating(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def _grad(c: GradContext) -> list[Any]:
    """The reverse scan: carries are the carries' cotangents and the captures' accumulated gradients;
    its xs are the forward's per-step carries (the history), the xs and the ys' cotangents."""
    from graphdl.builder import Builder  # the reverse body is built like any graph (tests/test_imports.py)

    if c.vjp is None:
        raise RuleError("the scan gradient needs the autodiff pass's vjp")
    a = c.attrs
    body: IR = a["body"]
    nc, nx = a["carries"], a["xs"]
    n_in, ny = len(c.inputs), len(body.outputs) - nc
    xs, caps = c.inputs[nc:nc + nx], c.inputs[nc + nx:]
    if a.get("history"):
        hist = list(c.outs[nc + ny:])
    else:  # the same loop again, keeping its carries; passes/scan_history.py merges the two forward nodes
        outs = c.apply_multi("scan", *c.inputs, **{**a, "history": True})
        hist = outs[nc + ny:]
    inputs = body_inputs(body, n_in)
    fc = [k for k in range(nc) if _floating(inputs[k].dtype)]
    fx = [k for k in range(nc, nc + nx) if _floating(inputs[k].dtype)]
    fp = [k for k in range(nc + nx, n_in) if _floating(inputs[k].dtype)]
    fy = [k for k in range(ny) if c.gouts[nc + k] is not None and _floating(c.outs[nc + k].dtype)]

    # The reverse body: cotangent placeholders first, then the forward body, then its VJP.
    b = Builder(f"{body.name}/vjp", body.nodes[0].dtype if body.nodes else "float32")
    b.default_kind = NodeKind.GRADIENT

    def slot(base: str, like: Node) -> str:
        name = b.fresh(base)
        b.add_node(Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=like.shape, dtype=like.dtype,
                        origin=like.origin))
        return name

    g_carry = [slot("d_" + inputs[k].name, inputs[k]) for k in fc]
    g_acc = [slot("sum_d_" + inputs[k].name, inputs[k]) for k in fp]
    info = body_values(body, [n.shape for n in inputs])
    g_y = []
    for k in fy:
        shape, dtype = info[body.outputs[nc + k]]
        g_y.append(slot(f"d_y{k}", Node("y", NodeKind.PLACEHOLDER, "placeholder", shape=shape, dtype=dtype)))
    for n in body.nodes:
        if n.name in b.nodes:
            raise RuleError(f"body node name '{n.name}' clashes with a gradient input")
        b.add_node(n)
    pairs = [(body.outputs[k], g) for k, g in zip(fc, g_carry)] + [(body.outputs[nc + k], g) for k, g in zip(fy, g_y)]
    wrt = [inputs[k].name for k in (*fc, *fx, *fp)]
    if pairs:
        ir, grads = c.vjp(b.freeze(), pairs, wrt)
    else:
        ir, grads = b.freeze(), {}
    b2 = Builder(ir.name, b.dtype, ir.nodes)
    b2.default_kind = NodeKind.GRADIENT
    b2.scope = "acc/"

    def grad_of(k: int) -> str:
        if inputs[k].name in grads:
            return grads[inputs[k].name]
        return b2.apply("expand_like", [0.0, b2.tensor(inputs[k].name)]).name

    outputs = [grad_of(k) for k in fc]
    outputs += [b2.apply("add", [b2.tensor(acc), b2.tensor(grad_of(k))]).name for acc, k in zip(g_acc, fp)]
    outputs += [grad_of(k) for k in fx]
    # Placeholders first, in the reverse scan's input order: carries, xs, captures.
    order = [*g_carry, *g_acc, *(inputs[k].name for k in fc), *(inputs[k].name for k in range(nc, nc + nx)),
             *g_y, *(inputs[k].name for k in range(nc + nx, n_in))]
    nodes = b2.nodes
    firsts = [nodes[name] for name in order]
    rest = [n for n in nodes.values() if n.name not in set(order)]
    rev = IR(f"{body.name}/vjp", tuple(firsts + rest), tuple(outputs))
    if any(n.kind is NodeKind.PLACEHOLDER for n in rest):  # a body input no step reads
        raise RuleError("the reverse scan body has an unexpected placeholder")

    def zero_like(t: Any) -> Any:
        return c.apply("expand_like", 0.0, t)

    init = [c.gouts[k] if c.gouts[k] is not None else zero_like(c.outs[k]) for k in fc]
    init += [zero_like(caps[k - nc - nx]) for k in fp]
    seq = [hist[k] for k in fc] + list(xs) + [c.gouts[nc + k] for k in fy]
    res = c.apply_multi("scan", *init, *seq, *caps, body=rev, carries=len(init), xs=len(seq), reverse=not a["reverse"],
                        length=a.get("length"), history=False)
    result: list[Any] = [None] * n_in
    for j, k in enumerate(fc):
        result[k] = res[j]
    for j, k in enumerate(fp):
        result[k] = res[len(fc) + j]
    for j, k in enumerate(fx):
        result[k] = res[len(init) + j]
    return result


SCAN = register(OpDef(
    "scan", _shape, _kernel, grad=_grad, dtype=_dtype, multi_output=True, bodies=("body",),
    attr_schema={"body": AttrSpec("graph"),
                 "carries": Int(low=0), "xs": Int(low=0), "reverse": Bool(False),
                 "length": Int(None, low=0, nullable=True), "history": Bool(False)},
    doc="A loop over the leading axis of ``xs`` with a sub-graph body (see gd.ops.scan).",
))
