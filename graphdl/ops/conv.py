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
from graphdl.ops.gemm import gemm_views, has_blas, make_gemm
from graphdl.ops.window import WINDOW_ATTRS, check_image, geometry, out_hw
from graphdl.registry import ABSENT, Bool, GradContext, Ints, OpDef, fail, register, scratch

LABEL = ("kernel", "stride", "padding", "dilation", "groups")
#: Small columns are one strided copy out of a zero-padded copy of x (a 6-d view with the columns'
#: shape) instead of a few NumPy calls per kernel offset, when ``values * (1 + 14 / Wo)`` is at most
#: this: the copy costs about 0.15 + 2 / Wo ns a value (its rows are Wo long), the per-offset calls
#: about 20 us and 0.12 ns a value. Idle 2-core machine, us per-offset / strided: 1x28x28 3x3 at batch 1
#: (7,056 values) 19.6 / 2.7, at batch 8 22.3 / 12.3, at 16 26.1 / 23.0; 32x14x14 at batch 1 24.5 /
#: 18.2, at 2 30.7 / 34.4; 64x7x7 at 1 25.4 / 21.1, at 2 31.3 / 41.9. (It replaced one ``np.take``
#: through an index table, 1.6-2.4x slower than the strided copy at every size.)
STRIDED_MAX = 1 << 17
#: ``pool_blocks`` may be absent (files written before it existed hold no such attribute): a plain output.
CONV_ATTRS = {**WINDOW_ATTRS, "channel_major": Bool(False), "pool_blocks": Ints(2, default=ABSENT, low=1)}


def nchw(shape: tuple, attrs: dict[str, Any]) -> tuple:
    """An image shape as (N, C, H, W): a channel-major (C, N, H, W) one with its first two axes swapped, a
    blocked (C, N, bh, bw, H/bh, W/bw) one as the channel-major image it holds, then swapped."""
    if len(shape) == 6:
        shape = (shape[0], shape[1], shape[2] * shape[4], shape[3] * shape[5])
    return (shape[1], shape[0], *shape[2:]) if attrs.get("channel_major") and len(shape) == 4 else tuple(shape)


def _blocks(attrs: dict[str, Any]) -> tuple[int, int] | None:
    """The (bh, bw) blocks of a blocked output, or None for a plain one."""
    blocks = tuple(attrs.get("pool_blocks", (1, 1)))
    return None if blocks == (1, 1) else blocks  # type: ignore[return-value]


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


def _conv_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    x, w = nchw(shapes[0], attrs), shapes[1]
    ho, wo = _check(x, w, attrs)
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        fail(f"bias has shape {shapes[2]}, expected ({w[0]},)")
    blocks = _blocks(attrs)
    if blocks is None:
        return nchw((x[0], w[0], ho, wo), attrs)
    bh, bw = blocks
    if not attrs.get("channel_major") or ho % bh or wo % bw:
        fail(f"a blocked output needs channel_major and an output ({ho}x{wo}) that {bh}x{bw} blocks tile")
    return (w[0], x[0], bh, bw, ho // bh, wo // bw)


def _valid(out_len: int, in_len: int, k_off: int, stride: int, pad: int) -> tuple[slice, slice] | None:
    """Output positions o with 0 <= o * stride + k_off - pad < in_len, and the input positions they read."""
    lo = max(0, -(-(pad - k_off) // stride))
    hi = min(out_len, (in_len - 1 + pad - k_off) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride + k_off - pad
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1, stride)


class _Columns:
    """im2col and col2im over the whole batch, columns laid out (C, kh, kw, N, Ho, Wo).

    Row (c, i, j) holds input channel c shifted by kernel offset (i, j) for every pixel of every
    sample, so one GEMM (Cout, C*kh*kw) @ (C*kh*kw, N*Ho*Wo) convolves the batch (per group, the rows
    of a group are contiguous). Padding is never copied: for each of the kh*kw offsets the valid
    region is copied from x and the border rows and columns are zeroed. Loops run over kernel
    offsets only, never over samples or pixels.

    A stride-1 convolution whose output has the input's size ("same" padding, the common case) is
    copied in runs of whole images: offset (i, j) reads every image flattened to H*W values, shifted
    by one constant, so each copy or add has H*W-long contiguous rows instead of W-long ones (about
    three times faster in NumPy); the values a shift wraps across a row's end are then zeroed.

    Small columns (see STRIDED_MAX) are one copy from a strided 6-d view of a zero-padded
    channel-major copy of x (``padded``, workspace the kernel declares). Columns in blocked pixel order
    (``pool_blocks``) are always one copy, from an 8-d view of it: (C, kh, kw, N, bh, bw, H/bh, W/bw).
    """

    def __init__(self, x_shape: tuple, attrs: dict[str, Any]) -> None:
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
        self.ho, self.wo = out_hw(x_shape, attrs)
        self.shape = (c, kh, kw, n, self.ho, self.wo)
        self.blocks = _blocks(attrs)
        small = math.prod(self.shape) * (1 + 14 / self.wo) <= STRIDED_MAX or self.blocks is not None
        self.padded = (c, n, h + pt + pb, w + pl + pr) if small else None
        self.inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))
        self._windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (padded, columns, inside)
        self._geometry = (kh, kw, sh, sw, dh, dw)
        self.runs = None
        if (sh, sw) == (1, 1) and (self.ho, self.wo) == (h, w):
            self.runs = [self._run(i, j, i * dh - pt, j * dw - pl, h, w) for i in range(kh) for j in range(kw)]
            self.covers = next(((i, j) for i, j, shift, _, _, wrap in self.runs if shift == 0 and wrap is None), None)
            self.scatter_order = sorted(self.runs, key=lambda r: (r[0], r[1]) != self.covers)
            return
        self.offsets = []  # (i, j, output rows, output cols, input rows, input cols) or None parts
        for i in range(kh):
            for j in range(kw):
                rows, cols = _valid(self.ho, h, i * dh, sh, pt), _valid(self.wo, w, j * dw, sw, pl)
                if rows is None or cols is None:
                    self.offsets.append((i, j, None, None, None, None))
                else:
                    self.offsets.append((i, j, rows[0], cols[0], rows[1], cols[1]))
        full_h, full_w = slice(0, self.ho), slice(0, self.wo)
        # an offset whose valid region is the whole output needs no border zeroing (stride 1 centre)
        self.borders = {(i, j): self._borders(orow, ocol, full_h, full_w)
                        for i, j, orow, ocol, _, _ in self.offsets}
        # an offset reading every input position (each once) lets col2im start with a copy, not a fill
        self.covers = next(((i, j) for i, j, orow, ocol, irow, icol in self.offsets
                            if irow is not None and (irow.start, irow.stop, irow.step) == (0, h, 1)
                            and (icol.start, icol.stop, icol.step) == (0, w, 1)), None)
        self.scatter_order = sorted(self.offsets, key=lambda o: (o[0], o[1]) != self.covers)

    @staticmethod
    def _run(i: int, j: int, dy: int, dx: int, h: int, w: int) -> tuple:
        """(i, j, flat shift, first and end output position reading inside the image, wrapped columns).

        Output pixel p = y*W + x of offset (i, j) reads flat input position p + dy*W + dx; positions
        outside [0, H*W) are zero, and so are columns whose x + dx leaves the row (they would wrap)."""
        shift = dy * w + dx
        lo, hi = min(max(0, -shift), h * w), max(min(h * w, h * w - shift), 0)
        wrap = slice(0, min(-dx, w)) if dx < 0 else slice(max(w - dx, 0), w) if dx > 0 else None
        return i, j, shift, lo, max(lo, hi), wrap

    def _borders(self, orow: slice | None, ocol: slice | None, full_h: slice, full_w: slice) -> list[tuple]:
        if orow is None:
            return [(full_h, full_w)]
        out = [(slice(0, orow.start), full_w), (slice(orow.stop, self.ho), full_w),
               (orow, slice(0, ocol.start)), (orow, slice(ocol.stop, self.wo))]
        return [(r, c) for r, c in out if r.stop > r.start and c.stop > c.start]

    def windows(self, padded: np.ndarray) -> np.ndarray:
        """The columns as a read-only view of the padded (C, N, Hp, Wp) copy: value (ch, i, j, s, y, x)
        is padded[ch, s, y * sh + i * dh, x * sw + j * dw]. Made once per buffer (2.6 us, as long as
        the copy itself at batch 1)."""
        if self._windows is None or self._windows[0] is not padded:
            self._windows = (padded, self._view(padded), padded[self.inner])
        return self._windows[1]

    def _view(self, padded: np.ndarray) -> np.ndarray:
        """The strided view ``windows`` returns; blocked: (ch, i, j, s, bi, bj, y, x) reads output pixel
        (y * bh + bi, x * bw + bj)."""
        kh, kw, sh, sw, dh, dw = self._geometry
        sc, sn, sy, sx = padded.strides
        if self.blocks is None:
            shape, strides = self.shape, (sc, sy * dh, sx * dw, sn, sy * sh, sx * sw)
        else:
            bh, bw = self.blocks
            shape = (self.shape[0], kh, kw, padded.shape[1], bh, bw, self.ho // bh, self.wo // bw)
            strides = (sc, sy * dh, sx * dw, sn, sy * sh, sx * sw, sy * sh * bh, sx * sw * bw)
        return np.lib.stride_tricks.as_strided(padded, shape, strides, writeable=False)

    def im2col(self, x: np.ndarray, cols: np.ndarray, cm: bool = False, padded: np.ndarray | None = None,
               s: slice | None = None) -> None:
        """Fill ``cols`` (C, kh, kw, N, Ho, Wo) from x (N, C, H, W), or (C, N, H, W) if ``cm``; with
        ``padded`` (small columns, the whole batch) by one strided copy. Blocked columns (``pool_blocks``)
        take the pixels in blocked order, always by one copy; ``x`` and ``cols`` are then the samples
        ``s`` of the batch, and ``padded`` the whole batch's buffer (each slice uses its own samples)."""
        if self.blocks is not None:
            if s is None or (s.start or 0, s.stop) == (0, padded.shape[1]):
                windows, inner = self.windows(padded), self._windows[2]
            else:  # one thread's samples: views of its own part (the cache belongs to the whole batch)
                padded = padded[:, s]
                windows, inner = self._view(padded), padded[self.inner]
            padded.fill(0)
            np.copyto(inner, x)
            np.copyto(np.reshape(cols, windows.shape, copy=False), windows)  # a view, or it raises
            return
        if padded is not None and cols.shape == self.shape:
            windows = self.windows(padded)
            padded.fill(0)
            np.copyto(self._windows[2], x if cm else x.transpose(1, 0, 2, 3))
            np.copyto(cols, windows)
            return
        if self.runs is not None:
            c, kh, kw, n, h, w = cols.shape
            xt = x.reshape(c, n, h * w) if cm else x.reshape(n, c, h * w).transpose(1, 0, 2)
            flat = cols.reshape(c, kh, kw, n, h * w)
            for i, j, shift, lo, hi, wrap in self.runs:
                dst = flat[:, i, j]
                dst[:, :, :lo] = 0
                dst[:, :, hi:] = 0
                np.copyto(dst[:, :, lo:hi], xt[:, :, lo + shift:hi + shift])
                if wrap is not None:
                    cols[:, i, j, :, :, wrap] = 0
            return
        xt = x if cm else x.transpose(1, 0, 2, 3)
        for i, j, orow, ocol, irow, icol in self.offsets:
            dst = cols[:, i, j]
            for r, c in self.borders[i, j]:
                dst[:, :, r, c] = 0
            if orow is not None:
                np.copyto(dst[:, :, orow, ocol], xt[:, :, irow, icol])

    def col2im(self, cols: np.ndarray, out: np.ndarray, acc: np.ndarray | None = None, cm: bool = False) -> None:
        """out (N, C, H, W), or (C, N, H, W) if ``cm``, = sum over kernel offsets of the columns put back
        where they were read.

        In the same-size stride-1 case the wrapped columns of ``cols`` are zeroed first, and the sums
        go to ``acc`` (C*N*H*W values, channel-major: adding into NCHW's strided channel-major view
        is three times slower, shaped (C, N, H*W)), then to ``out`` in one transposing copy; at N=1, or
        channel-major, that view is ``out``. ``cols``, ``out`` and ``acc`` may be one batch slice of
        larger buffers."""
        if self.runs is not None:
            c, kh, kw, n, h, w = cols.shape
            flat = cols.reshape(c, kh, kw, n, h * w)
            ot = out.reshape(c, n, h * w) if cm else out.reshape(n, c, h * w).transpose(1, 0, 2)
            dst = ot if acc is None or n == 1 or cm else acc
            if self.covers is None:
                dst.fill(0)
            for i, j, shift, lo, hi, wrap in self.scatter_order:
                if wrap is not None:
                    cols[:, i, j, :, :, wrap] = 0
                view, src = dst[:, :, lo + shift:hi + shift], flat[:, i, j, :, lo:hi]
                if (i, j) == self.covers:
                    np.copyto(view, src)
                else:
                    np.add(view, src, out=view)
            if dst is not ot:
                np.copyto(ot, dst)
            return
        if self.covers is None:
            out.fill(0)
        ot = out if cm else out.transpose(1, 0, 2, 3)
        for i, j, orow, ocol, irow, icol in self.scatter_order:
            if orow is None:
                continue
            view, src = ot[:, :, irow, icol], cols[:, i, j, :, orow, ocol]
            if (i, j) == self.covers:
                np.copyto(view, src)
            else:
                np.add(view, src, out=view)


def _split(n: int, out_size: int) -> bool:
    """Whether a kernel cuts its batch of ``n`` samples into slices for threads (``out_size`` elements)."""
    return n > 1 and threads.splits(out_size)


def _conv_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    """Columns (C*kh*kw, N*Ho*Wo), and the GEMM's (Cout, N*Ho*Wo) result unless N is 1 or the output
    is channel-major (then the GEMM writes the output itself)."""
    n, co, ho, wo = nchw(out_shape, attrs)
    columns = _Columns(nchw(in_shapes[0], attrs), attrs)
    own = n > 1 and not attrs.get("channel_major")
    result = [((co * n * ho * wo,), dtype)] if own else []
    return [((math.prod(columns.shape),), dtype), *result, *_padded(columns, dtype)]


def _padded(columns: _Columns, dtype: np.dtype) -> list[tuple]:
    """The zero-padded copy of x small columns are copied from (none for larger ones)."""
    return [(columns.padded, dtype)] if columns.padded is not None else []


def _conv_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                 workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    columns = _Columns(nchw(in_shapes[0], attrs), attrs)
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
    grads = [c.apply("conv2d_input_grad", c.gout, w, x, **c.attrs), c.apply("conv2d_weight_grad", x, c.gout, **c.attrs)]
    if len(c.inputs) == 3:
        axes = (0, 2, 3) if not c.attrs.get("channel_major") else (1, 2, 3) if _blocks(c.attrs) is None else (
            1, 2, 3, 4, 5)
        grads.append(c.apply("sum", c.gout, axis=axes))
    return grads


register(OpDef("conv2d", _conv_shape, _conv_kernel, grad=_conv_grad, label_attrs=LABEL, workspace=_conv_workspace,
               doc="Cross-correlation of NCHW x with W (out, in/groups, kh, kw), plus bias per output channel "
                   "(channel_major: x and the output are (C, N, H, W)).",
               attr_schema=CONV_ATTRS))


def _input_grad_shape(shapes: tuple, attrs: dict[str, Any]) -> tuple:
    g, w, x = shapes
    expected = _conv_shape((x, w), attrs)  # x, g and the result share the layout
    if any(a is not None and b is not None and a != b for a, b in zip(g, expected)):
        fail(f"gradient {g} does not match the convolution's output {expected}")
    return x


def _input_grad_workspace(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype) -> list[tuple]:
    """Column gradients (C*kh*kw, N*Ho*Wo), and unless N is 1 one buffer for the output gradient
    channel-major, reused (once the GEMM has read it) for col2im's channel-major sums."""
    g, x = nchw(in_shapes[0], attrs), nchw(in_shapes[2], attrs)
    columns = _Columns(x, attrs)
    cols = (math.prod(columns.shape),)
    both = max(math.prod(g), math.prod(x) if columns.runs is not None else 0)
    unblocked = [((math.prod(g),), dtype)] if columns.blocks is not None else []  # g in pixel order
    return [(cols, dtype)] + ([((both,), dtype)] if g[0] > 1 and not attrs.get("channel_major") else []) + unblocked


def _input_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                       workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    g_shape, w_shape, x_shape = nchw(in_shapes[0], attrs), in_shapes[1], nchw(in_shapes[2], attrs)
    columns = _Columns(x_shape, attrs)
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
    cols = (math.prod(_Columns(x, attrs).shape),)
    transposed = [((math.prod(out_shape),), dtype)] if _columns_first(out_shape, attrs.get("groups", 1)) else []
    extra = _weight_grad_parts(attrs, in_shapes) - 1
    partials = [((extra * math.prod(out_shape),), dtype)] if extra else []
    own_gt = g[0] > 1 and not attrs.get("channel_major")
    stack = [((g[0] * math.prod(out_shape),), dtype)] if _per_sample(out_shape, attrs.get("groups", 1)) else []
    return ([(cols, dtype)] + ([((math.prod(g),), dtype)] if own_gt else []) + transposed + partials + stack
            + _padded(_Columns(x, attrs), dtype))


def _weight_grad_kernel(attrs: dict, in_shapes: tuple, out_shape: tuple, dtype: np.dtype,
                        workspace: list[np.ndarray] | None = None):
    cm = bool(attrs.get("channel_major"))
    x_shape, g_shape = nchw(in_shapes[0], attrs), nchw(in_shapes[1], attrs)
    columns = _Columns(x_shape, attrs)
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
