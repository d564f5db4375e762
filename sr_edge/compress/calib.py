"""Calibration data and range calibration for int8 (torch).

Calibration data is any sequence of images plus the protocol's degradation (as NNCF and
ORT take an iterable and a transform): here, whole HR images from the training folders,
each degraded with the evaluation's MATLAB bicubic and converted to the model's colour
space, so the LR tensors are exactly what evaluation and deployment feed the network.
Whole images, never crops: DESIGN.md measured an 11 dB loss from ranges calibrated on a
few dark corner crops. Large images are centre-cropped to ``max_side`` LR pixels (the
range of a photo's centre is its range) to bound the time on two cores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..data.io import read_image, split_alpha
from ..data.resize import imresize, modcrop
from ..errors import SrEdgeError
from ..types import ColorMode
from .fakequant import OFFSET_MAX, ActQuant, Observer, QuantConv, mse_scale, quant_convs, unsigned_grid

Method = Literal["mse", "max", "percentile"]
METHODS: tuple[str, ...] = ("mse", "max", "percentile")


def pick_files(files: Sequence[Path], n: int) -> list[Path]:
    """``n`` files spread evenly over the sorted list (the same ones on every machine)."""
    ordered = sorted(files, key=lambda p: (p.parent.name, p.name))
    if not ordered:
        raise SrEdgeError("the calibration folders hold no images; pass --calib-data with a folder of photos")
    if n >= len(ordered):
        return ordered
    step = len(ordered) / n
    return [ordered[int(i * step)] for i in range(n)]


def lr_planes(path: Path, scale: int, color_mode: ColorMode, max_side: int) -> np.ndarray:
    """1 x C x h x w float32 LR tensor of one image under the evaluation's degradation."""
    from ..data.color import rgb_to_y

    img, _ = split_alpha(read_image(path))
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    hr = modcrop(img, scale)
    h, w = hr.shape[:2]
    side = max_side * scale
    if h > side or w > side:
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        hr = modcrop(hr[y0 : y0 + side, x0 : x0 + side], scale)
    lr = imresize(hr, 1.0 / scale)
    if color_mode == "y":
        planes = (rgb_to_y(lr, peak) / peak).astype(np.float32)[None]
    else:
        rgb = np.repeat(lr, 3, axis=-1) if lr.shape[-1] == 1 else lr
        planes = (rgb.astype(np.float32) / peak).transpose(2, 0, 1)
    return np.ascontiguousarray(planes[None])


def calibration_set(
    files: Sequence[Path], scale: int, color_mode: ColorMode, count: int, max_side: int = 256
) -> list[np.ndarray]:
    """LR tensors of ``count`` whole images chosen evenly from ``files``."""
    return [lr_planes(f, scale, color_mode, max_side) for f in pick_files(files, count)]


def _scale_from(obs: Observer, method: Method, unsigned: bool = False) -> float:
    """The scale of an observed tensor's grid: symmetric ``[-128, 127] * s``, or with
    ``unsigned`` (a tensor with no negative value) ``[0, 255] * s``."""
    top = 255 if unsigned else 127
    if obs.amax <= 0:
        return 1.0 / top
    if method == "max":
        return obs.amax / top
    values = obs.values()
    if method == "percentile":
        q = float(torch.quantile(values.abs().double()[:16_000_000], 0.9999))
        return max(q, obs.amax * 1e-3) / top
    return mse_scale(values, obs.amax, 0, 255) if unsigned else mse_scale(values, obs.amax)


@torch.no_grad()
def observe(net: nn.Module, quantisers: Iterable[ActQuant], images: Sequence[np.ndarray]) -> list[Observer]:
    """Run ``net`` on every image with ``quantisers`` observing (their layers act in float)."""
    qs = list(quantisers)
    observers = [Observer() for _ in qs]
    for q, o in zip(qs, observers, strict=True):
        q.observer = o
    try:
        for x in images:
            net(torch.from_numpy(x))
    finally:
        for q in qs:
            q.observer = None
    return observers


@torch.no_grad()
def input_readers(net: nn.Module, example: np.ndarray) -> set[str]:
    """Names of the :class:`QuantConv` layers whose input is the network's input itself."""
    x = torch.from_numpy(example)
    found: set[str] = set()
    handles = []
    for name, m in quant_convs(net):

        def hook(mod: nn.Module, args: Any, n: str = name) -> None:
            if args and args[0] is x:
                found.add(n)

        handles.append(m.register_forward_pre_hook(hook))
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return found


@torch.no_grad()
def calibrate(
    net: nn.Module,
    images: Sequence[np.ndarray],
    method: Method = "mse",
    offset_input: bool = True,
    unsigned: bool = True,
) -> dict[str, dict[str, float]]:
    """Set every :class:`QuantConv`'s input (and output) scale from ``images``, layer by layer.

    Layers are calibrated in order with the earlier ones already quantised, so each range is
    the range the layer sees in the deployed int8 graph, errors of earlier layers included.
    Weight scales come from each channel's largest |w|. With ``offset_input``, a layer that
    reads the network's input and sees no negative value gets the offset grid of
    :func:`~.fakequant.unsigned_grid`: all 256 codes on the image's range. With
    ``unsigned``, every other input that sees no negative value (a Relu's output) gets the
    grid ``[0, 255] * s`` too: symmetric int8 would spend half its codes on negatives that
    never come (ESPCN x2: the 7-bit input of its last layer alone cost ~0.3 dB). Returns each
    layer's statistics.
    """
    if method not in METHODS:
        raise SrEdgeError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if not images:
        raise SrEdgeError("no calibration images")
    layers = list(quant_convs(net))
    was = [(m.aq.enabled, m.wq.enabled) for _, m in layers]
    stats: dict[str, dict[str, float]] = {}
    for _, m in layers:
        m.set_enabled(False)
    try:
        readers = input_readers(net, images[0][..., :16, :16]) if offset_input else set()
        for name, m in layers:
            m.wq.init_from(_kernel(m))
            obs_in, obs_out = observe(net, [m.aq, m.oq], images)
            m.aq.offset.fill_(0)
            if name in readers and obs_in.min >= 0:  # the image: never clipped
                scale, k = unsigned_grid(obs_in.amax)
                m.aq.set_scale(scale)
                m.aq.offset.fill_(k)
            elif unsigned and obs_in.min >= 0:  # a Relu's output: all 256 codes on [0, clip]
                m.aq.set_scale(_scale_from(obs_in, method, unsigned=True))
                m.aq.offset.fill_(OFFSET_MAX)
            else:
                m.aq.set_scale(_scale_from(obs_in, method))
            m.oq.set_scale(_scale_from(obs_out, method))
            stats[name] = {
                "input_min": obs_in.min,
                "input_amax": obs_in.amax,
                "input_scale": m.aq.scale,
                "input_offset": int(m.aq.offset),
                "output_amax": obs_out.amax,
                "output_scale": m.oq.scale,
            }
            m.set_enabled(True)
    finally:
        for (_, m), (a, w) in zip(layers, was, strict=True):
            m.aq.enabled, m.wq.enabled = a, w
    return stats


def _kernel(m: QuantConv) -> torch.Tensor:
    from .fakequant import conv_kernel

    return conv_kernel(m.inner)[0]
