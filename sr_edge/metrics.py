"""PSNR and SSIM under the standard SR evaluation protocol.

Protocol (what published tables use, e.g. the RCAN/EDSR ``Evaluate_PSNR_SSIM.m`` script):
Y channel of MATLAB ``rgb2ycbcr`` on ``im2double`` images (not rounded), ``shave`` pixels
removed from every border, PSNR with peak 255, SSIM of Wang et al. (``ssim_index``):
11x11 Gaussian window with sigma 1.5, 'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255,
no downsampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data.color import rgb_to_y

_WINDOW = 11
_SIGMA = 1.5


def _gaussian_1d(size: int = _WINDOW, sigma: float = _SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


_KERNEL = _gaussian_1d()


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian filter, 'valid' region only (MATLAB ``filter2(w, x, 'valid')``)."""
    k = _KERNEL
    n = len(k)
    h, w = img.shape
    rows = sum(k[i] * img[i : h - n + 1 + i, :] for i in range(n))
    return sum(k[j] * rows[:, j : w - n + 1 + j] for j in range(n))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two arrays of the same shape (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004) of two single-channel images."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"ssim expects 2-D (single-channel) images, got shape {a.shape}")
    if min(a.shape) < _WINDOW:
        raise ValueError(f"ssim needs images of at least {_WINDOW}x{_WINDOW}, got {a.shape}")
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mu_x = _filter_valid(x)
    mu_y = _filter_valid(y)
    sxx = _filter_valid(x * x) - mu_x * mu_x
    syy = _filter_valid(y * y) - mu_y * mu_y
    sxy = _filter_valid(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels from every edge of an image."""
    if border <= 0:
        return img
    return img[border:-border, border:-border]


@dataclass(frozen=True)
class Quality:
    """PSNR/SSIM of one SR image against its HR reference."""

    psnr_y: float
    ssim_y: float
    psnr_rgb: float | None = None


def image_quality(sr: np.ndarray, hr: np.ndarray, border: int, rgb: bool = False, peak: float = 255.0) -> Quality:
    """Protocol metrics for one image pair (H x W x C arrays on a 0..``peak`` scale).

    PSNR/SSIM are computed on Y with ``border`` pixels shaved; ``rgb=True`` adds PSNR over
    all channels (same shave).
    """
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")
    y_sr = shave(rgb_to_y(sr, peak), border)
    y_hr = shave(rgb_to_y(hr, peak), border)
    scale = 255.0 / peak
    p = psnr(y_sr * scale, y_hr * scale)
    s = ssim(y_sr * scale, y_hr * scale)
    prgb = psnr(shave(sr, border), shave(hr, border), peak) if rgb else None
    return Quality(p, s, prgb)
