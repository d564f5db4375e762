"""Training patches: HR images degraded once with the protocol's MATLAB bicubic, then
random aligned LR/HR crops with flips and 90-degree rotations.

Degrading whole images (not crops) keeps every LR patch identical to what evaluation sees.
Batches are a pure function of ``(seed, step)``: resuming at step N draws exactly the
batches an uninterrupted run would, with no RNG state to save, and several data-parallel
ranks take disjoint slices of the same global batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.color import rgb_to_y
from ..data.datasets import resolve_dataset
from ..data.io import read_image, split_alpha
from ..data.resize import imresize, modcrop
from ..errors import SrEdgeError


def training_files(names: Sequence[str], data_root: str | None = None) -> list[Path]:
    """Image files of the training folders (names resolve under ``../shared/datasets/train``)."""
    files: list[Path] = []
    for name in names:
        files.extend(resolve_dataset(name, data_root, split="train").files)
    return files


def split_validation(files: Sequence[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation): a stable split by file name hash, independent of the seed."""
    if fraction <= 0:
        return list(files), []
    ranked = sorted(files, key=lambda p: hashlib.sha1(f"{p.parent.name}/{p.name}".encode()).hexdigest())
    n_val = max(1, round(len(files) * fraction))
    if len(files) - n_val < 1:
        raise SrEdgeError(f"need at least 2 training images to hold out validation images, got {len(files)}")
    val = set(ranked[:n_val])
    return [f for f in files if f not in val], [f for f in files if f in val]


def _planes(img: np.ndarray, color_mode: str) -> np.ndarray:
    """uint8/uint16 H x W x C -> float32 C x H x W in [0, 1] in the model's colour space."""
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    if color_mode == "y":
        return (rgb_to_y(img, peak) / peak).astype(np.float32)[None]
    rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
    return (rgb.astype(np.float32) / peak).transpose(2, 0, 1).copy()


@dataclass
class _Pair:
    lr: np.ndarray  # C x h x w float32
    hr: np.ndarray  # C x sh x sw float32


class PatchSampler:
    """In-memory LR/HR pairs and deterministic batch sampling."""

    def __init__(
        self,
        files: Sequence[Path],
        scale: int,
        color_mode: str,
        patch_size: int,
        scale_augment: Sequence[float] = (1.0,),
        augment: bool = True,
        skip_small: bool = False,
    ) -> None:
        self.scale, self.patch, self.augment = scale, patch_size, augment
        hr_patch = patch_size * scale
        self.pairs: list[_Pair] = []
        self.skipped: list[str] = []
        for path in files:
            img, _ = split_alpha(read_image(path))
            h, w = img.shape[:2]
            if h < hr_patch or w < hr_patch:
                if skip_small:
                    self.skipped.append(path.name)
                    continue
                raise SrEdgeError(
                    f"{path}: image ({w}x{h}) is smaller than the HR patch ({hr_patch}x{hr_patch} = "
                    f"{patch_size} x{scale}); lower --patch-size or pass --skip-small"
                )
            for factor in scale_augment:
                scaled = img if factor == 1.0 else imresize(img, factor)
                if min(scaled.shape[:2]) < hr_patch:
                    continue  # a downscaled copy too small for a patch adds nothing
                hr = modcrop(scaled, scale)
                lr = imresize(hr, 1.0 / scale)
                self.pairs.append(_Pair(_planes(lr, color_mode), _planes(hr, color_mode)))
        if not self.pairs:
            raise SrEdgeError("no training images large enough for the patch size; lower --patch-size")
        # Sample images in proportion to the number of patch positions they offer.
        areas = np.array(
            [(p.lr.shape[1] - patch_size + 1) * (p.lr.shape[2] - patch_size + 1) for p in self.pairs], float
        )
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(
        self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``rank``-th of ``world`` equal slices of the global batch for ``step``."""
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(self.pairs), size=batch_size, p=self.weights)
        ys = rng.random(batch_size)
        xs = rng.random(batch_size)
        flips = rng.integers(0, 8, batch_size) if self.augment else np.zeros(batch_size, int)
        per_rank = batch_size // world
        lo, hi = rank * per_rank, (rank + 1) * per_rank
        p, s = self.patch, self.scale
        channels = self.pairs[0].lr.shape[0]
        lrs = np.empty((hi - lo, channels, p, p), np.float32)
        hrs = np.empty((hi - lo, channels, p * s, p * s), np.float32)
        for j, i in enumerate(range(lo, hi)):
            pair = self.pairs[idx[i]]
            h, w = pair.lr.shape[1:]
            y0, x0 = int(ys[i] * (h - p + 1)), int(xs[i] * (w - p + 1))
            lrs[j] = pair.lr[:, y0 : y0 + p, x0 : x0 + p]
            hrs[j] = pair.hr[:, y0 * s : (y0 + p) * s, x0 * s : (x0 + p) * s]
        # Flip/rotate each group of patches that share a transform at once (square patches keep
        # their shape); copying patch by patch through strided views was most of the batch time.
        ks = flips[lo:hi]
        for k in np.unique(ks):
            if k:
                sel = ks == k
                lrs[sel] = _dihedral(lrs[sel], int(k))
                hrs[sel] = _dihedral(hrs[sel], int(k))
        return lrs, hrs


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of ... x H x W patches (the last two axes)."""
    if k & 4:
        x = x.swapaxes(-1, -2)
    if k & 2:
        x = x[..., ::-1, :]
    if k & 1:
        x = x[..., ::-1]
    return np.ascontiguousarray(x)
