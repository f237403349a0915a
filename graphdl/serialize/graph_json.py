"""graph.json: the IR as plain JSON data and back, every attribute explicit.

``graph_to_json`` writes it; ``graph_from_json`` checks file data against the schema in docs/FORMAT.md
(every key and type, node kinds and ops, attributes per op, unique names, inputs that exist) and
``reinfer`` re-derives every computed shape from the op rules, so a file cannot claim shapes its ops
do not give.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graphdl.attrs import DTYPES
from graphdl.errors import GraphDLError, ModelFileError
from graphdl.ir import IR, STORED_KINDS, Node, NodeKind, make_attrs, name_problem, parse_ref, value_info
from graphdl.registry import OpDef, attr_problems, get_op, infer, with_defaults
from graphdl.serialize.format import DEFAULT_LIMITS, FORMAT_VERSION, Limits

_LEAF_OPS = {NodeKind.PLACEHOLDER: ("placeholder",), NodeKind.PARAM: ("param",), NodeKind.STATE: ("state",),
             NodeKind.CONSTANT: ("constant", "scalar")}
_NODE_KEYS = {"name", "kind", "op", "inputs", "attrs", "shape", "dtype", "origin", "extra_outputs"}
_OPTIONAL_NODE_KEYS = {"origin", "extra_outputs"}
_GRAPH_KEYS = {"name", "outputs", "nodes", "objective"}


# -- IR -> JSON -------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, IR):  # a sub-graph (a scan's body): an object like graph.json's top level
        return graph_to_json(v)
    return v


def _complete_attrs(n: Node) -> dict[str, Any]:
    """Every attribute of ``n``, defaults filled in (format v2 stores them all)."""
    attrs = dict(n.attrs)
    if (n.kind in STORED_KINDS and n.op != "scalar") or n.kind is NodeKind.PLACEHOLDER:
        return attrs
    return with_defaults(get_op(n.op), attrs)


def _node_to_json(n: Node) -> dict[str, Any]:
    d = {"name": n.name, "kind": n.kind.value, "op": n.op, "inputs": list(n.inputs),
         "attrs": {k: _jsonable(v) for k, v in sorted(_complete_attrs(n).items())}, "shape": list(n.shape),
         "dtype": n.dtype, "origin": n.origin}
    if n.extra:  # outputs 1..k of a multi-output node (absent for single-output nodes, as in older files)
        d["extra_outputs"] = [{"shape": list(s), "dtype": t} for s, t in n.extra]
    return d


def graph_to_json(ir: IR) -> dict[str, Any]:
    """The IR as plain JSON data, every attribute explicit. Inputs and outputs are value references
    (``node`` or ``node:k``, output k of a multi-output node)."""
    return {"name": ir.name, "outputs": list(ir.outputs), "nodes": [_node_to_json(n) for n in ir.nodes]}


# -- JSON -> IR, checked against the schema -----------------------------------------------------
def _check_shape(where: str, shape: Any, limits: Limits, known: bool) -> tuple[int | None, ...]:
    if not isinstance(shape, list) or len(shape) > limits.rank:
        raise ValueError(f"{where}: shape must be a list of at most {limits.rank} dimensions, got {str(shape)[:60]}")
    for d in shape:
        if d is None and not known:
            continue
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= limits.dim:
            what = "a non-negative int" + ("" if known else " or null")
            raise ValueError(f"{where}: every dimension must be {what} (at most {limits.dim}), got "
                             f"{str(d)[:30]} in {str(shape)[:60]}")
    return tuple(shape)


#: How deeply sub-graphs (a scan inside a scan's body) may nest in a file.
MAX_NESTING = 8


def _body_from_json(where: str, key: str, value: Any, version: int, limits: Limits, depth: int) -> IR:
    """A sub-graph attribute, checked like the top-level graph (same schema, shapes re-derived)."""
    if depth >= MAX_NESTING:
        raise ValueError(f"{where}: sub-graphs nest more than {MAX_NESTING} deep")
    if not isinstance(value, dict) or "objective" in value:
        raise ValueError(f"{where}: attribute '{key}' must be a sub-graph object with name, nodes and outputs")
    try:
        return reinfer(graph_from_json(value, version, limits, depth=depth + 1))
    except ModelFileError as e:
        raise ValueError(f"{where}: in its sub-graph '{key}': {e}") from None


def _check_node(d: Any, index: int, version: int, limits: Limits, depth: int = 0) -> Node:
    if not isinstance(d, dict):
        raise ValueError(f"node #{index} must be an object, got {type(d).__name__}")
    problem = name_problem(d.get("name"))
    if problem is not None:
        raise ValueError(f"node #{index}: {problem}")
    name = d["name"]
    where = f"node '{name}'"
    missing = (_NODE_KEYS - _OPTIONAL_NODE_KEYS) - set(d)
    unknown = set(d) - _NODE_KEYS
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing keys {sorted(missing)}"] if missing else []) + ([f"unknown keys {sorted(unknown)}"]
                                                                        if unknown else [])))
    try:
        kind = NodeKind(d["kind"]) if isinstance(d["kind"], str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise ValueError(f"{where}: kind must be one of {[k.value for k in NodeKind]}, got {str(d['kind'])[:40]!r}")
    op_name, inputs, attrs, dtype = d["op"], d["inputs"], d["attrs"], d["dtype"]
    if not isinstance(op_name, str):
        raise ValueError(f"{where}: op must be a string")
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ValueError(f"{where}: inputs must be a list of node names")
    if not isinstance(attrs, dict):
        raise ValueError(f"{where}: attrs must be an object")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"{where}: dtype must be one of {list(DTYPES)}, got {str(dtype)[:30]!r}")
    origin = d.get("origin", "<file>")
    if not isinstance(origin, str) or len(origin) > limits.text:
        raise ValueError(f"{where}: origin must be a string of at most {limits.text} characters")
    leaf = kind in _LEAF_OPS
    op: OpDef | None = None
    if leaf:
        if op_name not in _LEAF_OPS[kind]:
            raise ValueError(f"{where}: a {kind.value} node has op {' or '.join(_LEAF_OPS[kind])}, got "
                             f"{op_name[:40]!r}")
        if op_name == "scalar":
            op = get_op("scalar")
        elif inputs:
            raise ValueError(f"{where}: a {kind.value} node has no inputs")
        elif attrs and not (kind is NodeKind.STATE and attrs == {"init": "zeros"}):
            raise ValueError(f"{where}: a {kind.value} node has no attributes"
                             + (" other than init: 'zeros'" if kind is NodeKind.STATE else ""))
    else:
        if any(op_name in ops for ops in _LEAF_OPS.values()):
            raise ValueError(f"{where}: op {op_name!r} belongs to a leaf node, not a {kind.value} node")
        try:
            op = get_op(op_name)
        except GraphDLError as e:
            raise ValueError(f"{where}: {e}") from None
    if op is not None:
        if op.arity is not None and len(inputs) != op.arity:
            raise ValueError(f"{where}: {op.name} takes {op.arity} inputs, got {len(inputs)}")
        if op.writes and kind is not NodeKind.UPDATE:
            raise ValueError(f"{where}: {op.name} writes into its inputs, so its kind must be 'update'")
        attrs = {k: _body_from_json(where, k, v, version, limits, depth) if k in op.bodies else v
                 for k, v in attrs.items()}
        problems = attr_problems(op, attrs, complete=version >= 2)
        if problems:
            raise ValueError(f"{where} ({op.name}): {'; '.join(problems)}")
        attrs = with_defaults(op, attrs)
    if op is None and "extra_outputs" in d:
        raise ValueError(f"{where}: a {kind.value} node has one output")
    if op is not None and op.attr_schema is None:
        raise ValueError(f"{where}: op '{op.name}' declares no attribute schema, so it cannot be loaded")
    shape = _check_shape(where, d["shape"], limits, known=kind in STORED_KINDS)
    extra = []
    raw_extra = d.get("extra_outputs", [])
    if not isinstance(raw_extra, list) or (not raw_extra and "extra_outputs" in d) or len(raw_extra) > 64:
        raise ValueError(f"{where}: extra_outputs must be a non-empty list of at most 64 outputs")
    for k, e in enumerate(raw_extra, start=1):
        if not isinstance(e, dict) or set(e) != {"shape", "dtype"} or e["dtype"] not in DTYPES:
            raise ValueError(f"{where}: output {k} must be an object with a shape and a dtype in {list(DTYPES)}")
        extra.append((_check_shape(f"{where} output {k}", e["shape"], limits, known=False), e["dtype"]))
    return Node(name=name, kind=kind, op=op_name, inputs=tuple(inputs), attrs=make_attrs(attrs), shape=shape,
                dtype=dtype, origin=origin, extra=tuple(extra))


def graph_from_json(data: Any, version: int = FORMAT_VERSION, limits: Limits = DEFAULT_LIMITS, *,
                    depth: int = 0) -> IR:
    """Rebuild the IR from ``graph_to_json`` data, checking it against the schema in docs/FORMAT.md:
    every key and type, node kinds and ops, attributes per op, unique names, inputs that exist.
    Anything else raises ModelFileError (without a path; ``read`` adds it)."""
    try:
        if not isinstance(data, dict):
            raise ValueError("the top level must be an object")
        missing, unknown = {"name", "outputs", "nodes"} - set(data), set(data) - _GRAPH_KEYS
        if missing or unknown:
            raise ValueError(f"top-level keys: missing {sorted(missing)}, unknown {sorted(unknown)[:5]}")
        if not isinstance(data["name"], str) or len(data["name"]) > limits.text:
            raise ValueError(f"the graph's name must be a string of at most {limits.text} characters")
        raw = data["nodes"]
        if not isinstance(raw, list) or not 0 < len(raw) <= limits.nodes:
            raise ValueError(f"nodes must be a non-empty list of at most {limits.nodes:,} nodes")
        nodes = tuple(_check_node(d, i, version, limits, depth) for i, d in enumerate(raw))
        names = {n.name: 1 + len(n.extra) for n in nodes}  # name -> number of outputs
        if len(names) != len(nodes):
            seen: set[str] = set()
            dup = next(n.name for n in nodes if n.name in seen or seen.add(n.name))  # type: ignore[func-returns-value]
            raise ValueError(f"node name '{dup}' appears twice")

        def exists(value: Any) -> bool:
            node, k = parse_ref(value) if isinstance(value, str) else ("", -1)
            return 0 <= k < names.get(node, 0)

        for n in nodes:
            absent = [i for i in n.inputs if not exists(i)]
            if absent:
                raise ValueError(f"node {n.describe()} reads '{absent[0][:60]}', which is not a value of the graph")
        outputs = data["outputs"]
        if depth:  # a sub-graph's outputs (a scan body's new carries and ys) may repeat a value or be none
            if not isinstance(outputs, list) or not all(exists(o) for o in outputs):
                raise ValueError("outputs must be a list of values of the sub-graph (node or node:k)")
        elif (not isinstance(outputs, list) or not outputs or not all(exists(o) for o in outputs)
                or len(set(outputs)) != len(outputs)):
            raise ValueError("outputs must be a non-empty list of distinct values of the graph (node or node:k)")
        objective = data.get("objective")
        if objective is not None and (not isinstance(objective, str) or objective not in outputs):
            raise ValueError(f"objective {str(objective)[:60]!r} is not one of the outputs")
        return IR(data["name"], nodes, tuple(outputs))
    except ValueError as e:
        raise ModelFileError(f"graph.json is malformed: {e}") from None


def reinfer(ir: IR) -> IR:
    """Sort the graph (a file may list nodes in any order) and re-derive every computed shape and dtype
    from the op rules; a rule that fails in any way, or disagrees with the file, names the node."""
    from graphdl.ir import format_shape
    from passes.toposort import toposort

    try:
        ir = toposort(ir)
    except GraphDLError as e:
        raise ModelFileError(f"graph.json: {e}") from None
    by_name: dict[str, Node] = {}
    upgraded: dict[str, Node] = {}
    for n in ir.nodes:
        by_name[n.name] = n
        if (n.kind in STORED_KINDS and n.op != "scalar") or n.kind is NodeKind.PLACEHOLDER:
            continue
        op, ins = get_op(n.op), [value_info(by_name, i) for i in n.inputs]
        try:
            shapes, dtypes = infer(op, tuple(s for s, _ in ins), tuple(t for _, t in ins), dict(n.attrs))
        except Exception as e:  # any failure of a rule on file data is the file's fault
            message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            raise ModelFileError(f"graph.json: node {n.describe()} is inconsistent with its inputs "
                                 f"({', '.join(format_shape(s) for s, _ in ins)}): {str(message)[:300]}") from None
        if not n.extra and len(shapes) > 1 and (shapes[0], dtypes[0]) == (n.shape, n.dtype):
            # Written before the op gained outputs (batch_norm's batch statistics): the file reads output 0 only.
            n = dataclasses.replace(n, extra=tuple(zip(shapes[1:], dtypes[1:], strict=True)))
            by_name[n.name] = n
            upgraded[n.name] = n
        if shapes != n.shapes or dtypes != n.dtypes:
            stored = ", ".join(f"{format_shape(s)} {t}" for s, t in zip(n.shapes, n.dtypes, strict=True))
            given = ", ".join(f"{format_shape(s)} {t}" for s, t in zip(shapes, dtypes, strict=True))
            raise ModelFileError(f"graph.json: node {n.describe()} is stored as {stored}, but its op gives {given}")
    if upgraded:
        ir = ir.replace(nodes=tuple(upgraded.get(n.name, n) for n in ir.nodes))
    return ir
