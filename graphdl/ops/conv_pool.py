"""A convolution and the max pooling that alone reads it, as one op: ``conv2d_pool_blocks``.

The compiler's ``pool_blocks`` pass (``passes/pool_blocks.py``) makes one in training plans, for a first
layer: ``max_pool_blocks(conv2d(x, W, b, pool_blocks=(bh, bw)))`` (see ``graphdl.ops.pool_blocks``). The
convolution's output is then never stored whole: the batch runs in chunks of samples whose blocked output
is a few MB (``CHUNK_BYTES``), each chunk's columns taken, multiplied and pooled at once (into small
arrays, then copied out), and threads take ranges of chunks. The benchmark CNN's conv1 + pool1 (32 3x3
filters over 64 28x28 images): 0.90 ms as two ops, 0.60 ms fused on two threads (one thread: 1.44 and
0.95); at batch 256: 5.28 and 2.30 ms.

Values and indices are those of the two ops. The attribute ``conv`` keeps the convolution's node name,
so that an inference compile can split the pair back (``passes.pool_blocks.unfuse``) under the names the
user gave. The gradient is the pair's: the pooled gradient routed to the saved maxima
(``max_pool_blocks_grad``), then the convolution's gradients; the bias gradient sums the pooled one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import Str
from graphdl.ir import name_problem
from graphdl.ops.columns import Columns
from graphdl.ops.conv import CONV_ATTRS, LABEL, conv_shape, nchw
from graphdl.ops.gemm import gemm_views
from graphdl.ops.pool_blocks import index_dtype, pool_planes, window_offsets
from graphdl.registry import GradContext, OpDef, fail, register, scratch

#: Bytes of the convolution's output per chunk of samples (at least one sample). The benchmark CNN's conv1
#: + pool1 (100 KB of output a sample), two threads, median ms, in one process with the pair unfused:
#: batch 64: unfused 0.90, chunks of 8 0.87, 11 0.74, 16 0.65, 32 0.60 (one thread: 1.44, 1.04, 0.98,
#: 0.99, 0.95); batch 256: unfused 5.28, chunks of 10 3.13, 19 2.44, 32 2.30, 64 3.67, 128 5.35.
CHUNK_BYTES = 4 << 20

ATTRS = {**CONV_ATTRS, "conv": Str()}


def _conv_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != "conv"}


def _shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    problem = name_problem(attrs["conv"])
    if problem is not None:
        fail(f"attribute conv must name the fused convolution: {problem}")
    if not attrs.get("channel_major") or attrs.get("pool_blocks") is None:
        fail("conv2d_pool_blocks needs channel_major and pool_blocks (the compiler sets both)")
    c, n, _, _, h, w = conv_shape(shapes, _conv_attrs(attrs))
    return (c, n, h, w), (c, n, h, w)


def _plan(attrs: dict[str, Any], in_shapes: tuple, dtype: Any) -> tuple[int, int, int]:
    """(samples per chunk, chunks, pieces: the most threads that each need their own scratch)."""
    n = in_shapes[0][1]
    y = conv_shape(in_shapes, _conv_attrs(attrs))  # (Cout, N, bh, bw, H/bh, W/bw)
    per_sample = math.prod(y) // max(n, 1)
    chunks = -(-n // max(1, CHUNK_BYTES // max(per_sample * np.dtype(dtype).itemsize, 1)))
    pieces = threads.MAX_PARTS if chunks > 1 and threads.splits(math.prod(y)) else 1
    chunks = min(n, -(-chunks // pieces) * pieces)  # as many per thread, and as even as the batch allows
    chunk = -(-n // chunks)
    return chunk, -(-n // chunk), pieces


def _piece_scratch(attrs: dict[str, Any], in_shapes: tuple, dtype: Any, samples: int) -> list[tuple]:
    """One thread's scratch for a chunk of ``samples``: columns, zero-padded input, blocked output, the
    pooled values and indices (pooled here and then copied out: the pooling's five passes run about half
    as fast writing a slice of the whole batch's arrays), and the pooling's mask and index steps."""
    c, _, h, w = in_shapes[0]
    columns = Columns(nchw((c, samples, h, w), attrs), attrs)
    y = conv_shape(((c, samples, h, w), *in_shapes[1:]), _conv_attrs(attrs))
    pooled = (y[0], samples, y[4], y[5])
    index = index_dtype({"blocks": attrs["pool_blocks"]})
    return [(columns.shape, dtype), (columns.padded, dtype), (y, dtype), (pooled, dtype), (pooled, index),
            (pooled, np.bool_), (pooled, index)]


def _workspace(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple) -> list[tuple]:
    chunk, _, pieces = _plan(attrs, in_shapes, dtypes[0])
    flat = [((math.prod(s),), d) for s, d in _piece_scratch(attrs, in_shapes, dtypes[0], chunk)]
    return flat * pieces


def _kernel(attrs: dict, in_shapes: tuple, out_shapes: tuple, dtypes: tuple,
            workspace: list[np.ndarray] | None = None):
    dtype = np.dtype(dtypes[0])
    chunk, chunks, pieces = _plan(attrs, in_shapes, dtype)
    n = in_shapes[0][1]
    flat = scratch(workspace, _workspace(attrs, in_shapes, out_shapes, dtypes))
    offsets = window_offsets(*attrs["pool_blocks"])
    sizes = sorted({chunk, n - (chunks - 1) * chunk})
    groups = attrs.get("groups", 1)

    def views(buffers: list[np.ndarray], samples: int) -> tuple:
        """One thread's scratch for a chunk of ``samples`` (a prefix of each of its buffers), and its own
        Columns (which caches views of the padded buffer it was last given)."""
        shaped = [b[:math.prod(s)].reshape(s) for b, (s, _) in
                  zip(buffers, _piece_scratch(attrs, in_shapes, dtype, samples))]
        c, _, h, w = in_shapes[0]
        cols, _, y, *_ = shaped
        # the GEMMs' operands per group: (G, Cout/G, samples*H*W) and (G, C/G*kh*kw, samples*H*W)
        y3 = y.reshape(groups, y.shape[0] // groups, -1)
        return Columns(nchw((c, samples, h, w), attrs), attrs), *shaped, y3, cols.reshape(groups, -1, y3.shape[2])

    per = len(flat) // pieces
    scratch_of = [{m: views(flat[per * j:per * (j + 1)], m) for m in sizes} for j in range(pieces)]
    cout = in_shapes[1][0]

    def conv2d_pool_blocks(x: np.ndarray, w: np.ndarray, *rest: np.ndarray) -> None:
        out, idx = rest[-2], rest[-1]
        bias = rest[0] if len(rest) == 3 else None
        w3 = w.reshape(groups, cout // groups, -1)

        def piece(j: int, s: slice) -> None:
            for k in range(s.start, s.stop):
                first = k * chunk
                samples = min(chunk, n - first)
                columns, cols, padded, y, best, index, mask, step, y3, cols3 = scratch_of[j][samples]
                columns.im2col(x[:, first:first + samples], cols, True, padded)
                if bias is not None:  # the GEMM accumulates onto the bias, as conv2d's does
                    np.copyto(y3, bias.reshape(groups, -1, 1))
                    for g in range(groups):
                        gemm_views(w3[g], cols3[g], y3[g], beta=1.0)
                else:
                    np.matmul(w3, cols3, out=y3)
                pool_planes(y, best, index, mask, step, offsets)
                np.copyto(out[:, first:first + samples], best)
                np.copyto(idx[:, first:first + samples], index)

        k = threads.parts(chunks, pieces)
        threads.split_dynamic(piece, chunks, k, k)

    return threads.splitting(conv2d_pool_blocks, pieces > 1)


def _grad(c: GradContext) -> list:
    if c.gout is None:  # only the indices are read: they are no function of the inputs
        return [None] * len(c.inputs)
    x, w = c.inputs[0], c.inputs[1]
    conv = _conv_attrs(c.attrs)
    needed = c.needed or (True,) * len(c.inputs)
    # the bias gradient first, summed from the pooled gradient (the routing moves each value once): the
    # pooled gradient then dies at the routing, before the weight gradient's columns are made
    bias = c.apply("sum", c.gout, axis=(1, 2, 3)) if len(c.inputs) == 3 and needed[2] else None
    gy = c.apply("max_pool_blocks_grad", c.gout, c.outs[1], blocks=tuple(conv["pool_blocks"]))
    grads = [c.apply("conv2d_input_grad", gy, w, x, **conv) if needed[0] else None,
             c.apply("conv2d_weight_grad", x, gy, **conv) if needed[1] else None]
    return [*grads, bias] if len(c.inputs) == 3 else grads


register(OpDef("conv2d_pool_blocks", _shape, _kernel, grad=_grad, multi_output=True, label_attrs=LABEL,
               dtype=lambda d, a: (d[0], np.dtype(index_dtype({"blocks": a["pool_blocks"]})).name),
               workspace=_workspace,
               doc="max_pool_blocks(conv2d(x, W, b)) in chunks of samples: a first convolution and the tiling max "
                   "pooling that alone reads it (the compiler's fusion, training plans; x channel-major).",
               attr_schema=ATTRS))
