"""2-d convolution (NCHW, weight (out, in/groups, kh, kw)) by im2col and one GEMM over the whole batch.

``conv2d`` has two gradient ops, one per input: ``conv2d_input_grad`` (the transposed convolution,
col2im over the kernel offsets) and ``conv2d_weight_grad`` (a GEMM against the windows). Each of the
three is bilinear, so every gradient of a gradient is again one of the three: second order works.

With ``channel_major=True`` (set by the compiler's layout pass, ``passes.layout``, never by users) the
images, the output and their gradients are (C, N, H, W) instead of (N, C, H, W): the GEMMs' own layout,
(channels, pixels of the whole batch), so no kernel transposes them around its GEMM. With
``pool_blocks=(bh, bw)`` as well (the ``pool_blocks`` layout pass, for a convolution that only a tiling
max pooling reads) the output and its gradient are blocked, (C, N, bh, bw, H/bh, W/bw): value
``[c, n, i, j, y, x]`` is output pixel (y*bh + i, x*bw + j). The columns are then taken in that pixel
order (one strided copy), so the GEMM writes the blocks, and each window offset of the pooling is a
plane with long contiguous rows (``graphdl.ops.pool_blocks``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl import threads
from graphdl.attrs import ABSENT, Bool, Ints
from graphdl.ops.columns import Columns, blocks
from graphdl.ops.gemm import gemm_views, has_blas, make_gemm
from graphdl.ops.window import WINDOW_ATTRS, check_image, out_hw
from graphdl.registry import GradContext, OpDef, fail, register, scratch

LABEL = ("kernel", "stride", "padding", "dilation", "groups")
#: ``pool_blocks`` may be absent (files written before it existed hold no such attribute): a plain output.
CONV_ATTRS = {**WINDOW_ATTRS, "channel_major": Bool(False), "pool_blocks": Ints(2, default=ABSENT, low=1)}


def nchw(shape: tuple, attrs: dict[str, Any]) -> tuple:
    """An image shape as (N, C, H, W): a channel-major (C, N, H, W) one with its first two axes swapped, a
    blocked (C, N, bh, bw, H/bh, W/bw) one as the channel-major image it holds, then swapped."""
    if len(shape) == 6:
        shape = (shape[0], shape[1], shape[2] * shape[4], shape[3] * shape[5])
    return (shape[1], shape[0], *shape[2:]) if attrs.get("channel_major") and len(shape) == 4 else tuple(shape)


def _samples(a: np.ndarray, s: slice, cm: bool) -> np.ndarray:
    """The samples ``s`` of an image batch, NCHW or channel-major."""
    return a[:, s] if cm else a[s]


def _check(x: tuple, w: tuple, attrs: dict[str, Any]) -> tuple[int, int]:
    check_image(x, "conv2d")
    groups = attrs.get("groups", 1)
    if len(w) != 4:
        fail(f"weight must be 4-d (out_channels, in_channels/groups, kh, kw), got {w}")
    if None in w:
        fail(f"the weight's shape must be known, got {w}", "use a parameter or a placeholder with a fixed shape")
    if tuple(w[2:]) != tuple(attrs["kernel"]):
        fail(f"weight {w} does not have the kernel size {tuple(attrs['kernel'])}")
    if x[1] is not None and x[1] != w[1] * groups:
        fail(f"input has {x[1]} channels but the weight expects {w[1] * groups} ({w[1]} per group x {groups} "
             f"groups)", f"make the previous layer output {w[1] * groups} channels")
    if w[0] % groups:
        fail(f"{w[0]} output channels do not split into {groups} groups")
    return out_hw(x, attrs)


def conv_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, w = nchw(shapes[0], attrs), shapes[1]
    ho, wo = _check(x, w, attrs)
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        fail(f"bias has shape {shapes[2]}, expected ({w[0]},)")
    blocked = blocks(attrs)
    if blocked is None:
        return nchw((x[0], w[0], ho, wo), attrs)
    bh, bw = blocked
    if not attrs.get("channel_major") or ho % bh or wo % bw:
        fail(f"a blocked output needs channel_major and an output ({ho}x{wo}) that {bh}x{bw} blocks tile")
    return (w[0], x[0], bh, bw, ho // bh, wo // bw)


def _split(n: int, out_size: int) -> bool:
    """Whether a kernel cuts its batch of ``n`` samples into slices for threads (``out_size`` elements)."""
    return n > 1 and threads.splits(out_size)


def _conv_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    """Columns (C*kh*kw, N*Ho*Wo), and the GEMM's (Cout, N*Ho*Wo) result unless N is 1 or the output
    is channel-major (then the GEMM writes the output itself)."""
    n, co, ho, wo = nchw(out_shape, attrs)
    columns = Columns(nchw(in_shapes[0], attrs), attrs)
    own = n > 1 and not attrs.get("channel_major")
    result = [((co * n * ho * wo,), dtype)] if own else []
    return [((math.prod(columns.shape),), dtype), *result, *_padded(columns, dtype)]


def _padded(columns: Columns, dtype: np.dtype) -> list[tuple]:
    """The zero-padded copy of x small columns are copied from (none for larger ones)."""
    return [(columns.padded, dtype)] if columns.padded is not None else []


def _conv_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                 workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    columns = Columns(nchw(in_shapes[0], attrs), attrs)
    cols_buf, *y_buf = scratch(workspace, _conv_workspace(attrs, in_shapes, out_shape, dtype))
    padded = y_buf.pop() if columns.padded is not None else None
    groups = attrs.get("groups", 1)
    n, co, ho, wo = nchw(out_shape, attrs)
    hw, cog = ho * wo, co // groups
    cols = cols_buf.reshape(columns.shape)
    cols_g = cols_buf.reshape(groups, -1, n * hw)
    y = y_buf[0].reshape(groups, cog, n * hw) if y_buf else None
    # With a bias and BLAS, the GEMM accumulates onto the bias broadcast into its output (beta = 1):
    # a fill and a plain transposing copy are cheaper than adding a per-channel bias in that copy.
    fused = len(in_shapes) == 3 and has_blas(dtype)
    split = _split(n, math.prod(out_shape))
    whole = make_gemm(dtype, (cog, n * hw), beta=1.0) if fused else None  # cached pointers: batch 1's latency
    # One group, a bias, one call, the GEMM writing the output (batch 1 or channel-major): three NumPy
    # calls and the GEMM on views made once for the bound arrays (batch 1's latency: 14.8 -> 10 us)
    direct: list | None = [None] * 8 if groups == 1 and fused and not split and y is None else None

    def conv2d(x: np.ndarray, w: np.ndarray, *rest: np.ndarray) -> None:
        out = rest[-1]
        if direct is not None:
            if x is not direct[0] or w is not direct[1] or rest[0] is not direct[2] or out is not direct[3]:
                direct[:] = [x, w, rest[0], out, w.reshape(co, -1), rest[0].reshape(co, 1),
                             out.reshape(co, n * hw), cols_buf.reshape(-1, n * hw)]
            columns.im2col(x, cols, cm, padded)
            np.copyto(direct[6], direct[5])
            whole(direct[4], direct[7], direct[6])
            return
        w_g = w.reshape(groups, cog, -1)
        bias = rest[0] if len(rest) == 2 else None
        # a GEMM per group over the batch, or over each thread's slice of it: (Cout/G, K) @ (K, n*Ho*Wo)
        dst3 = y if y is not None else out.reshape(groups, cog, n * hw)

        def part(s: slice) -> None:
            columns.im2col(_samples(x, s, cm), cols[:, :, :, s], cm, padded, s)
            cs = slice(s.start * hw, s.stop * hw)
            dst = dst3[:, :, cs]
            if fused:
                np.copyto(dst, bias.reshape(groups, cog, 1))
                for k in range(groups):
                    if s.stop - s.start == n:
                        whole(w_g[k], cols_g[k], dst[k])
                    else:
                        gemm_views(w_g[k], cols_g[k][:, cs], dst[k], beta=1.0)
            else:
                np.matmul(w_g, cols_g[:, :, cs], out=dst)
            if y is not None:  # (Cout, n, Ho*Wo) -> NCHW, adding the bias in the same pass unless done
                src = dst3.reshape(co, n, hw)[:, s].transpose(1, 0, 2)
                o = out[s].reshape(-1, co, hw)
                if bias is not None and not fused:
                    np.add(src, bias.reshape(1, co, 1), out=o)
                else:
                    np.copyto(o, src)
            elif bias is not None and not fused:  # the output is the GEMM's: (Cout, n, Ho*Wo)
                o = out.reshape(co, n, hw)[:, s]
                np.add(o, bias.reshape(co, 1, 1), out=o)

        if split:
            threads.split_over_threads(part, n)
        else:
            part(slice(0, n))

    return threads.splitting(conv2d, split)


def _conv_grad(c: GradContext) -> list:
    x, w = c.inputs[0], c.inputs[1]
    bias = None
    if len(c.inputs) == 3:  # first: simplify_algebra may make it read a smaller value that then dies early
        axes = (0, 2, 3) if not c.attrs.get("channel_major") else (1, 2, 3) if blocks(c.attrs) is None else (
            1, 2, 3, 4, 5)
        bias = c.apply("sum", c.gout, axis=axes)
    grads = [c.apply("conv2d_input_grad", c.gout, w, x, **c.attrs), c.apply("conv2d_weight_grad", x, c.gout, **c.attrs)]
    return grads if bias is None else [*grads, bias]


register(OpDef("conv2d", conv_shape, _conv_kernel, grad=_conv_grad, label_attrs=LABEL, workspace=_conv_workspace,
               doc="Cross-correlation of NCHW x with W (out, in/groups, kh, kw), plus bias per output channel "
                   "(channel_major: x and the output are (C, N, H, W)).",
               attr_schema=CONV_ATTRS))


def _input_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, w, x = shapes
    expected = conv_shape((x, w), attrs)  # x, g and the result share the layout
    if any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient {g} does not match the convolution's output {expected}")
    return x


def _input_grad_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    """Column gradients (C*kh*kw, N*Ho*Wo), and unless N is 1 one buffer for the output gradient
    channel-major, reused (once the GEMM has read it) for col2im's channel-major sums."""
    g, x = nchw(in_shapes[0], attrs), nchw(in_shapes[2], attrs)
    columns = Columns(x, attrs)
    cols = (math.prod(columns.shape),)
    both = max(math.prod(g), math.prod(x) if columns.runs is not None else 0)
    unblocked = [((math.prod(g),), dtype)] if columns.blocks is not None else []  # g in pixel order
    return [(cols, dtype)] + ([((both,), dtype)] if g[0] > 1 and not attrs.get("channel_major") else []) + unblocked


def _input_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                       workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    g_shape, w_shape, x_shape = nchw(in_shapes[0], attrs), in_shapes[1], nchw(in_shapes[2], attrs)
    columns = Columns(x_shape, attrs)
    dcols_buf, *gt_buf = scratch(workspace, _input_grad_workspace(attrs, in_shapes, out_shape, dtype))
    unblocked = gt_buf.pop() if columns.blocks is not None else None
    groups = attrs.get("groups", 1)
    n, co = g_shape[:2]
    hw = math.prod(g_shape[2:])
    dcols = dcols_buf.reshape(columns.shape)
    dcols_g = dcols_buf.reshape(groups, -1, n * hw)
    # the output gradient channel-major (Cout, N, Ho*Wo); once a slice's GEMM has read it, the same
    # buffer takes col2im's channel-major sums (C, N, H*W): with Ho*Wo == H*W (the only case col2im
    # uses them) a slice's sums land on that slice's samples of g only, so slices never collide
    gt = gt_buf[0][:n * co * hw].reshape(co, n, hw) if gt_buf else None
    acc = gt_buf[0][:math.prod(x_shape)].reshape(x_shape[1], n, -1) if gt_buf and columns.runs else None
    w_split = (groups, w_shape[0] // groups, -1)
    split = _split(n, math.prod(out_shape))

    def conv2d_input_grad(g: np.ndarray, w: np.ndarray, like: np.ndarray, out: np.ndarray) -> None:
        # column gradients (K, n*Ho*Wo) = W^T (K, Cout/G) @ g (Cout/G, n*Ho*Wo) per group, then col2im
        w_t = w.reshape(w_split).transpose(0, 2, 1)

        def part(s: slice) -> None:
            cs = slice(s.start * hw, s.stop * hw)
            if unblocked is not None:  # blocked (C, N, bh, bw, h, w) -> (C, N, h*bh, w*bw)
                bh, bw, h, w = g.shape[2:]
                np.copyto(unblocked.reshape(co, n, h, bh, w, bw)[:, s], g[:, s].transpose(0, 1, 4, 2, 5, 3))
                g2 = unblocked.reshape(groups, co // groups, n * hw)[:, :, cs]
            elif gt is None:  # channel-major already (or one sample)
                g2 = g.reshape(groups, co // groups, n * hw)[:, :, cs]
            else:
                np.copyto(gt[:, s], g[s].reshape(-1, co, hw).transpose(1, 0, 2))
                g2 = gt.reshape(groups, co // groups, n * hw)[:, :, cs]
            np.matmul(w_t, g2, out=dcols_g[:, :, cs])
            columns.col2im(dcols[:, :, :, s], _samples(out, s, cm), acc[:, s] if acc is not None else None, cm)

        if split:
            threads.split_over_threads(part, n)
        else:
            part(slice(0, n))

    return threads.splitting(conv2d_input_grad, split)


def _input_grad_grad(c: GradContext) -> list:
    g, w, _ = c.inputs
    return [c.apply("conv2d", c.gout, w, **c.attrs), c.apply("conv2d_weight_grad", c.gout, g, **c.attrs), None]


register(OpDef("conv2d_input_grad", _input_grad_shape, _input_grad_kernel, grad=_input_grad_grad, arity=3,
               nondiff=(2,), shape_only=(2,), label_attrs=LABEL, workspace=_input_grad_workspace,
               doc="Gradient of conv2d for its input (a transposed convolution); `like` gives the input's shape.",
               attr_schema=CONV_ATTRS))


def _weight_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, g = nchw(shapes[0], attrs), nchw(shapes[1], attrs)
    check_image(x, "conv2d_weight_grad")
    groups = attrs.get("groups", 1)
    ho, wo = out_hw(x, attrs)
    if len(g) != 4 or (g[2], g[3]) != (ho, wo):
        fail(f"gradient {g} does not match the convolution's output (?, ?, {ho}, {wo})")
    if g[1] is None or x[1] is None:
        fail("channel counts must be known")
    return (g[1], x[1] // groups, *tuple(attrs["kernel"]))


def _columns_first(out_shape: tuple, groups: int) -> bool:
    """Whether the weight gradient's GEMM runs as columns @ g^T (rows K = C/G*kh*kw) rather than
    g @ columns^T (rows Cout/G): OpenBLAS is faster with the larger of the two as rows (conv2 of the
    benchmark, K 288 vs 64 output channels: 5.9 vs 6.5 ms; conv1, K 9 vs 32: 1.4 vs 1.0 ms)."""
    return math.prod(out_shape[1:]) > out_shape[0] // groups


def _per_sample(out_shape: tuple, groups: int) -> bool:
    """Whether the weight gradient's GEMM runs one small GEMM per sample into a stack that is then
    summed: for a K (C/G*kh*kw) of at most 16, as in a first layer over one channel, OpenBLAS's
    SkylakeX kernels run g @ columns^T with N*Ho*Wo long rows at a third of their speed (64x1x28x28
    into 32 3x3 filters: 647 us as one GEMM, 227 us as 64 plus the sum; Haswell kernels: the same
    either way; K 27 or more: the one GEMM is as fast or faster)."""
    return not _columns_first(out_shape, groups) and math.prod(out_shape[1:]) <= 16


def _weight_grad_parts(attrs: dict, in_shapes: tuple) -> int:
    """Slices of the batch the weight gradient may run in threads, each with its own partial dW."""
    g = nchw(in_shapes[1], attrs)
    return threads.MAX_PARTS if _split(g[0], math.prod(g)) else 1


def _weight_grad_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    """Columns of x (C*kh*kw, N*Ho*Wo), the output gradient channel-major unless N is 1, the
    transposed weight gradient when the GEMM runs columns first, and when the batch is split over
    threads one partial weight gradient per slice past the first (summed into the first)."""
    x, g = nchw(in_shapes[0], attrs), nchw(in_shapes[1], attrs)
    cols = (math.prod(Columns(x, attrs).shape),)
    transposed = [((math.prod(out_shape),), dtype)] if _columns_first(out_shape, attrs.get("groups", 1)) else []
    extra = _weight_grad_parts(attrs, in_shapes) - 1
    partials = [((extra * math.prod(out_shape),), dtype)] if extra else []
    own_gt = g[0] > 1 and not attrs.get("channel_major")
    stack = [((g[0] * math.prod(out_shape),), dtype)] if _per_sample(out_shape, attrs.get("groups", 1)) else []
    return ([(cols, dtype)] + ([((math.prod(g),), dtype)] if own_gt else []) + transposed + partials + stack
            + _padded(Columns(x, attrs), dtype))


def _weight_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                        workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    x_shape, g_shape = nchw(in_shapes[0], attrs), nchw(in_shapes[1], attrs)
    columns = Columns(x_shape, attrs)
    groups = attrs.get("groups", 1)
    cols_buf, *rest = scratch(workspace, _weight_grad_workspace(attrs, in_shapes, out_shape, dtype))
    padded = rest.pop() if columns.padded is not None else None
    n, co = g_shape[:2]
    hw = math.prod(g_shape[2:])
    gt = rest.pop(0).reshape(co, n, hw) if n > 1 and not cm else None
    cols = cols_buf.reshape(columns.shape)
    cols_g = cols_buf.reshape(groups, -1, n * hw)
    cog = co // groups
    first = _columns_first(out_shape, groups)
    wt = rest.pop(0).reshape(groups, -1, cog) if first else None
    most = _weight_grad_parts(attrs, in_shapes)
    kdim = math.prod(out_shape[1:])
    part_shape = (most - 1, *((groups, kdim, cog) if first else (groups, cog, kdim)))
    partials = rest.pop(0).reshape(part_shape) if most > 1 else np.empty(part_shape, dtype)
    # (G, N, Cout/G, K): one sample's product each, summed over the samples of a slice
    stack = rest.pop(0).reshape(groups, n, cog, kdim) if _per_sample(out_shape, groups) else None

    def conv2d_weight_grad(x: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
        # a GEMM per group over the batch: g (Cout/G, N*Ho*Wo) @ columns^T (N*Ho*Wo, K), or its
        # transpose columns (K, N*Ho*Wo) @ g^T then a small transposing copy; with k threads each
        # multiplies its slice of the batch into its own partial, and the k partials are summed
        out_g = out.reshape(groups, cog, -1)
        whole = wt if first else out_g

        def part(i: int, s: slice) -> None:
            cs = slice(s.start * hw, s.stop * hw)
            columns.im2col(_samples(x, s, cm), cols[:, :, :, s], cm, padded, s)
            if gt is None:  # channel-major already (or one sample)
                g2 = g.reshape(groups, cog, n * hw)[:, :, cs]
            else:
                np.copyto(gt[:, s], g[s].reshape(-1, co, hw).transpose(1, 0, 2))
                g2 = gt.reshape(groups, cog, n * hw)[:, :, cs]
            dst = whole if i == 0 else partials[i - 1]
            if stack is not None:
                per = stack[:, s]
                np.matmul(g2.reshape(groups, cog, -1, hw).transpose(0, 2, 1, 3),
                          cols_g[:, :, cs].reshape(groups, kdim, -1, hw).transpose(0, 2, 3, 1), out=per)
                np.sum(per, axis=1, out=dst)
            elif first:
                np.matmul(cols_g[:, :, cs], g2.transpose(0, 2, 1), out=dst)
            else:
                np.matmul(g2, cols_g[:, :, cs].transpose(0, 2, 1), out=dst)

        k = threads.parts(n, most) if most > 1 else 1
        threads.split_in_parts(part, n, k)
        for p in partials[:k - 1]:
            np.add(whole, p, out=whole)
        if first:
            np.copyto(out_g, wt.transpose(0, 2, 1))

    return threads.splitting(conv2d_weight_grad, most > 1)


def _weight_grad_grad(c: GradContext) -> list:
    x, g = c.inputs
    return [c.apply("conv2d_input_grad", g, c.gout, x, **c.attrs), c.apply("conv2d", x, c.gout, **c.attrs)]


register(OpDef("conv2d_weight_grad", _weight_grad_shape, _weight_grad_kernel, grad=_weight_grad_grad, arity=2,
               label_attrs=LABEL, workspace=_weight_grad_workspace,
               doc="Gradient of conv2d for its weight: windows of x against the output gradient.",
               attr_schema=CONV_ATTRS))
