"""The scan op: a loop over the leading (time) axis whose body is a sub-graph stored in the node.

One ``scan`` node stands for the whole loop (JAX's ``lax.scan``; users call ``gd.ops.scan``, which traces
the body in graphdl/subgraph.py). Its attributes hold the body as data, an ``IR``:

- ``body``: the sub-graph. Its first placeholders, in node order, receive the node's inputs; its
  outputs are the new carries, then the per-step outputs ``y``.
- ``carries`` (how many inputs are initial carries), ``xs`` (how many are scanned sequences); the
  remaining inputs are captures: outer values the body reads, the same at every step.
- ``reverse``: scan from the last time step; ``length``: the number of steps when there are no ``xs``.
- ``remat``: the gradient recomputes each step from its carry instead of storing the step's residuals.

Outputs: the final carries, then the stacked ``y`` (a new leading axis aligned with ``xs``). The kernel
binds the body once for its concrete shapes (its own plan and arena, through the ``binder`` the executor
passes in) and runs that bound plan once per step.
The gradient is another scan, running the other way, whose body is the body's vector-Jacobian product.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphdl.attrs import AttrSpec, Bool, Int
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, Shape, format_shape, make_attrs, node_of, parse_ref, value_info
from graphdl.ops.scan_loop import scan_loop
from graphdl.registry import GradContext, OpDef, RuleError, fail, get_op, infer, register


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
            op = get_op(n.op)
            if not op.effects.pure or op.modal:
                fail(f"body node '{n.name}' ({n.op}) has effects or depends on the training mode; a body must be "
                     "pure (apply dropout and updates outside the scan)")
            ins = [info[i] if i in info else value_info(by_name, i) for i in n.inputs]
            try:
                shapes, dtypes = infer(op, tuple(s for s, _ in ins), tuple(d for _, d in ins), n.attr)
            except RuleError as e:  # name the body's node and the user's line, not only the scan
                seen = ", ".join(format_shape(s) for s, _ in ins)
                raise RuleError(f"in its body, {n.op} at node '{n.name}' (defined at {n.origin}) with inputs "
                                f"{seen}: {e.message}", e.hint, e.kind) from None
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
    return out_shapes, [d for _, d in outs]


def _shape(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    return tuple(_scan_info(shapes, None, attrs)[0])


def _dtype(dtypes: tuple[str, ...], attrs: dict[str, Any]) -> tuple[str, ...]:
    inputs = body_inputs(attrs["body"], len(dtypes))
    nc, nx = attrs["carries"], attrs["xs"]
    shapes = [n.shape if k < nc or k >= nc + nx else (None, *n.shape) for k, n in enumerate(inputs)]
    return tuple(_scan_info(shapes, dtypes, attrs)[1])


Binder = Callable[[IR, dict[str, tuple[int, ...]]], Any]


def _body_feeds(attrs: dict[str, Any], in_shapes: tuple[tuple[int, ...], ...]
                ) -> list[tuple[IR, dict[str, tuple[int, ...]]]]:
    """The body and the concrete shapes of its inputs: one time slice of each of xs."""
    body: IR = attrs["body"]
    nc, nx = attrs["carries"], attrs["xs"]
    inputs = body_inputs(body, len(in_shapes))
    return [(body, {n.name: (in_shapes[k][1:] if nc <= k < nc + nx else in_shapes[k]) for k, n in enumerate(inputs)})]


def _kernel(attrs: dict[str, Any], in_shapes: tuple[tuple[int, ...], ...], out_shapes: tuple[tuple[int, ...], ...],
            dtypes: tuple[np.dtype, ...], binder: Binder | None = None) -> Callable[..., None]:
    """Bind the body once for these shapes and loop it over the steps, pointed at each step's slices and
    carry buffers (graphdl/ops/scan_loop.py)."""
    if binder is None:
        raise RuleError("the scan kernel needs the executor's binder to compile its body")
    body: IR = attrs["body"]
    nc, nx, reverse = attrs["carries"], attrs["xs"], attrs["reverse"]
    n_in, ny = len(in_shapes), len(body.outputs) - nc
    steps = out_shapes[nc][0] if ny else (in_shapes[nc][0] if nx else attrs["length"])
    inputs = body_inputs(body, n_in)
    [(_, feed)] = _body_feeds(attrs, in_shapes)
    bound = binder(body, feed)
    return scan_loop(bound, body, [n.name for n in inputs], nc, nx, steps, reverse)


def _floating(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


class _Nodes:
    """A sub-graph under construction from plain nodes (the reverse body): fresh names, and each new node's
    shape and dtype from its op's rules."""

    def __init__(self, nodes: Sequence[Node] = (), reserved: Sequence[str] = ()) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.reserved = set(reserved)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.nodes or name in self.reserved:
            k += 1
            name = f"{base}_{k}"
        return name

    def placeholder(self, base: str, shape: Shape, dtype: str, origin: str) -> str:
        name = self.fresh(base)
        self.nodes[name] = Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=shape, dtype=dtype, origin=origin)
        return name

    def apply(self, op: str, inputs: Sequence[str | float], origin: str) -> str:
        dtype = next(value_info(self.nodes, i)[1] for i in inputs if isinstance(i, str))
        refs = [i if isinstance(i, str) else self.scalar(i, dtype) for i in inputs]
        infos = [value_info(self.nodes, i) for i in refs]
        shapes, dtypes = infer(get_op(op), tuple(s for s, _ in infos), tuple(d for _, d in infos), {})
        name = self.fresh(f"acc/{op}")
        self.nodes[name] = Node(name, NodeKind.GRADIENT, op, tuple(refs), (), shapes[0], dtypes[0], origin)
        return name

    def scalar(self, value: float, dtype: str) -> str:
        name = self.fresh("acc/scalar")
        self.nodes[name] = Node(name, NodeKind.CONSTANT, "scalar", (), make_attrs({"value": value, "dtype": dtype}),
                                (), dtype)
        return name


def _grad(c: GradContext) -> list[Any]:
    """The reverse scan. Its body is the forward body's VJP with the forward values it reads (the
    residuals, as in JAX's partial evaluation) fed in per step instead of recomputed: the forward scan is
    repeated with the residuals as extra stacked ys (passes/scan_history.py then runs that copy in the
    original's place, so a training plan loops forward once). Its carries are the carries' cotangents
    and the captures' gradients summed over time; its xs the stacked residuals, the xs it reads and the
    ys' cotangents."""
    if c.vjp is None:
        raise RuleError("the scan gradient needs the autodiff pass's vjp")
    a = c.attrs
    body: IR = a["body"]
    nc, nx = a["carries"], a["xs"]
    n_in, ny = len(c.inputs), len(body.outputs) - nc
    inputs = body_inputs(body, n_in)
    names = [n.name for n in inputs]
    fc = [k for k in range(nc) if _floating(inputs[k].dtype)]
    # The carries' cotangents always flow back through time; the xs' and captures' only where needed.
    needed = c.needed or (True,) * n_in
    fx = [k for k in range(nc, nc + nx) if _floating(inputs[k].dtype) and needed[k]]
    fp = [k for k in range(nc + nx, n_in) if _floating(inputs[k].dtype) and needed[k]]
    fy = [k for k in range(ny) if c.gouts[nc + k] is not None and _floating(c.outs[nc + k].dtype)]
    origin = c.node.origin

    # 1. The VJP of one step: new inputs (cotangents, running sums of the captures' gradients), then it.
    b = _Nodes(reserved=[n.name for n in body.nodes])
    info = body_values(body, [n.shape for n in inputs])
    g_carry = [b.placeholder("d_" + names[k], inputs[k].shape, inputs[k].dtype, origin) for k in fc]
    g_acc = [b.placeholder("sum_d_" + names[k], inputs[k].shape, inputs[k].dtype, origin) for k in fp]
    g_y = [b.placeholder(f"d_y{k}", *info[body.outputs[nc + k]], origin) for k in fy]
    news = list(b.nodes.values())
    pairs = [(body.outputs[k], g) for k, g in zip(fc, g_carry)] + [(body.outputs[nc + k], g) for k, g in zip(fy, g_y)]
    ir, grads = IR(body.name, (*news, *body.nodes)), {}
    if pairs:
        ir, grads = c.vjp(ir, pairs, [names[k] for k in (*fc, *fx, *fp)])  # zeros where nothing flows
    b = _Nodes(ir.nodes)

    def grad_of(k: int) -> str:
        return grads.get(names[k]) or b.apply("expand_like", [0.0, names[k]], origin)

    # A captured weight read as ``v @ W`` gets matmul(v, g, transpose_a=True) per step: rather than T small
    # GEMMs and T running sums inside the loop, the reverse scan stacks v and g, and one GEMM after it sums.
    deferred: dict[int, tuple[str, ...]] = {}
    for k in fp:
        n = b.nodes.get(grads.get(names[k], ""))
        if (n is not None and n.op == "matmul" and n.attr.get("transpose_a") and not n.attr.get("transpose_b")
                and len(inputs[k].shape) == 2 and None not in inputs[k].shape
                and all(len(value_info(b.nodes, i)[0]) == 2 for i in n.inputs)):
            deferred[k] = n.inputs
    acc = [k for k in fp if k not in deferred]
    outputs = [grad_of(k) for k in fc]
    outputs += [b.apply("add", [g_acc[fp.index(k)], grad_of(k)], origin) for k in acc]
    outputs += [grad_of(k) for k in fx]
    operands = list(dict.fromkeys(r for k in deferred for r in deferred[k]))

    # 2. Residuals: the forward values the VJP reads, other than the xs' slices and the captures.
    forward = body.node_map()
    # The nodes needed (a rule may build more); with ``remat`` the forward step is recomputed in the
    # reverse body from the carry entering it, so only the carries are stored (jax.checkpoint).
    remat = a.get("remat", False)
    live = set(map(node_of, [*outputs, *operands]))
    for n in reversed(list(b.nodes.values())):
        if n.name in live and (n.name not in forward or remat):
            live.update(map(node_of, n.inputs))
    added = [n for n in b.nodes.values() if n.name in live and (n.name not in forward or (
        remat and n.kind is not NodeKind.PLACEHOLDER and n.op != "scalar"))]
    in_body = {n.name for n in added}
    read = dict.fromkeys([*(i for n in added for i in n.inputs), *outputs, *operands])
    fixed = set(names[nc:])
    residuals = [r for r in read if parse_ref(r)[0] in forward and parse_ref(r)[0] not in fixed | in_body
                 and forward[parse_ref(r)[0]].op != "scalar"]
    used = {parse_ref(r)[0] for r in read}
    used_x = [k for k in range(nc, nc + nx) if names[k] in used]
    if not (residuals or used_x or fy):  # no sequence left to give the number of steps: keep the first xs
        used_x = list(range(nc, min(nc + 1, nc + nx)))
    used_p = [k for k in range(nc + nx, n_in) if names[k] in used]
    ys_now = list(body.outputs[nc:])
    extra = [r for r in residuals if r not in ys_now]
    stacked = list(c.outs[nc:])
    if extra:
        twin = IR(body.name, body.nodes, (*body.outputs, *extra))
        stacked = c.apply_multi("scan", *c.inputs, **{**a, "body": twin})[nc:]
        ys_now += extra

    # 3. The reverse body: residuals become placeholders (a carry entering the step already is one).
    rename: dict[str, str] = {}
    res_nodes = []
    for r in residuals:
        node, k = parse_ref(r)
        if forward[node].kind is NodeKind.PLACEHOLDER:
            res_nodes.append(forward[node])
            continue
        name = node if k == 0 else b.fresh(f"{node}.{k}")
        rename[r] = name
        res_nodes.append(Node(name, NodeKind.PLACEHOLDER, "placeholder", shape=info[r][0], dtype=info[r][1],
                              origin=forward[node].origin))
    scalars = [forward[n] for n in used if n in forward and forward[n].op == "scalar"]
    body_nodes = [
        *(b.nodes[n] for n in (*g_carry, *(g_acc[fp.index(k)] for k in acc))), *res_nodes,
        *(forward[names[k]] for k in used_x), *(b.nodes[n] for n in g_y), *(forward[names[k]] for k in used_p),
        *scalars, *(n if not rename else dataclasses.replace(n, inputs=tuple(rename.get(i, i) for i in n.inputs))
                    for n in added if n.kind is not NodeKind.PLACEHOLDER)]

    def zero_like(t: Any) -> Any:
        return c.apply("expand_like", 0.0, t)

    init = [c.gouts[k] if c.gouts[k] is not None else zero_like(c.outs[k]) for k in fc]
    init += [zero_like(c.inputs[k]) for k in acc]
    seq = [stacked[ys_now.index(r)] for r in residuals] + [c.inputs[k] for k in used_x]
    seq += [c.gouts[nc + k] for k in fy]
    # A deferred GEMM's operand is stacked already if it enters the reverse body as one of its xs.
    source = dict(zip([*(rename.get(r, r) for r in residuals), *(names[k] for k in used_x), *g_y], seq, strict=True))
    stack = [r for r in operands if rename.get(r, r) not in source]
    rev = IR(f"{body.name}/vjp", tuple(body_nodes), tuple(rename.get(o, o) for o in (*outputs, *stack)))
    res = c.apply_multi("scan", *init, *seq, *(c.inputs[k] for k in used_p), body=rev, carries=len(init),
                        xs=len(seq), reverse=not a["reverse"], length=a.get("length"), remat=remat)
    result: list[Any] = [None] * n_in
    for j, k in enumerate((*fc, *acc)):
        result[k] = res[j]
    for j, k in enumerate(fx):
        result[k] = res[len(init) + j]

    def stacked_(r: str) -> Any:
        name = rename.get(r, r)
        return source[name] if name in source else res[len(init) + len(fx) + stack.index(r)]

    for k, (v, g) in deferred.items():
        rows, cols = inputs[k].shape
        result[k] = c.apply("matmul", c.apply("reshape", stacked_(v), shape=(-1, rows)),
                            c.apply("reshape", stacked_(g), shape=(-1, cols)), transpose_a=True)
    return result


def scan(body: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False, name: str | None = None, remat: bool = False) -> tuple[Any, Any]:
    """Loop ``body(carry, x) -> (new_carry, y)`` over the leading axis of ``xs`` (JAX's ``lax.scan``) and
    return ``(final_carry, ys)``; the body is traced once into one ``scan`` node. See graphdl.subgraph.scan."""
    from graphdl.subgraph import scan as trace  # the tracing Builder sits a layer above the op table

    return trace(body, init, xs, length=length, reverse=reverse, name=name, remat=remat)


SCAN = register(OpDef(
    "scan", _shape, _kernel, grad=_grad, dtype=_dtype, multi_output=True, bodies=("body",),
    body_feeds=_body_feeds,
    attr_schema={"body": AttrSpec("graph"),
                 "carries": Int(low=0), "xs": Int(low=0), "reverse": Bool(False),
                 "length": Int(None, low=0, nullable=True), "remat": Bool(False)},
    doc="A loop over the leading axis of ``xs`` with a sub-graph body (see gd.ops.scan).",
))
