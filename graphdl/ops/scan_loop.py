"""The scan kernel's loop: the bound body run once per time step, pointed at each step's arrays.

The body is bound once (its own plan and arena, graphdl/executor.py). Rather than copying values in and
out, the loop re-points the body's generated code (``BoundPlan.pointers``) before each step:

- a scanned input's placeholder at the step's time slice ``xs[t]`` (a view);
- a stacked output's value at ``ys[t]``, which the body's kernel then writes directly;
- a carry at two buffers in turn (ping-pong): the step reads the old carry from one while its kernel
  writes the new carry into the other. The two are the body's own placeholder buffer and the scan's
  final-carry output, the parity chosen so that the last step writes the final carry in place; the
  first step reads the initial carry where the caller keeps it. A carry the body also returns as a
  ``y`` is written into ``ys[t]`` and read there by the next step.
- captures at the caller's arrays, once per call.

What stays a copy, and why: a slice or carry under MIN_VIEW_BYTES (cheaper to copy than to make the
body's kernels re-derive their cached views); a body output that no body kernel writes (an input or capture passed
through, a constant, or a value returned twice: one kernel writes one array) is copied after the step,
and so is any slice that is not C-contiguous (kernels assume contiguous arrays; slices of the plan's
arena and feeds always are). A carry the body returns as a y costs one copy per call, into the final
carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphdl.ir import IR

Setter = tuple[dict[str, object], str, np.ndarray]

#: Smallest per-step slice or carry (bytes) worth re-pointing rather than copying. Kernels keep what they
#: derive from their arrays (a GEMM's data pointers, row views) for the arrays they were last called with;
#: an array that changes every step makes them derive it again, about 1 us per array, which is more than
#: copying a small slice costs (measured: a 4x16 tanh RNN's training step went from 12 to 23 us a step
#: when everything was re-pointed).
MIN_VIEW_BYTES = 16384


def scan_loop(bound: Any, body: IR, names: Sequence[str], nc: int, nx: int, steps: int,
              reverse: bool) -> Callable[..., None]:
    """The kernel of one scan node: ``scan(*inputs, *outputs)`` runs ``bound`` (the body bound for the
    node's shapes; ``names`` its input placeholders) over ``steps`` steps."""
    n_in, outs = len(names), body.outputs
    carry_out, y_names = outs[:nc], outs[nc:]
    ny = len(y_names)
    written = bound.plan.slots  # values a body kernel writes (into its arena unless re-pointed)
    # A carry ping-pongs when a kernel writes its new value and no earlier carry is the same value.
    big = {n: math.prod(shape) * np.dtype(dtype).itemsize >= MIN_VIEW_BYTES
           for n, shape, dtype in ((n, bound.plan.shapes[n], bound.plan.dtypes.get(n) or bound.arrays[n].dtype)
                                   for n in (*names[:nc + nx], *outs))}
    pong = [big[carry_out[k]] and carry_out[k] in written and carry_out.index(carry_out[k]) == k
            for k in range(nc)]
    shared = [y_names.index(carry_out[k]) if pong[k] and carry_out[k] in y_names else None for k in range(nc)]
    by_carry = {carry_out[k]: k for k in range(nc) if pong[k]}
    direct_y = [big[r] and r in written and r not in by_carry and y_names.index(r) == j
                for j, r in enumerate(y_names)]
    slot = [bound.arrays[n] for n in names]
    order = range(steps - 1, -1, -1) if reverse else range(steps)

    def point(name: str, array: np.ndarray) -> list[Setter]:
        return [(ns, key, array) for ns, key in bound.pointers(name)]

    def schedule(args: tuple[np.ndarray, ...]) -> tuple[list[Setter], list[tuple], list[tuple]]:
        """Once per call: the captures' setters and copies; then per step (setters, copies before,
        copies after); and the copies into the final carries."""
        xs, ys, finals = args[nc:nc + nx], args[n_in + nc:], args[n_in:n_in + nc]
        # Whatever this call does not re-point reads and writes its own buffer, whatever an earlier call did.
        first: list[Setter] = [p for n in {*names[nc:], *y_names} for p in point(n, bound.arrays[n])]
        copy_in: list[tuple[np.ndarray, np.ndarray]] = []
        base = {n: slot[k] for k, n in enumerate(names)}  # the array each input is in, unless re-pointed
        for k in range(nc + nx, n_in):
            if args[k].flags.c_contiguous:
                first += point(names[k], args[k])
                base[names[k]] = args[k]
            else:  # (pointed back at its own buffer, in case an earlier call's arrays were contiguous)
                first += point(names[k], slot[k])
                copy_in.append((slot[k], args[k]))
        copy_in += [(slot[k], args[k]) for k in range(nc) if not pong[k]]
        current = list(args[:nc])  # where each ping-pong carry's value is before the step
        staged: dict[int, np.ndarray] = {}  # carries that swap go through these, allocated once
        plan = []
        for i, t in enumerate(order):
            sets: list[Setter] = []
            before, after = [], []
            now = dict(base)  # the array each value is in during this step
            ys_t = [y[t, ...] for y in ys]
            for k in range(nx):
                x = xs[k][t, ...]
                now[names[nc + k]] = x
                if x.flags.c_contiguous and big[names[nc + k]]:
                    sets += point(names[nc + k], x)
                elif bound.pointers(names[nc + k]):
                    before.append((slot[nc + k], x))
            for k in range(nc):
                if not pong[k]:
                    continue
                if shared[k] is not None and ys_t[shared[k]].flags.c_contiguous:
                    new = ys_t[shared[k]]
                else:  # the last step writes the final carry, the one before it the body's own buffer
                    new = finals[k] if (steps - 1 - i) % 2 == 0 else slot[k]
                sets += point(names[k], current[k]) + point(carry_out[k], new)
                now[names[k]], now[carry_out[k]] = current[k], new
                current[k] = new
            for j in range(ny):
                y = ys_t[j]
                if direct_y[j] and y.flags.c_contiguous:
                    sets += point(y_names[j], y)
                    now[y_names[j]] = y
            for j in range(ny):
                if now.get(y_names[j]) is not ys_t[j]:
                    after.append((ys_t[j], now.get(y_names[j], bound.arrays.get(y_names[j]))))
            copies = [(k, now.get(carry_out[k], bound.arrays.get(carry_out[k]))) for k in range(nc) if not pong[k]]
            copies = [(k, src) for k, src in copies if src is not slot[k]]
            if any(src is slot[c] for _, src in copies for c in range(nc)):  # carries swap: stage them
                for k, src in copies:
                    staged.setdefault(k, np.empty_like(src))
                after += [(staged[k], src) for k, src in copies] + [(slot[k], staged[k]) for k, _ in copies]
            else:
                after += [(slot[k], src) for k, src in copies]
            plan.append((sets, before, after))
        final = [(finals[k], current[k] if pong[k] else slot[k]) for k in range(nc)]
        final = [(dst, src) for dst, src in final if dst is not src]
        if not any(sets for sets, _, _ in plan):  # nothing re-pointed (small slices): copies only
            return first, copy_in, [(before, after) for _, before, after in plan], final
        return first, copy_in, plan, final

    run_body = bound.compute
    cached: list[Any] = [(), None]  # a bound plan always passes the same arrays: built once

    def scan(*args: np.ndarray) -> None:
        key, built = cached
        if len(key) != len(args) or any(a is not b for a, b in zip(key, args)):
            built = schedule(args)
            cached[:] = [args, built]
        first, copy_in, plan, final = built
        for ns, name, array in first:
            ns[name] = array
        for dst, src in copy_in:
            np.copyto(dst, src)
        if plan and len(plan[0]) == 3:
            for sets, before, after in plan:  # ``dst[...] = src`` costs about half of np.copyto
                for ns, name, array in sets:
                    ns[name] = array
                for dst, src in before:
                    dst[...] = src
                run_body()
                for dst, src in after:
                    dst[...] = src
        else:
            for before, after in plan:
                for dst, src in before:
                    dst[...] = src
                run_body()
                for dst, src in after:
                    dst[...] = src
        for dst, src in final:
            np.copyto(dst, src)

    return scan
