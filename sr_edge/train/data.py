"""Training patches: HR images degraded once with the protocol's MATLAB bicubic, then
random aligned LR/HR crops with flips and 90-degree rotations; or, with a
:class:`~sr_edge.data.degrade.DegradationConfig` (``--degradation realistic``), a random
realistic degradation (blur, resampler, noise, JPEG) drawn for every patch.

Degrading whole images (not crops) keeps every LR patch identical to what evaluation sees.
Batches are a pure function of ``(seed, step)``: resuming at step N draws exactly the
batches an uninterrupted run would, with no RNG state to save, and several data-parallel
ranks take disjoint slices of the same global batch. A realistic patch draws its
degradation from its own generator keyed by ``(seed, step, its index in the global
batch)``, so it too is the same on resume and whatever the number of ranks.

Realistic patches stay cheap, so that the model, not the data, sets the pace:

- each training image is downsampled once per resampler at start-up, so a tile without
  blur before downsampling (most of them) is cut from those and only noise and JPEG run on
  its LR box; only a tile that blurs at HR (or resizes to an intermediate size for a second
  round) degrades its HR box, with a margin of context that is cut away afterwards;
- degradation is done per *tile* (2 x the patch side), not per patch: every
  ``POOL_CHUNK`` steps a pool of tiles, each with its own random degradation, is made from
  ``(seed, chunk)``, and each step's patches are random crops of random tiles of the pool
  (a tile serves about ``POOL_REUSE_PER_SCALE`` x scale patches). The Python overhead of a degradation is
  paid once per tile, and a pool is a pure function of ``(seed, chunk)``, so a run resumed
  mid-chunk rebuilds the same pool: resume stays exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.color import rgb_to_y
from ..data.datasets import resolve_dataset
from ..data.degrade import DegradationConfig, plan_degradation, resize, to_uint8
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


@dataclass
class _Source:
    """A training image for realistic degradation: HR and its downsampling by each resampler."""

    hr: np.ndarray  # sh x sw x C uint8
    lr: dict[str, np.ndarray]  # resampler -> h x w x C uint8 (bicubic: the protocol's LR)

    @property
    def lr_shape(self) -> tuple[int, int]:
        return self.lr["bicubic"].shape[:2]


# The stream of a pool's generators, apart from the batch's own ``(seed, step)``.
_DEGRADE_STREAM = 0x5EDE
POOL_CHUNK = 50  # steps served by one pool of degraded tiles
# Patches cut from each tile, on average: 4 x the scale, since a tile's HR (what blur and
# resampling work on) grows with the scale's square while the patches it offers do not.
POOL_REUSE_PER_SCALE = 4
TILE_FACTOR = 2  # tile side / patch side


@dataclass
class _Tile:
    lr: np.ndarray  # C x th x tw float32, degraded
    hr: np.ndarray  # C x s*th x s*tw float32


def _downsampled(hr: np.ndarray, scale: int, methods: Sequence[str]) -> dict[str, np.ndarray]:
    lr_shape = (hr.shape[0] // scale, hr.shape[1] // scale)
    out = {"bicubic": imresize(hr, 1.0 / scale)}  # uint8 in, uint8 out: the protocol's LR
    for m in methods:
        if m not in out:
            out[m] = to_uint8(resize(hr, lr_shape, m))
    return {k: v if v.ndim == 3 else v[..., None] for k, v in out.items()}


def _mirror_index(start: int, stop: int, n: int) -> np.ndarray | slice:
    """Indices start..stop-1 into a length-``n`` axis, mirrored (edge repeated) outside it
    (a slice where the range lies inside: no copy)."""
    if 0 <= start and stop <= n:
        return slice(start, stop)
    idx = np.mod(np.arange(start, stop), 2 * n)
    return np.where(idx < n, idx, 2 * n - 1 - idx)


def _box(img: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
    return img[rows][:, cols]


# MATLAB rgb2ycbcr's Y row (as sr_edge.data.color), in float32 for the tiles of realistic training
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float32) / np.float32(255.0 * 255.0)
_Y_OFFSET = np.float32(16.0 / 255.0)


def _planes_fast(img: np.ndarray, color_mode: str) -> np.ndarray:
    """:func:`_planes` of a uint8 image in float32 arithmetic (within ~1e-7 of it): the
    float64 conversion was the largest single cost of a degraded tile."""
    if color_mode == "y" and img.shape[-1] == 3:
        return (img.astype(np.float32) @ _Y_WEIGHTS + _Y_OFFSET)[None]
    return _planes(img, color_mode)


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
        degradation: DegradationConfig | None = None,
    ) -> None:
        self.scale, self.patch, self.augment = scale, patch_size, augment
        self.color_mode, self.degradation = color_mode, degradation
        hr_patch = patch_size * scale
        self.pairs: list[_Pair] = []
        self.sources: list[_Source] = []
        self.skipped: list[str] = []
        methods = [m for m, w in zip(*self._resamplers(), strict=True) if w > 0] if degradation else []
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
                hr = np.ascontiguousarray(modcrop(scaled, scale))
                if degradation is not None:
                    self.sources.append(
                        _Source(hr if hr.ndim == 3 else hr[..., None], _downsampled(hr, scale, methods))
                    )
                    continue
                lr = imresize(hr, 1.0 / scale)
                self.pairs.append(_Pair(_planes(lr, color_mode), _planes(hr, color_mode)))
        if not self.pairs and not self.sources:
            raise SrEdgeError("no training images large enough for the patch size; lower --patch-size")
        # Sample images in proportion to the number of patch positions they offer.
        shapes = [s.lr_shape for s in self.sources] if degradation else [p.lr.shape[1:] for p in self.pairs]
        areas = np.array([(h - patch_size + 1) * (w - patch_size + 1) for h, w in shapes], float)
        self.weights = areas / areas.sum()
        self._channels = 1 if color_mode == "y" else 3
        self._pool: tuple[tuple[int, int, int], list[_Tile]] | None = None  # ((seed, chunk, batch), tiles)

    def _resamplers(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        assert self.degradation is not None
        return self.degradation.resize.methods, self.degradation.resize.weights

    def __len__(self) -> int:
        return len(self.sources) if self.degradation is not None else len(self.pairs)

    def batch(
        self, seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``rank``-th of ``world`` equal slices of the global batch for ``step``."""
        rng = np.random.default_rng([seed, step])
        if self.degradation is None:
            idx = rng.choice(len(self), size=batch_size, p=self.weights)
        else:  # a tile of the chunk's pool (the pool drew its images by area)
            idx = rng.integers(0, 1 << 30, size=batch_size)
        ys = rng.random(batch_size)
        xs = rng.random(batch_size)
        flips = rng.integers(0, 8, batch_size) if self.augment else np.zeros(batch_size, int)
        per_rank = batch_size // world
        lo, hi = rank * per_rank, (rank + 1) * per_rank
        p, s = self.patch, self.scale
        channels = self._channels
        lrs = np.empty((hi - lo, channels, p, p), np.float32)
        hrs = np.empty((hi - lo, channels, p * s, p * s), np.float32)
        tiles = self.pool(seed, step // POOL_CHUNK, batch_size) if self.degradation is not None else None
        for j, i in enumerate(range(lo, hi)):
            if tiles is not None:
                tile = tiles[int(idx[i]) % len(tiles)]
                h, w = tile.lr.shape[1:]
                y0, x0 = int(ys[i] * (h - p + 1)), int(xs[i] * (w - p + 1))
                lrs[j] = tile.lr[:, y0 : y0 + p, x0 : x0 + p]
                hrs[j] = tile.hr[:, y0 * s : (y0 + p) * s, x0 * s : (x0 + p) * s]
                continue
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

    def pool(self, seed: int, chunk: int, batch_size: int) -> list[_Tile]:
        """The degraded tiles that serve the steps of ``chunk`` (made once, kept until the next chunk)."""
        key = (seed, chunk, batch_size)
        if self._pool is not None and self._pool[0] == key:
            return self._pool[1]
        rng = np.random.default_rng([seed, chunk, _DEGRADE_STREAM])
        n = max(1, -(-POOL_CHUNK * batch_size // (POOL_REUSE_PER_SCALE * self.scale)))
        images = rng.choice(len(self.sources), size=n, p=self.weights)
        ys, xs = rng.random(n), rng.random(n)
        tiles = []
        for t in range(n):
            source = self.sources[images[t]]
            h, w = source.lr_shape
            th, tw = min(h, TILE_FACTOR * self.patch), min(w, TILE_FACTOR * self.patch)
            y0, x0 = int(ys[t] * (h - th + 1)), int(xs[t] * (w - tw + 1))
            tile_rng = np.random.default_rng([seed, chunk, _DEGRADE_STREAM, t])
            lr_u8, hr_u8 = self._degraded(source, y0, x0, th, tw, tile_rng)
            tiles.append(_Tile(_planes_fast(lr_u8, self.color_mode), _planes_fast(hr_u8, self.color_mode)))
        self._pool = (key, tiles)
        return tiles

    def _degraded(
        self, source: _Source, y0: int, x0: int, th: int, tw: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) uint8 ``th`` x ``tw`` LR boxes at (y0, x0): the LR degraded by a plan drawn from ``rng``."""
        assert self.degradation is not None
        s = self.scale
        plan = plan_degradation(self.degradation, s, rng)
        hr_box = source.hr[y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s]
        if plan.clean:  # the protocol's LR, cut as bicubic training cuts it
            return source.lr["bicubic"][y0 : y0 + th, x0 : x0 + tw], hr_box
        m = plan.margin(s)
        h, w = source.lr_shape
        if plan.needs_hr:
            hr_rows = _mirror_index(s * (y0 - m), s * (y0 + th + m), h * s)
            hr_cols = _mirror_index(s * (x0 - m), s * (x0 + tw + m), w * s)
            box = plan.apply(_box(source.hr, hr_rows, hr_cols), s, rng)
        else:
            rows, cols = _mirror_index(y0 - m, y0 + th + m, h), _mirror_index(x0 - m, x0 + tw + m, w)
            box = plan.apply_downsampled(_box(source.lr[plan.first.method], rows, cols), rng)
        return box[m : m + th, m : m + tw], hr_box


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of ... x H x W patches (the last two axes)."""
    if k & 4:
        x = x.swapaxes(-1, -2)
    if k & 2:
        x = x[..., ::-1, :]
    if k & 1:
        x = x[..., ::-1]
    return np.ascontiguousarray(x)
