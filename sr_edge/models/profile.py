"""Parameter counts and multiply-accumulates, measured by running the module.

MACs are counted from the convolutions a forward pass actually executes (Conv2d:
out pixels x C_out x C_in/groups x k^2; ConvTranspose2d: in pixels x C_in x C_out/groups
x k^2; FSRCNN's sub-pixel deconvolution as the LR-grid conv it runs; Linear), divided by
the number of output pixels: MACs per output pixel, so a model's cost for any frame size
is one multiplication away. Counted on the deployment
form (what ships).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelStats:
    params: int
    macs_per_output_pixel: float

    def gmacs(self, out_width: int, out_height: int) -> float:
        """Giga-MACs for one frame of the given output size."""
        return self.macs_per_output_pixel * out_width * out_height / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    from .classic import SubPixelDeconv

    def conv_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, SubPixelDeconv):  # executed as a conv to s^2 * c_out channels on the LR grid
            n, c, h, w = inputs[0].shape
            size = m.index.shape[1]
            total += n * h * w * c * m.c_out * m.stride**2 * size * size
        elif isinstance(m, nn.ConvTranspose2d):
            n, c, h, w = inputs[0].shape
            kh, kw = m.kernel_size
            total += n * h * w * c * (m.out_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Conv2d):
            n, _, h, w = output.shape
            kh, kw = m.kernel_size
            total += n * h * w * m.out_channels * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += output.numel() * m.in_features

    handles = [
        mod.register_forward_hook(conv_hook)
        for mod in model.modules()
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, SubPixelDeconv))
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def model_stats(model: nn.Module, channels: int, scale: int, size: int = 32) -> ModelStats:
    """Params and MACs per output pixel of ``model`` (pass the deployment form)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, channels, size, size)
    macs = count_macs(model, x)
    model.train(was_training)
    return ModelStats(count_params(model), macs / ((size * scale) ** 2))
