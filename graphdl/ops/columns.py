"""im2col and col2im over the whole batch for 2-d convolutions (``graphdl.ops.conv``): the columns of every
kernel offset for every pixel of every sample, laid out (C, kh, kw, N, Ho, Wo) (or in blocked pixel order
for ``pool_blocks``), and their sum back into an image."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphdl.ops.window import geometry, out_hw

#: Small columns are one strided copy out of a zero-padded copy of x (a 6-d view with the columns'
#: shape) instead of a few NumPy calls per kernel offset, when ``values * (1 + 14 / Wo)`` is at most
#: this: the copy costs about 0.15 + 2 / Wo ns a value (its rows are Wo long), the per-offset calls
#: about 20 us and 0.12 ns a value. Idle 2-core machine, us per-offset / strided: 1x28x28 3x3 at batch 1
#: (7,056 values) 19.6 / 2.7, at batch 8 22.3 / 12.3, at 16 26.1 / 23.0; 32x14x14 at batch 1 24.5 /
#: 18.2, at 2 30.7 / 34.4; 64x7x7 at 1 25.4 / 21.1, at 2 31.3 / 41.9. (It replaced one ``np.take``
#: through an index table, 1.6-2.4x slower than the strided copy at every size.)
STRIDED_MAX = 1 << 17


def blocks(attrs: dict[str, Any]) -> tuple[int, int] | None:
    """The (bh, bw) blocks of a convolution's blocked output (``pool_blocks``), or None for a plain one."""
    given = tuple(attrs.get("pool_blocks", (1, 1)))
    return None if given == (1, 1) else given  # type: ignore[return-value]


def _valid(out_len: int, in_len: int, k_off: int, stride: int, pad: int) -> tuple[slice, slice] | None:
    """Output positions o with 0 <= o * stride + k_off - pad < in_len, and the input positions they read."""
    lo = max(0, -(-(pad - k_off) // stride))
    hi = min(out_len, (in_len - 1 + pad - k_off) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride + k_off - pad
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1, stride)


class Columns:
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
        self.blocks = blocks(attrs)
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
