"""The (Real-)ESRGAN generators: RRDBNet (Wang et al., ECCVW 2018) and SRVGGNetCompact
(Wang et al., Real-ESRGAN, ICCVW 2021). RGB in and out.

RRDBNet upsamples with nearest-neighbour + conv stages (x2 and x4 by factors of 2, x3 in one
stage), so it accepts any input size (Real-ESRGAN's pixel-unshuffle x2 variant would not).
SRVGGNetCompact is a plain VGG-style body in LR space, pixel shuffle, plus the
nearest-upsampled input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import SRModel, register_model


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5)])
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, dim=1))
            if i < 4:
                feats.append(self.act(out))
        return x + out * 0.2


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(nf, gc) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x) * 0.2


class RRDBNet(SRModel):
    def __init__(self, scale: int, channels: int = 3, nf: int = 64, nb: int = 23, gc: int = 32):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.conv_first = nn.Conv2d(channels, nf, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
        self.up_convs = nn.ModuleList([nn.Conv2d(nf, nf, 3, padding=1) for _ in self.factors])
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for f, conv in zip(self.factors, self.up_convs, strict=False):
            feat = self.act(conv(F.interpolate(feat, scale_factor=f, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


class SRVGGNetCompact(SRModel):
    def __init__(self, scale: int, channels: int = 3, num_feat: int = 64, num_conv: int = 16):
        super().__init__()
        self.scale, self.channels = scale, channels
        layers: list[nn.Module] = [nn.Conv2d(channels, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers += [nn.Conv2d(num_feat, channels * scale * scale, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x)) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


@register_model(
    "rrdbnet",
    family="ESRGAN",
    color_mode="rgb",
    paper="Wang et al., ESRGAN, ECCVW 2018 (23 RRDB, 64 features)",
    description="the ESRGAN generator",
)
def rrdbnet(scale: int, **kw: int) -> RRDBNet:
    return RRDBNet(scale, **kw)


@register_model(
    "srvggnet-compact",
    family="Real-ESRGAN",
    color_mode="rgb",
    paper="Wang et al., Real-ESRGAN, ICCVW 2021 (64 features, 16 convs)",
    description="Real-ESRGAN's compact VGG-style generator",
)
def srvggnet_compact(scale: int, **kw: int) -> SRVGGNetCompact:
    return SRVGGNetCompact(scale, **kw)
