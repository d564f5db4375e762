"""Tiled upscaling without seams: overlapping tiles, cropped, stitched into row bands.

An output pixel of a convolutional SR network reads the LR pixels within its receptive
field (:attr:`~sr_edge.bundle.Bundle.receptive_field`, in LR pixels) of its own LR pixel;
the bicubic work around the network (a Y model's chroma, alpha, the bicubic baseline)
reads :data:`~sr_edge.upscale.BICUBIC_REACH`. So each tile is run on its interior plus an
overlap of the larger of the two on every side that is not an image border, and only the
interior's output is kept: every kept pixel then sees exactly the pixels (and the same
zero padding or mirrored border at the image's edges) that it sees in the whole image, and
the stitched result equals the whole-image result up to float rounding.

Tiles are produced a row of tiles at a time (:func:`tile_bands`), so a caller can stream
the output to a file (:func:`sr_edge.data.io.write_image_bands`) and hold one band of the
output, not all of it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import SrEdgeError
from ..upscale import BICUBIC_REACH, Upscaler, upscale_image

MIN_TILE = 8  # smaller tiles are all overlap


def split(length: int, tile: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges that cover ``length`` in as few pieces of at most ``tile`` as
    possible, of near-equal size (so no sliver of a last tile costs a whole overlap)."""
    if length < 1:
        raise ValueError(f"cannot split a length of {length}")
    if tile <= 0 or tile >= length:
        return [(0, length)]
    n = math.ceil(length / tile)
    bounds = [round(i * length / n) for i in range(n + 1)]
    return list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class Tile:
    """One tile: its interior ``[y0, y1) x [x0, x1)`` and the window read for it (the interior
    grown by the overlap, clipped at the image borders), in LR pixels."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: int
    bottom: int
    left: int
    right: int


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[list[Tile]]:
    """Rows of tiles covering a ``height`` x ``width`` image (``tile`` 0: one tile)."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    rows = []
    for y0, y1 in split(height, tile):
        row = []
        for x0, x1 in split(width, tile):
            row.append(
                Tile(
                    y0, y1, x0, x1,
                    max(0, y0 - overlap), min(height, y1 + overlap), max(0, x0 - overlap), min(width, x1 + overlap),
                )
            )  # fmt: skip
        rows.append(row)
    return rows


def tile_overlap(upscaler: Upscaler) -> int | None:
    """The overlap exact tiling needs for ``upscaler`` (None: its receptive field is unknown)."""
    field = getattr(upscaler, "receptive_field", None)
    if field is None:
        return None
    return max(int(field), BICUBIC_REACH)


def resolve_overlap(upscaler: Upscaler, overlap: int | None) -> int:
    """``overlap`` if given, else the upscaler's own; one-line error where it is unknown."""
    if overlap is not None:
        if overlap < 0:
            raise SrEdgeError(f"tile overlap must be >= 0, got {overlap}")
        return overlap
    found = tile_overlap(upscaler)
    if found is None:
        raise SrEdgeError(
            f"{upscaler.name}: its receptive field is unknown (the graph holds an operation of unknown reach), "
            "so tiles would show seams; use --tile 0 (whole image)"
        )
    return found


def tile_bands(
    upscaler: Upscaler,
    img: np.ndarray,
    tile: int,
    overlap: int | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Upscale ``img`` (H x W x C, alpha kept) tile by tile; yield the output in row bands.

    ``tile``: the side of a tile's interior in LR pixels (0: the whole image at once).
    ``overlap``: LR pixels read beyond each interior edge (default: the upscaler's
    receptive field or the bicubic reach, whichever is larger). ``on_tile(n)`` is called
    after every tile with the number of tiles done.
    """
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    s = upscaler.scale
    if tile <= 0 or (tile >= h and tile >= w):
        out = upscale_image(upscaler, img)
        if on_tile is not None:
            on_tile(1)
        yield out
        return
    margin = resolve_overlap(upscaler, overlap)
    done = 0
    for row in tile_grid(h, w, tile, margin):
        first = row[0]
        band: np.ndarray | None = None
        for t in row:
            out = upscale_image(upscaler, img[t.top : t.bottom, t.left : t.right])
            if band is None:
                band = np.empty((s * (first.y1 - first.y0), s * w, out.shape[-1]), out.dtype)
            oy, ox = s * (t.y0 - t.top), s * (t.x0 - t.left)
            band[:, s * t.x0 : s * t.x1] = out[oy : oy + s * (t.y1 - t.y0), ox : ox + s * (t.x1 - t.x0)]
            done += 1
            if on_tile is not None:
                on_tile(done)
        assert band is not None
        yield band


def count_tiles(height: int, width: int, tile: int) -> int:
    """How many tiles :func:`tile_bands` runs for an image of this size."""
    if tile <= 0 or (tile >= height and tile >= width):
        return 1
    return len(split(height, tile)) * len(split(width, tile))


def upscale_tiled(upscaler: Upscaler, img: np.ndarray, tile: int, overlap: int | None = None) -> np.ndarray:
    """:func:`tile_bands` stitched into one array: equal to ``upscale_image(upscaler, img)``
    up to float rounding, with peak working memory set by ``tile``, not by the image."""
    bands = tile_bands(upscaler, img, tile, overlap)
    first = next(bands)
    h = img.shape[0] * upscaler.scale
    if first.shape[0] == h:
        return first
    out = np.empty((h, *first.shape[1:]), first.dtype)
    out[: first.shape[0]] = first
    row = first.shape[0]
    for band in bands:
        out[row : row + band.shape[0]] = band
        row += band.shape[0]
    return out
