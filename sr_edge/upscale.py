"""Upscalers: anything that turns an LR image into an SR image, bicubic included.

An :class:`Upscaler` takes an H x W x C image (C = 1 grey or 3 RGB; uint8, uint16 or float
in [0, 1]) and returns the image ``scale`` times larger in the same dtype, so integer
outputs are rounded exactly as a saved file would be. Networks only see tensors: a
:class:`NetworkUpscaler` wraps any ``N x C x h x w -> N x C x sh x sw`` float function (a
torch module, an ONNX Runtime / OpenVINO / TensorRT session) with the colour handling its
model card asks for: ``rgb`` models get RGB; ``y`` models get the Y channel of MATLAB
``rgb2ycbcr`` while Cb/Cr are upscaled with bicubic (Pillow's C resampler, same kernel),
as the classic SR papers did. That colour work runs on ``workers`` threads (default: 2
where the machine has them); at x4 it costs as much as a small network.

Every upscaler states its ``receptive_field``: how many LR pixels away from its own LR
pixel an output pixel reads (``None`` where unknown). :mod:`sr_edge.runtime.tiling` cuts
large images into tiles that overlap by that much (and by :data:`BICUBIC_REACH` for the
bicubic work around the network), so stitched tiles equal the whole-image result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from .data.color import rgb_to_ycbcr, ycbcr_planes_to_image
from .data.resize import imresize, resize_planes_fast
from .data.threads import default_workers
from .errors import SrEdgeError
from .types import SCALES, ColorMode, check_scale

__all__ = [
    "BICUBIC_REACH",
    "SCALES",
    "Bicubic",
    "ColorMode",
    "NetworkUpscaler",
    "Upscaler",
    "check_scale",
    "upscale_image",
]
TensorFn = Callable[[np.ndarray], np.ndarray]
FrameFn = Callable[[np.ndarray], tuple[np.ndarray, float]]  # uint8 frames -> (uint8 frames, network sum)
_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# How far (in LR pixels) the bicubic upscalers used here read from an output pixel's own
# LR pixel: MATLAB imresize (the bicubic baseline, alpha) and Pillow's BICUBIC (Y models'
# chroma) both take the 4 taps within 2 px of the output's centre, which lies up to half a
# pixel from its own LR pixel's centre; the window's rounding adds one more.
BICUBIC_REACH = 3


@runtime_checkable
class Upscaler(Protocol):
    """LR image in, SR image out (same dtype and channel count).

    An upscaler may also carry ``receptive_field`` (int LR pixels, or ``None``): tiling
    needs it, and treats an upscaler without it as one of unknown reach.
    """

    name: str
    scale: int

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...


def _broken(name: str) -> str:
    return (
        f"{name}: the network's output holds NaN or Inf: the model is broken (NaN weights, or "
        "an overflow at this precision); nothing was written; re-train or re-export it, or try fp32"
    )


def _check_lr(lr: np.ndarray) -> np.ndarray:
    if not isinstance(lr, np.ndarray):
        raise SrEdgeError(f"expected an image as a numpy array (H x W x C), got {type(lr).__name__}")
    if lr.ndim == 2:
        lr = lr[..., None]
    if lr.ndim != 3 or lr.shape[-1] not in (1, 3):
        raise SrEdgeError(f"expected an H x W x 1 or H x W x 3 image, got shape {lr.shape}")
    if lr.shape[0] == 0 or lr.shape[1] == 0:
        raise SrEdgeError(f"image has no pixels (shape {lr.shape})")
    return lr


def _to_unit(lr: np.ndarray) -> tuple[np.ndarray, float | None]:
    peak = _PEAKS.get(lr.dtype)
    if peak is not None:
        return lr.astype(np.float32) / np.float32(peak), peak
    if np.issubdtype(lr.dtype, np.floating):
        return lr.astype(np.float32), None
    raise SrEdgeError(f"unsupported pixel type {lr.dtype}; expected uint8, uint16 or float")


def _from_unit(x: np.ndarray, peak: float | None, dtype: np.dtype) -> np.ndarray:
    if peak is None:
        return np.clip(x, 0.0, 1.0).astype(dtype)
    return np.clip(np.round(x * peak), 0, peak).astype(dtype)


class Bicubic:
    """MATLAB bicubic upscaling: the baseline on every table."""

    def __init__(self, scale: int) -> None:
        self.name = "bicubic"
        self.scale = check_scale(scale)
        self.receptive_field: int | None = 0  # no network: only the bicubic reach

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        lr = _check_lr(lr)
        out = imresize(lr, self.scale)
        if np.issubdtype(lr.dtype, np.floating):
            return np.clip(out, 0.0, 1.0).astype(lr.dtype)
        return out


class NetworkUpscaler:
    """Colour handling around a network that maps N x C x h x w to N x C x sh x sw floats.

    ``receptive_field``: the network's reach in LR pixels (a bundle's
    :attr:`~sr_edge.bundle.Bundle.receptive_field`); ``None`` where unknown (no exact tiling).
    """

    def __init__(
        self,
        name: str,
        scale: int,
        color_mode: ColorMode,
        run: TensorFn,
        workers: int | None = None,
        receptive_field: int | None = None,
        frame: FrameFn | None = None,
    ) -> None:
        if color_mode not in ("rgb", "y"):
            raise SrEdgeError(f"colour mode must be 'rgb' or 'y', got {color_mode!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SrEdgeError(f"workers must be a positive integer, got {workers!r}")
        self.name = name
        self.scale = check_scale(scale)
        self.color_mode: ColorMode = color_mode
        self._run = run
        self.receptive_field = receptive_field
        # threads for the colour work around the network (bicubic chroma, YCbCr -> RGB)
        self.workers = default_workers() if workers is None else workers
        # uint8 N x H x W x 3 RGB -> (uint8 N x sH x sW x 3, the network output's sum) with the
        # colour work inside the runtime's graph (sr_edge.frame_graph; a Y model's uint8 RGB input)
        self._frame = frame if color_mode == "y" else None
        self.frame_path = "graph" if self._frame is not None else "numpy"

    def _net(self, planes: np.ndarray) -> np.ndarray:
        """H x W x C float planes -> sH x sW x C float planes through the network."""
        x = np.ascontiguousarray(planes.transpose(2, 0, 1)[None], dtype=np.float32)
        y = np.asarray(self._run(x))
        h, w = planes.shape[:2]
        expected = (1, planes.shape[2], h * self.scale, w * self.scale)
        if y.shape != expected:
            raise SrEdgeError(f"{self.name}: network returned shape {y.shape}, expected {expected}")
        # Every network output (torch or any backend) passes here. NaN or Inf would be clipped
        # into a black or white image that looks like a result; a sum is one cheap pass that
        # any NaN or Inf makes non-finite (the exact test runs only then).
        with np.errstate(over="ignore", invalid="ignore"):
            total = y.sum(dtype=np.float32)
        if not np.isfinite(total) and not np.isfinite(y).all():
            raise SrEdgeError(_broken(self.name))
        return y[0].transpose(1, 2, 0)

    def _frame_graph(self, lr: np.ndarray) -> np.ndarray:
        assert self._frame is not None
        h, w = lr.shape[:2]
        out, total = self._frame(np.ascontiguousarray(lr)[None])
        if not np.isfinite(total):
            raise SrEdgeError(_broken(self.name))
        out = np.asarray(out)
        expected = (1, h * self.scale, w * self.scale, 3)
        if out.shape != expected or out.dtype != np.uint8:
            raise SrEdgeError(
                f"{self.name}: the frame graph returned {out.dtype} {out.shape}, expected uint8 {expected}"
            )
        return out[0]

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        lr = _check_lr(lr)
        if self._frame is not None and lr.dtype == np.uint8 and lr.shape[-1] == 3:
            return self._frame_graph(lr)
        x, peak = _to_unit(lr)
        grey = x.shape[-1] == 1
        if self.color_mode == "y":
            if grey:  # a grey image is its own Y (as in the evaluation protocol)
                out = self._net(x)
            else:
                ycc = rgb_to_ycbcr(x)  # float32 throughout: this runs on every deployed frame
                y = self._net(np.ascontiguousarray(ycc[..., :1]))[..., 0].astype(np.float32, copy=False)
                cb, cr = resize_planes_fast(ycc[..., 1:], self.scale, self.workers)
                return ycbcr_planes_to_image(y, cb, cr, peak, lr.dtype, self.workers)
        else:
            out = self._net(np.repeat(x, 3, axis=-1) if grey else x)
            if grey:
                out = out.mean(axis=-1, keepdims=True)
        return _from_unit(out, peak, lr.dtype)


def upscale_image(upscaler: Upscaler, img: np.ndarray) -> np.ndarray:
    """Upscale a full image file's pixels: alpha (if any) is resized with bicubic and kept."""
    from .data.io import split_alpha

    colour, alpha = split_alpha(img if img.ndim == 3 else img[..., None])
    sr = upscaler(colour)
    if alpha is None:
        return sr
    return np.concatenate([sr, imresize(alpha, upscaler.scale)], axis=-1)
