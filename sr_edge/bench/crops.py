"""Crops for the visual comparison sheet: one detailed box, cut from every row's output.

:func:`choose_crop` picks the box once per run (the most detailed region of the most
detailed image); :func:`prepare_crops` writes its HR reference per scale beside the
results file, and :meth:`CropSheet.write_sr` cuts the same box from a row's SR output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Dataset

CROP_ALIGN = 12  # crop boxes on multiples of 12 sit on the LR grid at x2, x3 and x4


@dataclass(frozen=True)
class CropSpec:
    """Which image and which HR box (top, left, size; multiples of 12) the sheet shows."""

    dataset: str
    image: str
    path: Path
    top: int
    left: int
    size: int


def _detail(hr: np.ndarray) -> np.ndarray:
    grey = hr.astype(np.float64).mean(axis=-1) if hr.ndim == 3 else hr.astype(np.float64)
    gy, gx = np.gradient(grey)
    return np.hypot(gx, gy)


def choose_crop(dataset: Dataset, size: int) -> CropSpec | None:
    """The most detailed ``size`` x ``size`` box (smaller if no image is that big) of the
    dataset's most detailed image.

    Detail = mean gradient magnitude: the regions where SR methods differ most.
    """
    from ..evaluate import load_hr

    images = [(path, load_hr(path)) for path in dataset.files]
    fits = [min(hr.shape[:2]) // CROP_ALIGN * CROP_ALIGN for _, hr in images]
    size = min(size, max(fits, default=0))  # small datasets: the largest aligned box that fits somewhere
    if size < CROP_ALIGN:
        return None
    best: tuple[float, CropSpec] | None = None
    for path, hr in images:
        h, w = hr.shape[:2]
        h, w = h - h % CROP_ALIGN, w - w % CROP_ALIGN
        if h < size or w < size:
            continue
        energy = _detail(hr[:h, :w])
        integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        tops = np.arange(0, h - size + 1, CROP_ALIGN)
        lefts = np.arange(0, w - size + 1, CROP_ALIGN)
        t, left = np.meshgrid(tops, lefts, indexing="ij")
        sums = integral[t + size, left + size] - integral[t, left + size] - integral[t + size, left] + integral[t, left]
        i = np.unravel_index(int(np.argmax(sums)), sums.shape)
        score = float(energy.mean())
        spec = CropSpec(dataset.name, path.stem, path, int(tops[i[0]]), int(lefts[i[1]]), size)
        if best is None or score > best[0]:
            best = (score, spec)
    return best[1] if best else None


def crop_lr(spec: CropSpec, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR crop, the full LR image) for a scale, under the evaluation protocol."""
    from ..evaluate import degrade, load_hr

    hr, lr = degrade(load_hr(spec.path), scale, spec.image)
    return hr[spec.top : spec.top + spec.size, spec.left : spec.left + spec.size], lr


def crops_folder(out: Path) -> Path:
    """The folder beside a results file that holds its crops."""
    return out.with_name(f"{out.stem}_crops")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class CropSheet:
    """A run's crops: the chosen box, the folder they are written to, and the results header's entry."""

    spec: CropSpec
    folder: Path
    info: dict[str, Any]

    def write_sr(self, row_id: str, scale: int, upscaler: Callable[[np.ndarray], np.ndarray]) -> str:
        """Upscale the box's LR image at ``scale``, write the box of the output, and return the file name."""
        from ..data.io import write_image

        spec = self.spec
        _, lr = crop_lr(spec, scale)
        sr = upscaler(lr)[spec.top : spec.top + spec.size, spec.left : spec.left + spec.size]
        name = f"{_safe(row_id)}.png"
        write_image(self.folder / name, sr)
        return name


def prepare_crops(dataset: Dataset, size: int, scales: Iterable[int], out: Path) -> CropSheet | None:
    """Choose the box on ``dataset`` and write its HR crop for each scale beside ``out`` (None: no box fits)."""
    spec = choose_crop(dataset, size)
    if spec is None:
        return None
    folder = crops_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    from ..data.io import write_image

    hr_files = {}
    for scale in sorted(set(scales)):
        hr_crop, _ = crop_lr(spec, scale)
        name = f"hr_x{scale}.png"
        write_image(folder / name, hr_crop)
        hr_files[str(scale)] = name
    info = {
        "folder": folder.name,
        "dataset": spec.dataset,
        "image": spec.image,
        "box": [spec.top, spec.left, spec.size],
        "hr": hr_files,
    }
    return CropSheet(spec, folder, info)
