"""ECBSR (Zhang et al., "Edge-oriented Convolution Block for Real-time Super Resolution on
Mobile Devices", ACM MM 2021): the edge-efficient family of the zoo.

Training form: every layer is an Edge-oriented Convolution Block (ECB) that sums a 3x3
conv, a 1x1 -> 3x3 expand-squeeze pair, 1x1 -> Sobel-x / Sobel-y / Laplacian depthwise
filters with learnt scales, and the identity where shapes allow. All branches are linear,
so :meth:`ECBSR.deploy` collapses each ECB into one plain 3x3 conv, exactly (the 1x1
outputs are padded with their own bias, which is what a single padded 3x3 conv sees).

Deployment form: plain 3x3 convs + PReLU in LR space, pixel shuffle, plus the input
upsampled by nearest neighbour (a fixed 1x1 "anchor" conv before the shuffle, so the
residual is a Conv an int8 runtime fuses), and the output clipped to [0, 1]: both choices
help int8 (QuickSRNet, ABPN).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .registry import SRModel, register_model

_MASKS = {
    "sobel_x": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    "sobel_y": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """``conv.bias``: every conv here is built with ``bias=True`` (the default)."""
    assert conv.bias is not None
    return conv.bias


def _pad_with_bias(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Pad by 1 with the per-channel ``bias`` (what a 1x1 conv outputs on zero padding)."""
    b = bias.view(1, -1, 1, 1)
    return F.pad(y - b, (1, 1, 1, 1)) + b


class SeqConv(nn.Module):
    """1x1 conv followed by a 3x3 conv (``expand``) or a fixed-mask depthwise 3x3 with learnt scale."""

    mask: torch.Tensor  # buffer (mask kinds only)

    def __init__(self, kind: str, c_in: int, c_out: int, multiplier: float = 2.0):
        super().__init__()
        self.kind = kind
        mid = int(c_out * multiplier) if kind == "expand" else c_out
        self.conv0 = nn.Conv2d(c_in, mid, 1)
        if kind == "expand":
            self.conv1 = nn.Conv2d(mid, c_out, 3)
        else:
            self.scale = nn.Parameter(torch.randn(c_out, 1, 1, 1) * 1e-3)
            self.bias = nn.Parameter(torch.randn(c_out) * 1e-3)
            self.register_buffer("mask", torch.tensor(_MASKS[kind]).expand(c_out, 1, 3, 3).clone())

    def kernel(self) -> torch.Tensor:
        return self.mask * self.scale if self.kind != "expand" else self.conv1.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _pad_with_bias(self.conv0(x), _bias(self.conv0))
        if self.kind == "expand":
            return self.conv1(y)
        return F.conv2d(y, self.kernel(), self.bias, groups=y.shape[1])

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3 weight, bias) of one conv equal to this pair."""
        k0, b0 = self.conv0.weight[:, :, 0, 0], _bias(self.conv0)
        if self.kind == "expand":
            k1, b1 = self.conv1.weight, _bias(self.conv1)
            weight = torch.einsum("omhw,mi->oihw", k1, k0)
            bias = b1 + torch.einsum("omhw,m->o", k1, b0)
        else:
            k1 = self.kernel()[:, 0]  # (c_out, 3, 3), depthwise
            weight = k1[:, None] * k0[:, :, None, None]
            bias = self.bias + k1.sum(dim=(1, 2)) * b0
        return weight, bias


class ECB(nn.Module):
    """Edge-oriented Convolution Block (training form)."""

    identity_kernel: torch.Tensor  # buffer

    def __init__(self, c_in: int, c_out: int, multiplier: float = 2.0, act: bool = True, identity: bool = True):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.with_identity = identity and c_in == c_out
        self.conv3x3 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.branches = nn.ModuleList(
            [SeqConv("expand", c_in, c_out, multiplier)] + [SeqConv(k, c_in, c_out) for k in _MASKS]
        )
        self.act = nn.PReLU(c_out) if act else None
        eye = torch.zeros(c_out, c_in, 3, 3)
        if self.with_identity:
            eye[torch.arange(c_out), torch.arange(c_in), 1, 1] = 1.0
        self.register_buffer("identity_kernel", eye, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Online re-parameterisation: the branches are linear, so the block equals one 3x3
        # conv whose weights are a differentiable function of the branch parameters. Training
        # keeps the multi-branch parameterisation (and its optimisation benefit) at the cost
        # of a plain conv; forward_branches() is the literal sum, kept to verify the algebra.
        weight, bias = self.rep_params()
        y = F.conv2d(x, weight, bias, padding=1)
        return self.act(y) if self.act is not None else y

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The block computed branch by branch (reference for the collapse)."""
        y = self.conv3x3(x) + sum(b(x) for b in self.branches)
        if self.with_identity:
            y = y + x
        return self.act(y) if self.act is not None else y

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.conv3x3.weight, _bias(self.conv3x3)
        for branch in cast(Iterable[SeqConv], self.branches):
            w, b = branch.rep_params()
            weight = weight + w
            bias = bias + b
        if self.with_identity:
            weight = weight + self.identity_kernel
        return weight, bias


def _anchor(channels: int, scale: int) -> torch.Tensor:
    """Fixed 1x1 weights repeating each channel s^2 times in pixel-shuffle order (nearest upsampling)."""
    w = torch.zeros(channels * scale * scale, channels, 1, 1)
    for c in range(channels):
        w[c * scale * scale : (c + 1) * scale * scale, c] = 1.0
    return w


class ECBSR(SRModel):
    """ECBSR-M{blocks}C{features}; training form (ECBs) or deployment form (plain convs)."""

    anchor: torch.Tensor  # buffer

    def __init__(self, scale: int, channels: int = 1, blocks: int = 4, features: int = 16, multiplier: float = 2.0):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.blocks, self.features = blocks, features
        out = channels * scale * scale
        layers = [ECB(channels, features, multiplier)]
        layers += [ECB(features, features, multiplier) for _ in range(blocks)]
        layers += [ECB(features, out, multiplier, act=False)]
        self.body = nn.Sequential(*layers)
        self.register_buffer("anchor", _anchor(channels, scale), persistent=False)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + F.conv2d(x, self.anchor)
        return torch.clamp(self.shuffle(y), 0.0, 1.0)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The training form computed branch by branch (reference for tests)."""
        y = x
        for ecb in cast(Iterable[ECB], self.body):
            y = ecb.forward_branches(y)
        y = y + F.conv2d(x, self.anchor)
        return torch.clamp(self.shuffle(y), 0.0, 1.0)

    @torch.no_grad()
    def deploy(self) -> PlainSR:
        """Collapse every ECB into one 3x3 conv (max abs difference ~1e-7 in float32).

        The sums run in float64 and are rounded to float32 once, so the deployed weights do
        not depend on the CPU's float32 summation order (AVX2 and AVX-512 kernels gave
        different last bits, and so another graph, when this ran in float32)."""
        plain = PlainSR(self.scale, self.channels, self.blocks, self.features)
        for ecb, (conv, act) in zip(cast(Iterable[ECB], self.body), plain.layers(), strict=False):
            weight, bias = copy.deepcopy(ecb).double().rep_params()
            conv.weight.copy_(weight)
            _bias(conv).copy_(bias)
            if act is not None and ecb.act is not None:
                act.weight.copy_(ecb.act.weight)
        return plain.eval()


class PlainSR(SRModel):
    """The deployment form of ECBSR: 3x3 convs + PReLU, anchor residual, shuffle, clip."""

    anchor: torch.Tensor  # buffer

    def __init__(self, scale: int, channels: int = 1, blocks: int = 4, features: int = 16):
        super().__init__()
        self.scale, self.channels = scale, channels
        dims = [channels] + [features] * (blocks + 1) + [channels * scale * scale]
        modules: list[nn.Module] = []
        for i in range(len(dims) - 1):
            modules.append(nn.Conv2d(dims[i], dims[i + 1], 3, padding=1))
            if i < len(dims) - 2:
                modules.append(nn.PReLU(dims[i + 1]))
        self.body = nn.Sequential(*modules)
        self.register_buffer("anchor", _anchor(channels, scale), persistent=False)
        self.shuffle = nn.PixelShuffle(scale)

    def layers(self) -> list[tuple[nn.Conv2d, nn.PReLU | None]]:
        mods = list(self.body)
        out: list[tuple[nn.Conv2d, nn.PReLU | None]] = []
        for i, m in enumerate(mods):
            if isinstance(m, nn.Conv2d):
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                out.append((m, nxt if isinstance(nxt, nn.PReLU) else None))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + F.conv2d(x, self.anchor)
        return torch.clamp(self.shuffle(y), 0.0, 1.0)


_PAPER = "Zhang et al., ECBSR, ACM MM 2021"


@register_model(
    "ecbsr-m4c16",
    family="ECBSR",
    color_mode="y",
    paper=_PAPER,
    description="re-parameterisable edge-oriented blocks: 4 x 16 ch; deploys as 6 plain 3x3 convs",
    weights={
        2: "c26fe44a175697e719a53d5905e680e5c2c0c5ac9d3346edf60a1d003cf96495",
        3: "2312803036a9c256253649e519a71a95294087fad8ef04af3b2b0002bc20ae64",
        4: "63d81ba9e4504cd6964738b13ed2cd61776b3afb6701d906ac3e1eaccc9b2925",
    },
)
def ecbsr_m4c16(scale: int, **kw: int) -> ECBSR:
    return ECBSR(scale, **{"blocks": 4, "features": 16, **kw})


@register_model(
    "ecbsr-m4c16-real",
    family="ECBSR",
    color_mode="y",
    paper=_PAPER,
    description="ecbsr-m4c16 fine-tuned on realistic LR (JPEG, noise, blur): for camera photos and video frames",
    weights={
        2: "b4ccce39897d560fd948b75b9eb3ed32e0a4279bde24250c0e55c96d8dfd775b",
        4: "915d797c9bea7bab86be0456e8879d6f10318c6d83e35beabbcc8d4c75b28183",
    },
)
def ecbsr_m4c16_real(scale: int, **kw: int) -> ECBSR:
    return ECBSR(scale, **{"blocks": 4, "features": 16, **kw})


@register_model(
    "ecbsr-m4c8",
    family="ECBSR",
    color_mode="y",
    paper=_PAPER,
    description="re-parameterisable edge-oriented blocks: 4 x 8 ch (the tiniest)",
)
def ecbsr_m4c8(scale: int, **kw: int) -> ECBSR:
    return ECBSR(scale, **{"blocks": 4, "features": 8, **kw})
