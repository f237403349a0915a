"""einsum: sums of products over named axes, with NumPy's equation syntax.

The node keeps an explicit equation of letters ("ij,jk->ik"): ``gd.ops.einsum`` spells out implicit
outputs and ``...`` before adding it. The gradient for each operand is again an einsum, of the output
gradient with the other operands, broadcast over axes that only that operand had.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdl.attrs import Str
from graphdl.registry import GradContext, OpDef, fail, register


def parse(equation: str) -> tuple[list[str], str]:
    """Operand subscripts and output subscripts of an explicit equation."""
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    return lhs.split(","), rhs


def normalize(equation: str, ndims: list[int]) -> str:
    """An explicit, letters-only equation: ``...`` becomes unused capital letters, and an implicit output
    becomes the letters used once, in alphabetical order (NumPy's rule), after the ``...`` axes."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"equation {equation!r} names {len(terms)} operands but {len(ndims)} were given")
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    ell = max((nd - len(t.replace("...", "")) for t, nd in zip(terms, ndims) if "..." in t), default=0)
    if ell < 0:
        raise ValueError(f"equation {equation!r}: an operand has fewer axes than letters")
    fill = "".join(free[:ell])
    out_terms = []
    for t, nd in zip(terms, ndims):
        if "..." in t:
            k = nd - len(t.replace("...", ""))
            t = t.replace("...", fill[ell - k:] if k else "")
        out_terms.append(t)
    if arrow:
        rhs = rhs.replace("...", fill)
    else:
        letters = "".join(out_terms)
        rhs = fill + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in fill))
    return ",".join(out_terms) + "->" + rhs


def _einsum_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    terms, out = parse(attrs["equation"])
    if len(terms) != len(shapes):
        fail(f"equation {attrs['equation']!r} names {len(terms)} operands, got {len(shapes)}")
    sizes: dict[str, int | None] = {}
    for t, s in zip(terms, shapes):
        if not t.isalpha() and t:
            fail(f"subscripts {t!r} must be letters", "use gd.ops.einsum, which expands '...'")
        if len(t) != len(s):
            fail(f"subscripts {t!r} name {len(t)} axes but the operand {s} has {len(s)}")
        if len(set(t)) != len(t):
            fail(f"subscripts {t!r} repeat a letter (a diagonal), which is not supported",
                 "take the diagonal with a mask and a sum instead")
        for c, d in zip(t, s):
            known = sizes.get(c)
            if known is not None and d is not None and known != d:
                fail(f"axis {c!r} has size {known} in one operand and {d} in another")
            if known is None:
                sizes[c] = d
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        fail(f"output subscripts {out!r} must be distinct letters that appear in the operands")
    return tuple(sizes[c] for c in out)


def _einsum_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype):
    eq = attrs["equation"]
    path = np.einsum_path(eq, *(np.empty(s, dtype=dtype) for s in in_shapes), optimize="greedy")[0]

    def einsum(*args: np.ndarray) -> None:
        np.einsum(eq, *args[:-1], out=args[-1], optimize=path)

    return einsum


def _einsum_grad(c: GradContext) -> list:
    terms, out = parse(c.attrs["equation"])
    grads = []
    for i, (x, t) in enumerate(zip(c.inputs, terms)):
        others = [(y, s) for j, (y, s) in enumerate(zip(c.inputs, terms)) if j != i]
        have = set(out).union(*(set(s) for _, s in others))
        target = "".join(ch for ch in t if ch in have)
        eq = ",".join([out, *(s for _, s in others)]) + "->" + target
        g = c.apply("einsum", c.gout, *(y for y, _ in others), equation=eq)
        if target != t:  # letters only this operand had: the output is constant along them
            missing = tuple(k for k, ch in enumerate(t) if ch not in have)
            g = c.apply("expand_like", c.apply("expand_dims", g, axis=missing), x)
        grads.append(g)
    return grads


register(OpDef("einsum", _einsum_shape, _einsum_kernel, grad=_einsum_grad, label_attrs=("equation",),
               doc="Sum of products over named axes (NumPy/torch einsum; the stored equation is explicit).",
               attr_schema={"equation": Str()}))
