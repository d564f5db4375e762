"""EDSR (Lim et al., CVPRW 2017): residual blocks without batch norm, pixel-shuffle tail.

``edsr-baseline`` is the paper's baseline (16 blocks, 64 features); ``edsr-small`` is a
light configuration (8 blocks, 32 features) for edge targets. RGB in and out; the DIV2K
mean is subtracted and added back inside the network.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import SRModel, register_model

_DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(n_feats, n_feats, 3, padding=1)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def pixel_shuffle_upsampler(n_feats: int, scale: int) -> nn.Sequential:
    """Conv + PixelShuffle stages: one x3 stage, or log2(scale) x2 stages."""
    layers: list[nn.Module] = []
    factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    for f in factors:
        layers += [nn.Conv2d(n_feats, n_feats * f * f, 3, padding=1), nn.PixelShuffle(f)]
    return nn.Sequential(*layers)


class EDSR(SRModel):
    mean: torch.Tensor  # buffer

    def __init__(self, scale: int, channels: int = 3, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0):
        super().__init__()
        self.scale, self.channels = scale, channels
        mean = torch.tensor(_DIV2K_MEAN[:channels] if channels == 3 else (0.5,)).view(1, channels, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.head = nn.Conv2d(channels, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], nn.Conv2d(n_feats, n_feats, 3, padding=1)
        )
        self.tail = nn.Sequential(pixel_shuffle_upsampler(n_feats, scale), nn.Conv2d(n_feats, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.mean
        h = self.head(x)
        h = h + self.body(h)
        return self.tail(h) + self.mean


@register_model(
    "edsr-baseline", family="EDSR", color_mode="rgb", paper="Lim et al., CVPRW 2017", description="16 blocks x 64"
)
def edsr_baseline(scale: int, **kw: float) -> EDSR:
    return EDSR(scale, **kw)  # type: ignore[arg-type]


@register_model(
    "edsr-small", family="EDSR", color_mode="rgb", paper="Lim et al., CVPRW 2017", description="8 blocks x 32 (light)"
)
def edsr_small(scale: int, **kw: float) -> EDSR:
    return EDSR(scale, **{"n_resblocks": 8, "n_feats": 32, **kw})  # type: ignore[arg-type]
