"""Competitors: one function per framework, mapping a workload name to a zero-argument step function.

A competitor is registered with ``@competitor(name, needs=module)``; its function gets the workload
name and returns the step to time (``None`` when it has no such workload). Adding a framework is
one such function. Each function runs only inside ``bench.worker``, one fresh process per call.

Workloads (the models are in ``bench.models``):

- ``mlp_train``: MLP 784-1024-1024-10, batch 256, one SGD step;
- ``cnn_train``: CNN conv32-pool-conv64-pool-dense10 on 28x28, batch 64, one SGD step;
- ``cnn_infer_1`` / ``cnn_infer_256``: the same CNN's forward pass (logits) at batch 1 / 256;
- ``chain``: 200 chained elementwise ops on 64x64 float32 (per-op overhead; time is per op);
- ``transformer_train``: one TransformerEncoderLayer training step (``bench.seq_models``);
- ``lstm_train``: one LSTM layer training step (``bench.lstm_models``).

onnxruntime runs the CNN inference workloads from the file ``gd.onnx.export`` writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import lstm_models, models, seq_models

Step = Callable[[], object]
WORKLOADS = ("mlp_train", "cnn_train", "cnn_infer_1", "cnn_infer_256", "chain", *seq_models.TITLES,
             *lstm_models.TITLES)
#: Per-step time is divided by this (the chain reports time per op).
PER_CALL = {"chain": models.CHAIN_OPS}


@dataclass(frozen=True)
class Competitor:
    name: str
    build: Callable[[str], Step | None]
    needs: str | None = None  # module that must be importable


COMPETITORS: dict[str, Competitor] = {}


def competitor(name: str, needs: str | None = None) -> Callable[[Callable[[str], Step | None]], Callable]:
    """Register ``fn(workload) -> step | None`` as the competitor ``name``."""

    def register(fn: Callable[[str], Step | None]) -> Callable[[str], Step | None]:
        COMPETITORS[name] = Competitor(name, fn, needs)
        return fn

    return register


def _batch(workload: str) -> int:
    return int(workload.rsplit("_", 1)[1]) if workload.startswith("cnn_infer") else models.CNN_BATCH


def graphdl_workload(workload: str) -> tuple[Any, dict] | None:
    """The graphdl executable of a workload and its feeds (None for a workload graphdl does not run)."""
    if workload == "mlp_train":
        x, y = models.mlp_data()
        ex, xt, yt = models.graphdl_mlp()
        return ex, {xt: x, yt: y}
    if workload == "cnn_train":
        x, y = models.cnn_data()
        ex, xt, yt = models.graphdl_cnn()
        return ex, {xt: x, yt: y}
    if workload.startswith("cnn_infer"):
        x, _ = models.cnn_data(_batch(workload))
        ex, xt = models.graphdl_cnn_inference()
        return ex, {xt: x}
    if workload == "chain":
        x = models.chain_data()
        ex, xt = models.graphdl_chain()
        return ex, {xt: x}
    return seq_models.graphdl_workload(workload) or lstm_models.graphdl_workload(workload)


@competitor("graphdl")
def graphdl_step(workload: str) -> Step | None:
    made = graphdl_workload(workload)
    if made is None:
        return None
    ex, feeds = made
    return lambda: ex.run(feeds, copy=False)


@competitor("NumPy GEMM floor")
def numpy_floor(workload: str) -> Step | None:
    """Only the GEMMs of each workload (im2col matrices prepared beforehand), written with out=;
    for the chain, the NumPy ufuncs themselves."""
    rng = np.random.default_rng(0)

    def mats(m: int, k: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, c), dtype=np.float32),
                np.empty((m, c), np.float32))

    if workload == "mlp_train":
        x, _ = models.mlp_data()
        sizes = models.MLP_SIZES
        ws = [rng.standard_normal((a, b), dtype=np.float32) * 0.01 for a, b in itertools.pairwise(sizes)]
        acts = [x] + [np.empty((x.shape[0], w.shape[1]), np.float32) for w in ws]
        grads_in = [np.empty_like(a) for a in acts[1:]]
        grads_w = [np.empty_like(w) for w in ws]

        def mlp() -> None:  # 3 forward, 3 weight gradients, 2 input gradients
            for k, w in enumerate(ws):
                np.matmul(acts[k], w, out=acts[k + 1])
            for k in reversed(range(len(ws))):
                np.matmul(acts[k].T, grads_in[k], out=grads_w[k])
                if k:
                    np.matmul(grads_in[k], ws[k].T, out=grads_in[k - 1])

        return mlp
    if workload.startswith("cnn"):
        n = _batch(workload)
        conv1, conv2, dense = mats(n * 28 * 28, 9, 32), mats(n * 14 * 14, 288, 64), mats(n, 64 * 7 * 7, 10)
        if workload != "cnn_train":
            def forward() -> None:
                for a, b, c in (conv1, conv2, dense):
                    np.matmul(a, b, out=c)

            return forward
        dw1, dw2, dwd = (np.empty((9, 32), np.float32), np.empty((288, 64), np.float32),
                         np.empty((3136, 10), np.float32))
        dcols2, dxd = np.empty((n * 14 * 14, 288), np.float32), np.empty((n, 3136), np.float32)

        def train() -> None:  # both convolutions forward, both weight gradients, conv2's input gradient, dense x3
            for a, b, c in (conv1, conv2, dense):
                np.matmul(a, b, out=c)
            np.matmul(dense[0].T, dense[2], out=dwd)
            np.matmul(dense[2], dense[1].T, out=dxd)
            np.matmul(conv2[0].T, conv2[2], out=dw2)
            np.matmul(conv2[2], conv2[1].T, out=dcols2)
            np.matmul(conv1[0].T, conv1[2], out=dw1)

        return train
    if workload == "chain":
        x = models.chain_data()
        a = x.copy()
        ops = [(np.multiply if op == "mul" else np.add, c) for op, c in map(models.chain_op, range(models.CHAIN_OPS))]

        def chain() -> None:
            np.copyto(a, x)
            for f, c in ops:
                f(a, c, out=a)

        return chain
    return None


@competitor("PyTorch eager", needs="torch")
def torch_step(workload: str) -> Step | None:
    import torch

    if workload == "mlp_train":
        x, y = models.mlp_data()
        step = models.torch_mlp()[2]
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        return lambda: step(tx, ty)
    if workload == "cnn_train":
        x, y = models.cnn_data()
        step = models.torch_cnn()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        return lambda: step(tx, ty)
    if workload.startswith("cnn_infer"):
        x, _ = models.cnn_data(_batch(workload))
        model = models.torch_cnn_model().eval()
        tx = torch.from_numpy(x)

        def infer() -> None:
            with torch.inference_mode():
                model(tx)

        return infer
    if workload == "chain":
        tx = torch.from_numpy(models.chain_data())

        def chain() -> None:
            h = tx
            for k in range(models.CHAIN_OPS):
                op, c = models.chain_op(k)
                h = h * c if op == "mul" else h + c

        return chain
    return seq_models.torch_step(workload) or lstm_models.torch_step(workload)


@competitor("JAX jit", needs="jax")
def jax_step(workload: str) -> Step | None:
    import jax

    if workload in ("mlp_train", "cnn_train"):
        x, y = models.mlp_data() if workload == "mlp_train" else models.cnn_data()
        params, step = models.jax_mlp() if workload == "mlp_train" else models.jax_cnn()
        jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y)
        state = [params]

        def train() -> None:
            state[0], loss = step(state[0], jx, jy)
            loss.block_until_ready()

        return train
    if workload.startswith("cnn_infer"):
        x, _ = models.cnn_data(_batch(workload))
        params, forward = models.jax_cnn_inference()
        jx = jax.numpy.asarray(x)
        return lambda: forward(params, jx).block_until_ready()
    if workload == "chain":
        @jax.jit
        def chain(h):
            for k in range(models.CHAIN_OPS):
                op, c = models.chain_op(k)
                h = h * c if op == "mul" else h + c
            return h

        jx = jax.numpy.asarray(models.chain_data())
        return lambda: chain(jx).block_until_ready()
    return None


@competitor("onnxruntime", needs="onnxruntime")
def onnxruntime_step(workload: str) -> Step | None:
    """The CNN's inference plan exported by ``gd.onnx.export`` and run by an onnxruntime session
    (one intra-/inter-op thread when OMP_NUM_THREADS=1, as in the one-thread setting)."""
    if not workload.startswith("cnn_infer"):
        return None
    import os
    import tempfile

    import onnxruntime as ort

    import graphdl as gd

    ex, _ = models.graphdl_cnn_inference()
    path = os.path.join(tempfile.mkdtemp(prefix="graphdl-bench-"), "cnn.onnx")
    gd.onnx.export(ex, path)
    opts = ort.SessionOptions()
    if os.environ.get("OMP_NUM_THREADS") == "1":
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x, _ = models.cnn_data(_batch(workload))
    feeds = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feeds)
