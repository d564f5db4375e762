"""Fake-quantisation modules for int8 QAT and calibration (torch; no torch.ao, no pt2e).

The arithmetic is the one every int8 runtime uses for an ONNX ``QuantizeLinear`` /
``DequantizeLinear`` pair: ``q = clamp(round_half_even(x / s), qmin, qmax)``, ``x' = q * s``,
symmetric (zero point 0): activations per tensor, int8 ``[-128, 127]``; weights per output
channel (axis 0), int8 ``[-127, 127]`` (the narrow range TensorRT and OpenVINO assume for
symmetric weights). So what a model learns under fake quantisation is what the deployed
QDQ graph computes, up to the order of float additions inside a runtime's kernels.

Gradients: straight-through for the input (1 inside the range, 0 where clamped) and the
LSQ gradient for the scale (Esser et al., ICLR 2020), which falls out of writing the
rounding as ``y + (round(y) - y).detach()``. The scale is learnt as its logarithm: Adam's
steps are then relative, so the trainer's one learning rate suits weights (~1e-2) and
scales (~1e-3 .. 1e-5) alike, and a scale can never reach zero or change sign.

:func:`wrap_model` swaps each ``nn.Conv2d`` (and FSRCNN's sub-pixel deconvolution) of a
deploy-form network for a :class:`QuantConv` holding the original module, an input
quantiser and a weight quantiser; :func:`unwrap_model` gives the float network back (the
weights QAT tuned), which the exporter writes before :mod:`.qdq` inserts the QDQ nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.classic import SubPixelDeconv

ACT_QMIN, ACT_QMAX = -128, 127
OFFSET_MAX = 128  # ORT writes an offset grid as a uint8 zero point 128 - k, so k in [-127, 128]
WEIGHT_QMAX = 127


def fake_quant(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """``clamp(round(x / scale), qmin, qmax) * scale`` with straight-through / LSQ gradients."""
    y = x / scale
    y = y + (torch.round(y) - y).detach()
    return torch.clamp(y, qmin, qmax) * scale


class ActQuant(nn.Module):
    """Per-tensor symmetric int8 fake quantiser of an activation, with a learnt scale.

    ``enabled`` False passes values through (a layer kept in float); ``observe`` True
    passes them through and records them for calibration (see :class:`Observer`).
    """

    offset: torch.Tensor  # buffer: the grid is (q + offset) * scale, q in [-128, 127]

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / ACT_QMAX)))
        # An input that is never negative (the image) may shift its grid by an integer number
        # of steps so that all 256 codes cover its range (one bit more than symmetric int8).
        self.register_buffer("offset", torch.tensor(0, dtype=torch.int64))
        self.enabled = True
        self.observer: Observer | None = None

    @property
    def scale(self) -> float:
        return float(self.log_scale.detach().exp())

    def set_scale(self, value: float) -> None:
        with torch.no_grad():
            self.log_scale.fill_(math.log(max(float(value), 1e-12)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            self.observer.add(x)
            return x
        if not self.enabled:
            return x
        k = int(self.offset)
        return fake_quant(x, self.log_scale.exp(), ACT_QMIN + k, ACT_QMAX + k)


def unsigned_grid(amax: float) -> tuple[float, int]:
    """(scale, offset) of the grid ``(q + 128) * s``, q in [-128, 127]: [0, amax] in 255 steps.

    For the network's input (an image, never negative): a uint8 grid in all but name, one
    bit finer than symmetric int8, and never clipped (a clipped highlight is an error in
    every output pixel that reads it, which no MSE on the input weighs properly).
    """
    return max(amax, 1e-8) / 255, OFFSET_MAX


class WeightQuant(nn.Module):
    """Per-output-channel (axis 0) symmetric int8 fake quantiser of a weight, learnt scales."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.enabled = True

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scale.detach().exp().clone()

    def init_from(self, weight: torch.Tensor) -> None:
        """Scales from each output channel's largest |w| (8-bit weights lose nothing to clipping)."""
        amax = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1).clamp_min(1e-8)
        with torch.no_grad():
            self.log_scale.copy_((amax / WEIGHT_QMAX).log())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        scale = self.log_scale.exp().reshape(-1, *([1] * (w.dim() - 1)))
        return fake_quant(w, scale, -WEIGHT_QMAX, WEIGHT_QMAX)


class Observer:
    """Collects an activation's values on calibration images: its max |x| and a sample.

    The sample (every ``stride``-th value, at most ``limit`` values) feeds the MSE scale
    search; ``amax`` is exact over everything seen.
    """

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self.amax = 0.0
        self.min = math.inf
        self.chunks: list[torch.Tensor] = []
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        v = x.detach().float().reshape(-1)
        self.amax = max(self.amax, float(v.abs().max()))
        self.min = min(self.min, float(v.min()))
        stride = max(1, v.numel() // max(1, self.limit // 16))
        self.chunks.append(v[::stride].clone())
        self.count += v.numel()

    def values(self) -> torch.Tensor:
        v = torch.cat(self.chunks) if self.chunks else torch.zeros(1)
        if v.numel() > self.limit:
            v = v[:: -(-v.numel() // self.limit)]
        return v


def mse_scale(values: torch.Tensor, amax: float, qmin: int = ACT_QMIN, qmax: int = ACT_QMAX) -> float:
    """The per-tensor scale minimising the quantisation MSE of ``values`` (a grid over clipping points).

    Clipping a long tail trades a few large errors for a finer grid everywhere else; over
    whole images (never crops: DESIGN.md's dark corner crops lost 11 dB) the search keeps
    the range that the bulk of the pixels needs.
    """
    if amax <= 0:
        return 1.0 / qmax
    best, best_err = amax / qmax, math.inf
    v = values.double()
    for frac in torch.linspace(0.30, 1.0, 71).tolist():
        s = amax * frac / qmax
        q = torch.clamp(torch.round(v / s), qmin, qmax) * s
        err = float(torch.mean((q - v) ** 2))
        if err < best_err:
            best, best_err = s, err
    return best


class QuantConv(nn.Module):
    """A convolution with int8 fake-quantised input and weights, computing what the QDQ graph computes.

    ``inner`` is the float module (``nn.Conv2d`` or a sub-pixel deconvolution, whose
    equivalent LR-grid kernel is what the exported graph holds and so what is quantised).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        weight, _ = conv_kernel(inner)
        self.aq = ActQuant()
        self.wq = WeightQuant(weight.shape[0])
        self.wq.init_from(weight)
        # the conv's output grid, which only ONNX Runtime's placement uses (QLinearConv needs a
        # quantised output); on in a fine-tune where that file quantises it on its own grid
        self.oq = ActQuant()
        self.oq.enabled = False

    @property
    def enabled(self) -> bool:
        return self.aq.enabled

    def set_enabled(self, on: bool) -> None:
        self.aq.enabled = on
        self.wq.enabled = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.aq(x)
        weight, bias = conv_kernel(self.inner)
        weight = self.wq(weight)
        inner = self.inner
        if isinstance(inner, nn.Conv2d):
            y = F.conv2d(x, weight, bias, inner.stride, inner.padding, inner.dilation, inner.groups)
            return self.oq(y)
        assert isinstance(inner, SubPixelDeconv)  # quantisable() admits these two kinds only
        # sub-pixel deconvolution: pad, LR-grid conv, pixel shuffle (as its own forward)
        x = F.pad(x, (inner.t_max, -inner.t_min, inner.t_max, -inner.t_min))
        return F.pixel_shuffle(self.oq(F.conv2d(x, weight, bias)), inner.stride)


def _is_subpixel(m: nn.Module) -> bool:
    return isinstance(m, SubPixelDeconv)


def conv_kernel(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the convolution the exported graph holds for ``m``."""
    if isinstance(m, nn.Conv2d):
        return m.weight, m.bias
    if isinstance(m, SubPixelDeconv):
        return m.subpixel_kernel()
    raise TypeError(f"not a convolution: {type(m).__name__}")


def quantisable(m: nn.Module) -> bool:
    """Modules :func:`wrap_model` quantises: plain 2-D convolutions and sub-pixel deconvolutions."""
    return (isinstance(m, nn.Conv2d) and m.padding_mode == "zeros") or _is_subpixel(m)


def wrap_model(net: nn.Module) -> nn.Module:
    """Replace every quantisable module of ``net`` (in place) by a :class:`QuantConv`; returns ``net``."""

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if quantisable(child):
                setattr(parent, name, QuantConv(child))
            else:
                visit(child)

    if quantisable(net):
        raise TypeError("the network is a single convolution; wrap a model, not a layer")
    visit(net)
    return net


def unwrap_model(net: nn.Module) -> nn.Module:
    """The inverse of :func:`wrap_model` (in place): each :class:`QuantConv` becomes its float module."""
    for name, child in list(net.named_children()):
        if isinstance(child, QuantConv):
            setattr(net, name, child.inner)
        else:
            unwrap_model(child)
    return net


def quant_convs(net: nn.Module) -> Iterator[tuple[str, QuantConv]]:
    """(name, module) of every :class:`QuantConv`, in registration order."""
    for name, m in net.named_modules():
        if isinstance(m, QuantConv):
            yield name, m


def execution_order(net: nn.Module, run: Callable[[], Any]) -> list[str]:
    """The names of ``net``'s :class:`QuantConv` modules in the order ``run()`` calls them."""
    order: list[str] = []
    handles = []
    for name, m in quant_convs(net):

        def hook(mod: nn.Module, args: Any, n: str = name) -> None:
            if n not in order:
                order.append(n)

        handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return order
