"""MATLAB-compatible colour conversions (BT.601 ``rgb2ycbcr``, studio range 16-235).

Every published SR table computes PSNR/SSIM on the Y channel of MATLAB's ``rgb2ycbcr``
applied to ``im2double`` images, i.e. without rounding Y. The functions here work on
float arrays on the 0-255 scale (or 0-1, see ``scale``) and never round.
"""

from __future__ import annotations

import numpy as np

# MATLAB rgb2ycbcr, for R, G, B in [0, 1]: [Y Cb Cr] = OFFSET + MATRIX @ [R G B] (on 0-255).
_MATRIX = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_INVERSE = np.linalg.inv(_MATRIX)


def rgb_to_y(rgb: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for an H x W x 3 (or H x W x 1 greyscale) image.

    ``rgb`` holds values on a 0..``peak`` scale; the result is float64 on the same scale
    (16..235 for ``peak=255``). A greyscale image is its own Y, unconverted: that is what
    the published evaluation scripts do (Set14's ``bridge``), and it reproduces their
    bicubic numbers, where converting grey as R = G = B is 0.09 dB off on Set14.
    """
    x = np.asarray(rgb, dtype=np.float64)
    if x.ndim == 2:
        return x
    if x.shape[-1] == 1:
        return x[..., 0]
    x = x / peak
    if x.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects 1 or 3 channels, got {x.shape[-1]}")
    return (16.0 + x @ _MATRIX[0]) * (peak / 255.0)


def _float(x: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    dtype = np.dtype(np.float32) if np.asarray(x).dtype == np.float32 else np.dtype(np.float64)
    return np.asarray(x, dtype=dtype), dtype


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full ``rgb2ycbcr`` on float images in [0, 1]; returns YCbCr in [0, 1] (studio range).

    float32 in gives float32 out (the deployment path); anything else is computed in float64.
    """
    x, dtype = _float(rgb)
    return (x @ (_MATRIX.T / 255.0).astype(dtype)) + (_OFFSET / 255.0).astype(dtype)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``); float in, float out, unclipped."""
    x, dtype = _float(ycbcr)
    return (x - (_OFFSET / 255.0).astype(dtype)) @ (_INVERSE.T * 255.0).astype(dtype)


def ycbcr_planes_to_image(
    y: np.ndarray, cb: np.ndarray, cr: np.ndarray, peak: float | None, dtype: np.dtype, workers: int = 1
) -> np.ndarray:
    """float32 H x W planes (Y, Cb, Cr in [0, 1]) -> H x W x 3 RGB of ``dtype``, in one step.

    The deployment path of Y-channel models: :func:`ycbcr_to_rgb`, then scaling to
    ``peak`` with rounding (integer ``dtype``) or not (``peak=None``, float), and clipping.
    It works in row blocks that stay in the CPU's L2 cache, with the scaling folded into the
    matrix, instead of full-frame H x W x 3 passes over memory. Equal to that formula up to
    float32 rounding (tests/test_metrics.py). ``workers`` threads take a share of the rows
    each; every pixel is computed the same way, so the result does not depend on it.
    """
    from .threads import map_threads

    hi = float(peak) if peak is not None else 1.0
    m = (_INVERSE * 255.0 * hi).astype(np.float32)  # rows R, G, B; columns Y, Cb, Cr
    bias = (-(m.astype(np.float64) @ (_OFFSET / 255.0))).astype(np.float32)
    h, w = y.shape
    out = np.empty((h, w, 3), dtype=dtype)
    rows = max(1, (1 << 16) // max(w, 1))  # 64K pixels: 256 KB per float32 block
    share = max(1, -(-h // max(1, workers)))

    def convert(first: int) -> None:
        last = min(h, first + share)
        acc = np.empty((min(rows, last - first), w), np.float32)
        tmp = np.empty_like(acc)
        for r0 in range(first, last, rows):
            r1 = min(last, r0 + rows)
            a, t = acc[: r1 - r0], tmp[: r1 - r0]
            planes = (y[r0:r1], cb[r0:r1], cr[r0:r1])
            for c in range(3):
                np.multiply(planes[0], m[c, 0], out=a)
                for k in (1, 2):
                    np.multiply(planes[k], m[c, k], out=t)
                    a += t
                a += bias[c]
                if peak is not None:
                    np.rint(a, out=a)
                np.clip(a, 0.0, hi, out=a)
                out[r0:r1, :, c] = a

    map_threads(convert, range(0, h, share), workers)
    return out
