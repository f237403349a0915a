"""200 chained elementwise ops on 64x64 float32: per-op framework overhead vs NumPy ufuncs with out=."""

from __future__ import annotations

import numpy as np

from bench.common import available, median_times, ratio, table, us

N_OPS = 200
SHAPE = (64, 64)


def _consts(k: int) -> tuple[str, float]:
    """The k-th op of the chain: alternately multiply by and add a constant (values stay bounded)."""
    return ("mul", 0.999) if k % 2 == 0 else ("add", 0.001)


def numpy_floor(x: np.ndarray):
    a = x.copy()
    ops = [(np.multiply if op == "mul" else np.add, c) for op, c in map(_consts, range(N_OPS))]

    def run() -> None:
        np.copyto(a, x)
        for f, c in ops:
            f(a, c, out=a)

    return run


def graphdl_chain(x: np.ndarray):
    import graphdl as gd

    with gd.Graph("chain"):
        h = xt = gd.placeholder("x", SHAPE)
        for k in range(N_OPS):
            op, c = _consts(k)
            h = h * c if op == "mul" else h + c
    ex = gd.compile([h])
    feeds = {xt: x}
    return lambda: ex.run(feeds, copy=False)


def run(repeats: int = 15) -> tuple[str, dict[str, float]]:
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    fns = {"NumPy ufuncs, out=": numpy_floor(x), "graphdl": graphdl_chain(x)}
    notes = []
    if available("torch"):
        import torch

        tx = torch.from_numpy(x)

        def torch_chain() -> None:
            h = tx
            for k in range(N_OPS):
                op, c = _consts(k)
                h = h * c if op == "mul" else h + c

        fns["PyTorch eager"] = torch_chain
    else:
        notes.append("PyTorch not installed: skipped")
    if available("jax"):
        import jax

        @jax.jit
        def chain(h):
            for k in range(N_OPS):
                op, c = _consts(k)
                h = h * c if op == "mul" else h + c
            return h

        jx = jax.numpy.asarray(x)
        fns["JAX jit (XLA fuses the chain)"] = lambda: chain(jx).block_until_ready()
    else:
        notes.append("JAX not installed: skipped")
    t = {k: v / N_OPS for k, v in median_times(fns, repeats=repeats, inner=20).items()}
    floor = t["NumPy ufuncs, out="]
    rows = [[name, us(v), ratio(v, floor)] for name, v in t.items()]
    text = table([f"{N_OPS} chained elementwise ops, 64x64 float32", "median per op", "vs NumPy out="], rows)
    if notes:
        text += "\n\n" + "; ".join(notes)
    return text, t
