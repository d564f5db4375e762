"""One image file in, one out: decoded once, upscaled tile by tile, streamed to its file.

The decoded input (its own integer type) is the one full-size array held; the output
arrives in row bands that a PNG encoder takes as they come (other formats are assembled
in the output's integer type, never in float), and inference runs on a thread of its own
so the encoder's deflate overlaps it. The file appears under its name only when complete
(temp file + rename), so an interrupted run leaves no half-written image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..data.io import read_image, write_image_bands
from ..errors import SrEdgeError
from .auto import OpenedModel, auto_tile
from .pipeline import Prefetch
from .tiling import count_tiles, tile_bands, tile_overlap

TileSetting = int | Literal["auto"]


@dataclass(frozen=True)
class ImageResult:
    """What :func:`upscale_file` wrote: the output's (height, width, channels) and the tiling used."""

    src: Path
    dst: Path
    shape: tuple[int, int, int]
    tile: int
    tiles: int
    overlap: int


def choose_tile(tile: TileSetting, img: np.ndarray, model: OpenedModel, budget_mb: float) -> int:
    """The tile side for ``img``: ``tile`` itself, or under ``auto`` the largest that fits the
    memory budget (0, the whole image, where it fits or where exact tiles are impossible)."""
    if tile != "auto":
        return int(tile)
    overlap = tile_overlap(model.upscaler)
    if overlap is None:
        return 0
    h, w = img.shape[:2]
    c = img.shape[2] if img.ndim == 3 else 1
    return auto_tile(h, w, c, img.dtype.itemsize, model, overlap, budget_mb)


def upscale_file(
    model: OpenedModel,
    src: Path,
    dst: Path,
    tile: TileSetting = "auto",
    budget_mb: float = 2048.0,
    on_tiles: Callable[[int, int], None] | None = None,
) -> ImageResult:
    """Upscale the image file ``src`` into ``dst`` (format from its suffix, alpha kept).

    ``on_tiles(done, total)`` follows the tiles of one image (a progress bar for large ones).
    """
    img = read_image(src)
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    side = choose_tile(tile, img, model, budget_mb)
    total = count_tiles(h, w, side)
    s = model.scale
    if not dst.parent.is_dir():
        raise SrEdgeError(f"{dst}: folder {dst.parent} does not exist")

    def progress(done: int) -> None:
        if on_tiles is not None:
            on_tiles(done, total)

    bands = tile_bands(model.upscaler, img, side, on_tile=progress)
    with Prefetch(bands, depth=1, name="upscale") as ahead:
        write_image_bands(dst, s * h, s * w, c, img.dtype, ahead)
    overlap = tile_overlap(model.upscaler) if total > 1 else 0
    return ImageResult(src, dst, (s * h, s * w, c), side, total, overlap or 0)
