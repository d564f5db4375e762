"""The SR evaluation protocol over a dataset: degrade, upscale, measure.

HR is cropped to a multiple of the scale (top-left kept), LR = MATLAB bicubic
``imresize(HR, 1/s)`` rounded to the HR's integer type, SR = the upscaler's output (in the
same integer type, as a saved file), then PSNR/SSIM on Y with ``s`` pixels shaved.
Dataset means are plain means over images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.datasets import Dataset, resolve_dataset
from .data.io import read_image, split_alpha
from .data.resize import imresize, modcrop
from .errors import SrEdgeError
from .metrics import image_quality
from .upscale import Upscaler, check_scale

_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def degrade(hr: np.ndarray, scale: int, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of ``scale``, its MATLAB-bicubic LR)."""
    check_scale(scale)
    h, w = hr.shape[:2]
    if h < scale or w < scale:
        raise SrEdgeError(f"{name}: image ({w}x{h}) is smaller than the scale {scale}")
    hr = modcrop(hr, scale)
    return hr, imresize(hr, 1.0 / scale)


@dataclass(frozen=True)
class ImageScore:
    """Quality of one image."""

    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float | None = None


@dataclass(frozen=True)
class EvalResult:
    """Quality of one upscaler on one dataset at one scale."""

    model: str
    dataset: str
    scale: int
    psnr_y: float
    ssim_y: float
    images: tuple[ImageScore, ...] = field(default_factory=tuple)
    psnr_rgb: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (``psnr_rgb`` only when it was computed)."""
        d = asdict(self)
        d["images"] = [{k: v for k, v in asdict(i).items() if v is not None} for i in self.images]
        if self.psnr_rgb is None:
            d.pop("psnr_rgb")
        return d


def load_hr(path: Path) -> np.ndarray:
    """An HR image for evaluation: alpha dropped, grey kept as one channel."""
    colour, _ = split_alpha(read_image(path))
    return colour


def iter_pairs(dataset: Dataset, scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) for every image of a dataset under the protocol degradation."""
    for path in dataset.files:
        hr, lr = degrade(load_hr(path), scale, name=str(path))
        yield path.stem, hr, lr


def evaluate(
    upscaler: Upscaler,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    rgb: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Measure ``upscaler`` on every image of ``dataset`` at the upscaler's scale.

    ``dataset``: a :class:`Dataset`, a name (``"Set5"``) or folder that
    :func:`~sr_edge.data.resolve_dataset` finds, or None for the embedded samples.
    """
    from tqdm import tqdm

    if not isinstance(dataset, Dataset):
        dataset = resolve_dataset(dataset)
    scale = upscaler.scale
    scores: list[ImageScore] = []
    pairs = iter_pairs(dataset, scale)
    bar = tqdm(
        pairs,
        total=len(dataset),
        desc=f"{upscaler.name} {dataset.name} x{scale}",
        disable=None if progress else True,
        leave=False,
    )
    for name, hr, lr in bar:
        if min(hr.shape[:2]) - 2 * scale < 11:
            raise SrEdgeError(f"{name}: image ({hr.shape[1]}x{hr.shape[0]}) is too small to evaluate at x{scale}")
        sr = upscaler(lr)
        if sr.shape != hr.shape:
            raise SrEdgeError(f"{upscaler.name}: output shape {sr.shape} for {name}, expected {hr.shape}")
        q = image_quality(sr, hr, border=scale, rgb=rgb, peak=_PEAKS.get(hr.dtype, 255.0))
        scores.append(ImageScore(name, q.psnr_y, q.ssim_y, q.psnr_rgb))
    return EvalResult(
        model=upscaler.name,
        dataset=dataset.name,
        scale=scale,
        psnr_y=float(np.mean([s.psnr_y for s in scores])),
        ssim_y=float(np.mean([s.ssim_y for s in scores])),
        images=tuple(scores),
        psnr_rgb=float(np.mean([s.psnr_rgb for s in scores if s.psnr_rgb is not None])) if rgb else None,
    )
