"""The SR evaluation protocol over a dataset: degrade, upscale, measure.

HR is cropped to a multiple of the scale (top-left kept), LR = MATLAB bicubic
``imresize(HR, 1/s)`` rounded to the HR's integer type, SR = the upscaler's output (in the
same integer type, as a saved file), then PSNR/SSIM on Y with ``s`` pixels shaved.
Dataset means are plain means over images.

With a :class:`~sr_edge.data.degrade.LrDegradation` (``--degrade jpeg:75``, ``noise:5``,
``blur:1.2``, ...) the protocol's LR is degraded further before it is upscaled (noise seeded
by the image's name), to compare models on realistic input; HR and the metrics are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.datasets import Dataset, resolve_dataset
from .data.degrade import LrDegradation
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
    degrade: str | None = None  # the LR degradation on top of the protocol's (None: clean LR)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (``psnr_rgb`` and ``degrade`` only when set)."""
        d = asdict(self)
        d["images"] = [{k: v for k, v in asdict(i).items() if v is not None} for i in self.images]
        for optional in ("psnr_rgb", "degrade"):
            if d[optional] is None:
                d.pop(optional)
        return d


def load_hr(path: Path) -> np.ndarray:
    """An HR image for evaluation: alpha dropped, grey kept as one channel."""
    colour, _ = split_alpha(read_image(path))
    return colour


def iter_pairs(
    dataset: Dataset, scale: int, degradation: LrDegradation | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) for every image of a dataset under the protocol degradation, then
    ``degradation`` on the LR (seeded by the image's name)."""
    for path in dataset.files:
        hr, lr = degrade(load_hr(path), scale, name=str(path))
        if degradation is not None:
            lr = degradation.apply(lr, key=path.stem)
        yield path.stem, hr, lr


def evaluate(
    upscaler: Upscaler,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    rgb: bool = False,
    progress: bool = False,
    degradation: LrDegradation | None = None,
) -> EvalResult:
    """Measure ``upscaler`` on every image of ``dataset`` at the upscaler's scale.

    ``dataset``: a :class:`Dataset`, a name (``"Set5"``) or folder that
    :func:`~sr_edge.data.resolve_dataset` finds, or None for the embedded samples.
    ``degradation``: applied to each protocol LR before upscaling (see
    :func:`~sr_edge.data.degrade.parse_degrade`); None or no operations: the clean protocol.
    """
    from tqdm import tqdm

    if not isinstance(dataset, Dataset):
        dataset = resolve_dataset(dataset)
    scale = upscaler.scale
    scores: list[ImageScore] = []
    if degradation is not None and not degradation.ops:
        degradation = None
    pairs = iter_pairs(dataset, scale, degradation)
    bar = tqdm(
        pairs,
        total=len(dataset),
        desc=f"{upscaler.name} {dataset.name} x{scale}" + (f" {degradation.name}" if degradation else ""),
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
        degrade=degradation.name if degradation is not None else None,
    )
