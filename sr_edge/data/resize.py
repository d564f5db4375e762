"""MATLAB-compatible ``imresize`` with the bicubic kernel, and ``modcrop``.

Published SR tables degrade HR images with MATLAB's ``imresize(HR, 1/s, 'bicubic')``:
cubic kernel with a = -0.5, the kernel stretched by 1/s when shrinking (antialiasing),
mirrored borders, and each dimension resized in turn (rows first). For integer images
MATLAB rounds and saturates after each pass; so do we, which is what makes our LR images
agree with the canonical ones.

Each pass is one matrix product with a dense (out x in) weight matrix, so a whole B100
image resizes in milliseconds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_INTEGER_RANGES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def _weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """The (out_len x in_len) matrix of MATLAB's ``contributions`` for one dimension."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB mirrors the border: index sequence 1..n, n..1, repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], cols.shape)
    np.add.at(matrix, (rows, cols), weights)
    matrix.setflags(write=False)
    return matrix


def _resize_dim(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    matrix = _weight_matrix(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0)
    out = np.tensordot(matrix, moved, axes=(1, 0))
    return np.moveaxis(out, 0, axis)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')``.

    ``img`` is H x W or H x W x C. Give ``scale`` (e.g. ``1/3`` or ``4``), or ``output_shape``
    (then the per-dimension scale is out/in, as MATLAB does). uint8/uint16 images are
    rounded and saturated after each pass and returned in their dtype; float images are
    resized in float64 and returned as float64.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an H x W or H x W x C array, got shape {img.shape}")
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"imresize got an empty image of shape {img.shape}")
    if output_shape is not None:
        out_h, out_w = output_shape
        scales = (out_h / h, out_w / w)
    elif scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        out_h, out_w = math.ceil(h * scale - 1e-9), math.ceil(w * scale - 1e-9)
        scales = (float(scale), float(scale))
    else:
        raise ValueError("imresize needs scale or output_shape")
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"imresize would produce an empty image from {h}x{w} at scale {scale}")

    peak = _INTEGER_RANGES.get(img.dtype)
    out = img.astype(np.float64)
    # MATLAB resizes the dimension with the smallest scale first (rows on a tie).
    order = sorted(range(2), key=lambda d: scales[d])
    sizes = (out_h, out_w)
    for axis in order:
        out = _resize_dim(out, axis, sizes[axis], scales[axis], antialias)
        if peak is not None:
            out = np.clip(np.round(out), 0, peak)
    if peak is not None:
        return out.astype(img.dtype)
    return out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of ``scale``, keeping the top-left corner."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
