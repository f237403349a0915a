"""Sliding windows over NCHW images, shared by convolution and pooling.

Attributes are normalised pairs: ``kernel (kh, kw)``, ``stride (sh, sw)``, ``dilation (dh, dw)`` and
``padding (top, bottom, left, right)``. Windows are strided views of a padded copy (no Python loop
over the batch or pixels); scattering back ("col2im") loops only over the kh * kw kernel offsets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from graphdl.attrs import Int, Ints
from graphdl.ir import Shape
from graphdl.registry import fail

#: Attributes of every window op (convolution and pooling), normalised pairs as above.
WINDOW_ATTRS = {"kernel": Ints(2, low=1), "stride": Ints(2, default=(1, 1), low=1),
                "dilation": Ints(2, default=(1, 1), low=1), "padding": Ints(4, default=(0, 0, 0, 0), low=0),
                "groups": Int(1, low=1)}



def geometry(attrs: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """(kernel, stride, dilation, padding) from a node's attributes."""
    kernel = tuple(attrs["kernel"])
    stride = tuple(attrs.get("stride", (1, 1)))
    dilation = tuple(attrs.get("dilation", (1, 1)))
    padding = tuple(attrs.get("padding", (0, 0, 0, 0)))
    return kernel, stride, dilation, padding  # type: ignore[return-value]


def out_hw(x: Shape, attrs: dict[str, Any]) -> tuple[int, int]:
    """Output height and width of a window op over the (N, C, H, W) shape ``x``."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = geometry(attrs)
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0:
        fail(f"kernel {(kh, kw)}, stride {(sh, sw)} and dilation {(dh, dw)} must be >= 1 and padding "
             f"{(pt, pb, pl, pr)} >= 0")
    h, w = x[2], x[3]
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        fail(f"a {h}x{w} input padded by {(pt, pb, pl, pr)} is smaller than the {kh}x{kw} kernel "
             f"(dilation {(dh, dw)})", "pad the input, or use a smaller kernel or fewer pooling layers")
    return ho, wo


def check_image(x: Shape, what: str) -> None:
    if len(x) != 4 or x[2] is None or x[3] is None:
        fail(f"{what} needs a 4-d (batch, channels, height, width) input with known height and width, got {x}",
             "reshape the input to NCHW, e.g. (-1, 1, 8, 8)")


def padded_shape(shape: tuple[int, ...], padding: tuple[int, ...]) -> tuple[int, int, int, int]:
    n, c, h, w = shape
    pt, pb, pl, pr = padding
    return (n, c, h + pt + pb, w + pl + pr)


class Padded:
    """A padded copy of an (N, C, H, W) array in a given buffer (planned workspace, shared with other
    steps, so the border is rewritten with ``fill`` on every load, strip by strip)."""

    def __init__(self, shape: tuple[int, ...], padding: tuple[int, ...], buf: np.ndarray | None,
                 fill: float = 0.0) -> None:
        _, _, h, w = shape
        pt, pb, pl, pr = padding
        self.any = any(padding)
        self.buf, self.fill = buf, fill
        self.inner = (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))
        rows, cols = slice(pt, pt + h), slice(None)
        self.border = [(slice(0, pt), cols), (slice(pt + h, pt + h + pb), cols),
                       (rows, slice(0, pl)), (rows, slice(pl + w, pl + w + pr))]

    def load(self, x: np.ndarray, batch: slice = slice(None)) -> np.ndarray:
        """The padded version of ``x`` (``x`` itself when there is no padding); ``x`` may be the
        ``batch`` slice of the samples, padded into that slice of the buffer."""
        if not self.any:
            return x
        buf = self.buf[batch]
        for r, c in self.border:
            buf[:, :, r, c] = self.fill
        buf[self.inner] = x
        return buf


def windows(xp: np.ndarray, attrs: dict[str, Any], out_hw_: tuple[int, int], groups: int = 1) -> np.ndarray:
    """Read-only view (N, G, C/G, Ho, Wo, kh, kw) of the windows of the padded array ``xp``."""
    (kh, kw), (sh, sw), (dh, dw), _ = geometry(attrs)
    n, c = xp.shape[:2]
    s_n, s_c, s_h, s_w = xp.strides
    ho, wo = out_hw_
    return as_strided(xp, (n, groups, c // groups, ho, wo, kh, kw),
                      (s_n, s_c * (c // groups), s_c, s_h * sh, s_w * sw, s_h * dh, s_w * dw), writeable=False)


def offset_slices(attrs: dict[str, Any], out_hw_: tuple[int, int]) -> list[tuple[int, int, tuple]]:
    """For each kernel offset (i, j), the index of the padded-input positions it touches, (Ho, Wo) of them."""
    (kh, kw), (sh, sw), (dh, dw), _ = geometry(attrs)
    ho, wo = out_hw_
    return [(i, j, (slice(None), slice(None), slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                    slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)))
            for i in range(kh) for j in range(kw)]


class Tiles:
    """Windows that tile the image (stride == kernel, no dilation): each kernel offset's (N, C, Ho, Wo)
    values moved between the image and a contiguous plane in two long-loop copies instead of one
    ufunc pass with a 4-d strided view (whose inner loop is one short output row: ~8 ns of overhead
    per row of Wo values, more than the work at Wo = 7 or 14).

    Kernel row ``i`` of the windows of output row ``o`` is one run of ``kw * Wo`` values in image row
    ``kh * o + i``; these runs, read as single opaque (void) items, move in one copy into a contiguous
    ``rows`` buffer (N, C, Ho, kw * Wo), where offset (i, j) is the flat slice ``j::kw`` (a 1-d strided
    copy: one tight loop). Used by max pooling's argmax scan and its gradient.
    """

    def __init__(self, attrs: dict[str, Any], out_hw_: tuple[int, int]) -> None:
        (self.kh, self.kw), _, _, _ = geometry(attrs)
        self.ho, self.wo = out_hw_

    #: Widest output (Wo) the two-copy path is used for. Measured (one thread, 2x2/2, float32, interleaved
    #: A/B against one strided copy per offset): train scan / gradient 0.75 / 0.72 of the time at Wo = 4,
    #: 0.76 / 0.79 at 7, 0.96 / 1.00 at 10, 0.98 / 1.06 at 14 and 1.07 / 1.09 at 28 (the extra pass
    #: through ``rows`` costs more than the row overhead it saves once rows are long).
    MAX_WO = 8
    #: Fewest output values it is used for: its extra calls cost more than they save on small outputs
    #: (inference maxima / gradient at Wo = 7: 1.61 / 1.39 of the time at 3136 values, 1.10 / 1.07 at
    #: 12544, 0.89 / 0.89 at 50176).
    MIN_SIZE = 1 << 15

    @staticmethod
    def fit(attrs: dict[str, Any], pooled: tuple) -> bool:
        """Whether windows of these attributes tile the image (stride == kernel, no dilation), with output
        rows short enough and an (N, C, Ho, Wo) output large enough for the two copies to pay."""
        kernel, stride, dilation, _ = geometry(attrs)
        return (stride == kernel and dilation == (1, 1) and pooled[3] <= Tiles.MAX_WO
                and math.prod(pooled) >= Tiles.MIN_SIZE)

    @classmethod
    def fitting(cls, attrs: dict[str, Any], pooled: tuple) -> Tiles | None:
        """The tiles of these windows for an (N, C, Ho, Wo) output if they ``fit``, else None."""
        return cls(attrs, pooled[2:]) if cls.fit(attrs, pooled) else None

    def rows_shape(self, pooled: tuple) -> tuple:
        """Shape of the ``rows`` buffer for an (N, C, Ho, Wo) pooled shape."""
        return (*pooled[:2], self.ho, self.kw * self.wo)

    @staticmethod
    def fits(image: np.ndarray) -> bool:
        """Whether ``image``'s rows are contiguous (else, e.g. a transposed last axis, callers take the
        per-offset path)."""
        return image.strides[3] == image.itemsize

    def _runs(self, image: np.ndarray, i: int) -> np.ndarray:
        """The kernel-row-``i`` runs of ``image`` (N, C, H, W) as (N, C, Ho, 1) void items."""
        runs = image[:, :, i:i + self.kh * (self.ho - 1) + 1:self.kh, :self.kw * self.wo]
        return runs.view(np.dtype((np.void, self.kw * self.wo * image.itemsize)))

    def load(self, image: np.ndarray, i: int, rows: np.ndarray) -> None:
        """Kernel row ``i`` of every window of ``image`` into ``rows``."""
        np.copyto(rows.view(np.dtype((np.void, rows.shape[3] * rows.itemsize))), self._runs(image, i))

    def store(self, rows: np.ndarray, image: np.ndarray, i: int) -> None:
        """``rows`` back into kernel row ``i`` of every window of ``image`` (the inverse of ``load``)."""
        np.copyto(self._runs(image, i), rows.view(np.dtype((np.void, rows.shape[3] * rows.itemsize))))

    def plane(self, rows: np.ndarray, j: int) -> np.ndarray:
        """Offset (i, j)'s (N, C, Ho, Wo) values in ``rows`` (holding kernel row i), a writable view."""
        return rows.reshape(-1)[j::self.kw].reshape(*rows.shape[:3], self.wo)


def offset_views(xp: np.ndarray, offsets: list[tuple[int, int, tuple]], tiles: Tiles | None,
                 rows: np.ndarray | None) -> Iterator[np.ndarray]:
    """Each kernel offset's (N, C, Ho, Wo) values of the padded image ``xp`` (``offsets`` from
    ``offset_slices``), in scan order, as views one copy reads quickly: through ``rows`` when ``tiles``
    are given and fit ``xp`` (read each view before asking for the next: the next kernel row
    overwrites ``rows``)."""
    if tiles is None or not tiles.fits(xp):
        yield from (xp[index] for _, _, index in offsets)
        return
    for i in range(tiles.kh):
        tiles.load(xp, i, rows)
        yield from (tiles.plane(rows, j) for j in range(tiles.kw))
