"""The classic light SR networks: SRCNN, FSRCNN, ESPCN (Y-channel, as in their papers).

- SRCNN (Dong et al., ECCV 2014 / TPAMI 2016): 9-5-5 with 64/32 filters on a bicubic
  pre-upsampled input. The upsampling is inside the network (ONNX ``Resize``), so every
  zoo model maps LR to SR.
- FSRCNN (Dong et al., ECCV 2016): d=56, s=12, m=4 with PReLU and a 9x9 transposed
  convolution (computed as its exact sub-pixel equivalent, see :class:`SubPixelDeconv`);
  ``fsrcnn-s`` is the paper's small d=32, s=5, m=1.
- ESPCN (Shi et al., CVPR 2016): 5x5/64, 3x3/32, 3x3/s^2, pixel shuffle. ReLU instead of the
  paper's tanh: it trains faster with Adam and quantises better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import SRModel, register_model


class SRCNN(SRModel):
    """SRCNN: three convolutions on the bicubic-upsampled image."""

    def __init__(
        self, scale: int, channels: int = 1, n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 5, f3: int = 5
    ):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, n1, f1, padding=f1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, f2, padding=f2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n2, channels, f3, padding=f3 // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.body(up)


class SubPixelDeconv(nn.Module):
    """A stride-``s`` transposed convolution computed as its exact sub-pixel equivalent.

    ``ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=s-1)`` equals a
    plain convolution on the LR grid with ``s^2 * c_out`` outputs (each output phase gathers
    its taps of the k x k kernel) followed by a pixel shuffle. The parameters keep the
    transposed-conv layout (``weight``: c_in x c_out x k x k), so the paper's parameterisation
    is unchanged; the computation is ~3x faster to train on CPU and exports as Conv +
    DepthToSpace, which every runtime fuses, instead of ConvTranspose.
    """

    index: torch.Tensor  # buffer

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.c_in, self.c_out, self.kernel, self.stride, self.padding = c_in, c_out, kernel, stride, padding
        self.weight = nn.Parameter(torch.empty(c_in, c_out, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        # Tap t of output phase a reads kernel index u = s*t + a + p; collect the t range.
        ts = [t for a in range(stride) for t in range(-kernel, kernel + 1) if 0 <= stride * t + a + padding < kernel]
        self.t_min, self.t_max = min(ts), max(ts)
        size = self.t_max - self.t_min + 1
        index = torch.full((stride, size), kernel, dtype=torch.long)  # ``kernel`` points at a zero tap
        for a in range(stride):
            for j in range(size):
                u = stride * (self.t_max - j) + a + padding
                if 0 <= u < kernel:
                    index[a, j] = u
        self.register_buffer("index", index, persistent=False)

    def subpixel_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the equivalent LR-grid convolution (outputs in pixel-shuffle order)."""
        s, size = self.stride, self.index.shape[1]
        w = F.pad(self.weight, (0, 1, 0, 1))  # a zero tap at index ``kernel``
        iy = self.index.view(s, 1, size, 1).expand(s, s, size, size)
        ix = self.index.view(1, s, 1, size).expand(s, s, size, size)
        k = w[:, :, iy, ix]  # c_in, c_out, s(a_y), s(a_x), size, size
        k = k.permute(1, 2, 3, 0, 4, 5).reshape(self.c_out * s * s, self.c_in, size, size)
        return k, self.bias.repeat_interleave(s * s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.subpixel_kernel()
        x = F.pad(x, (self.t_max, -self.t_min, self.t_max, -self.t_min))
        return F.pixel_shuffle(F.conv2d(x, weight, bias), self.stride)

    def as_conv_transpose(self) -> nn.ConvTranspose2d:
        """The literal transposed convolution (reference for tests)."""
        s = self.stride
        deconv = nn.ConvTranspose2d(self.c_in, self.c_out, self.kernel, s, self.padding, output_padding=s - 1)
        assert deconv.bias is not None  # built with bias=True (the default)
        with torch.no_grad():
            deconv.weight.copy_(self.weight)
            deconv.bias.copy_(self.bias)
        return deconv


class FSRCNN(SRModel):
    """FSRCNN: feature extraction, shrinking, mapping, expanding, transposed convolution."""

    def __init__(self, scale: int, channels: int = 1, d: int = 56, s: int = 12, m: int = 4):
        super().__init__()
        self.scale, self.channels = scale, channels
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = SubPixelDeconv(d, channels, 9, stride=scale, padding=4)
        nn.init.normal_(self.deconv.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


class ESPCN(SRModel):
    """ESPCN: convolutions in LR space, then a sub-pixel (pixel shuffle) layer."""

    def __init__(self, scale: int, channels: int = 1, n1: int = 64, n2: int = 32):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, n1, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(n2, channels * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


@register_model(
    "srcnn",
    family="SRCNN",
    color_mode="y",
    paper="Dong et al., TPAMI 2016 (9-5-5)",
    description="3 convs on bicubic input",
)
def srcnn(scale: int, **kw: int) -> SRCNN:
    return SRCNN(scale, **kw)


@register_model(
    "fsrcnn",
    family="FSRCNN",
    color_mode="y",
    paper="Dong et al., ECCV 2016 (d=56, s=12, m=4)",
    description="hourglass CNN in LR space, 9x9 transposed-conv upsampling",
    weights={
        2: "082cbf94be1b60a352352a467d2367a0219af09f89d39f1b124edb8a5cd9449b",
        3: "4c6d697e0dbcbe05791330f549aebf442b5afdda61558b166cc78135b24654fc",
        4: "d3a47f3467b35b1b53130a8b42aa6f16e189c1a32be54609fd0fdfa79b0f8a02",
    },
)
def fsrcnn(scale: int, **kw: int) -> FSRCNN:
    return FSRCNN(scale, **kw)


@register_model(
    "fsrcnn-s",
    family="FSRCNN",
    color_mode="y",
    paper="Dong et al., ECCV 2016 (FSRCNN-s: d=32, s=5, m=1)",
    description="the paper's small FSRCNN",
)
def fsrcnn_s(scale: int, **kw: int) -> FSRCNN:
    return FSRCNN(scale, **{"d": 32, "s": 5, "m": 1, **kw})


@register_model(
    "espcn",
    family="ESPCN",
    color_mode="y",
    paper="Shi et al., CVPR 2016 (ReLU instead of tanh)",
    description="3 convs in LR space + pixel shuffle",
    weights={
        2: "c4d070351f3c75d3a2c6d22e42d655c146086cb5c839ae640ae2883c0d37d0d4",
        3: "eb1e775caba2efe6edd35fb355e69439bc13513e1e11e910f8e78d6507f0dae7",
        4: "89a18f32b4b9dadd1ae68986b9a3ebee9f51d05ece7cbdca400c4d3a2a247852",
    },
)
def espcn(scale: int, **kw: int) -> ESPCN:
    return ESPCN(scale, **kw)
