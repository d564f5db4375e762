"""Crops for the visual comparison sheet: one detailed box, cut from every row's output.

:func:`choose_crop` picks the box once per run (the most detailed region of the most
detailed image); :func:`prepare_crops` writes its HR reference per scale beside the
results file, and :meth:`CropSheet.write_sr` cuts the same box from a row's SR output.

The sheet also gets a degraded-input row (:data:`SHEET_DEGRADE`, a JPEG at quality 50 of
the protocol's LR, as a phone photo would be): :func:`prepare_crops` writes the degraded LR
box (what the models see), and :meth:`CropSheet.write_sr` the box of each row's output on
it beside its clean crop, named by the header's ``degraded.suffix``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Dataset
from ..data.degrade import LrDegradation, parse_degrade

CROP_ALIGN = 12  # crop boxes on multiples of 12 sit on the LR grid at x2, x3 and x4
SHEET_DEGRADE = "jpeg:50"  # the degraded-input row's LR: --degrade form (see sr_edge.data.degrade)


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


def crop_degraded_lr(spec: CropSpec, scale: int, degradation: LrDegradation) -> np.ndarray:
    """The full LR image of the box's image, degraded as ``sr-edge eval --degrade`` degrades it."""
    _, lr = crop_lr(spec, scale)
    return degradation.apply(lr, key=spec.image)


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
    degradation: LrDegradation | None = None

    def write_sr(self, row_id: str, scale: int, upscaler: Callable[[np.ndarray], np.ndarray]) -> str:
        """Upscale the box's LR image at ``scale``, write the box of the output, and return the file name.

        With a degraded-input row, the box of the output on the degraded LR is written too,
        as the returned name's stem + ``info["degraded"]["suffix"]``."""
        from ..data.io import write_image

        spec = self.spec
        box = (slice(spec.top, spec.top + spec.size), slice(spec.left, spec.left + spec.size))
        _, lr = crop_lr(spec, scale)
        name = f"{_safe(row_id)}.png"
        write_image(self.folder / name, upscaler(lr)[box])
        if self.degradation is not None:
            degraded = upscaler(crop_degraded_lr(spec, scale, self.degradation))[box]
            write_image(self.folder / f"{_safe(row_id)}{self.info['degraded']['suffix']}.png", degraded)
        return name


def prepare_crops(
    dataset: Dataset, size: int, scales: Iterable[int], out: Path, degrade: str | None = SHEET_DEGRADE
) -> CropSheet | None:
    """Choose the box on ``dataset`` and write its HR crop for each scale beside ``out`` (None: no box fits).

    ``degrade`` (a ``--degrade`` form; None: no degraded row) also writes the box of the
    degraded LR per scale, the input of the sheet's degraded-input row."""
    degradation = parse_degrade(degrade) if degrade else None
    spec = choose_crop(dataset, size)
    if spec is None:
        return None
    folder = crops_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    from ..data.io import write_image

    hr_files, inputs = {}, {}
    tag = _safe(degradation.name.replace(":", "")) if degradation else ""
    for scale in sorted(set(scales)):
        hr_crop, _ = crop_lr(spec, scale)
        name = f"hr_x{scale}.png"
        write_image(folder / name, hr_crop)
        hr_files[str(scale)] = name
        if degradation is not None:
            lr = crop_degraded_lr(spec, scale, degradation)
            t, left, n = spec.top // scale, spec.left // scale, spec.size // scale
            inputs[str(scale)] = f"input_{tag}_x{scale}.png"
            write_image(folder / inputs[str(scale)], lr[t : t + n, left : left + n])
    info: dict[str, Any] = {
        "folder": folder.name,
        "dataset": spec.dataset,
        "image": spec.image,
        "box": [spec.top, spec.left, spec.size],
        "hr": hr_files,
    }
    if degradation is not None:
        # the row's input (LR box) per scale, and the suffix of each row's output on it
        info["degraded"] = {"form": degradation.name, "input": inputs, "suffix": f"__{tag}"}
    return CropSheet(spec, folder, info, degradation)
