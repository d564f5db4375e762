"""Perceptual + adversarial fine-tuning parts (ESRGAN / Real-ESRGAN recipe).

- :class:`VGGFeatures`: VGG19 ``features`` laid out exactly like torchvision's, so a
  torchvision VGG19 state dict (``features.N.weight``) loads into it. Weights cannot be
  downloaded here: they come from a local file (``--perceptual-weights``).
- Discriminators: Real-ESRGAN's U-Net with spectral norm (per-pixel realness) and an
  ESRGAN-style VGG discriminator (global average pooling, so any patch size works).
- :func:`relativistic_losses`: the relativistic average GAN losses of ESRGAN.
- :class:`GanParts`: what a perceptual run adds to the loop (discriminator, VGG features,
  the discriminator's optimizer, the generator + discriminator step, their checkpoint state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from ..errors import SrEdgeError, one_line
from .config import PerceptualConfig

_VGG19_CFG: list[int | str] = [
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, 256, "M",
    512, 512, 512, 512, "M",
    512, 512, 512, 512, "M",
]  # fmt: skip
CONV5_4 = 34  # index of conv5_4 in features: ESRGAN uses its output before the ReLU
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Frozen VGG19 features up to ``last_layer`` (inclusive), ImageNet-normalised input."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, last_layer: int = CONV5_4):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers[: last_layer + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def load_vgg19(path: str | os.PathLike[str] | None, last_layer: int = CONV5_4) -> VGGFeatures:
    """VGG19 features with weights from a local torchvision-layout state dict (.pth or .safetensors)."""
    if not path:
        raise SrEdgeError(
            "perceptual training needs VGG19 weights, which cannot be downloaded here: pass "
            "--perceptual-weights PATH (a torchvision VGG19 state dict, .pth or .safetensors)"
        )
    p = Path(path)
    if not p.is_file():
        raise SrEdgeError(f"{p}: VGG19 weights file does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load/safetensors raise many types for bad files
        raise SrEdgeError(f"{p}: cannot read VGG19 weights ({one_line(str(e))})") from None
    if not isinstance(state, dict):
        raise SrEdgeError(f"{p}: expected a state dict (torchvision VGG19 layout), got {type(state).__name__}")
    vgg = VGGFeatures(last_layer)
    wanted = vgg.features.state_dict()
    picked = {k: state.get(f"features.{k}") for k in wanted}
    missing = [k for k, v in picked.items() if v is None]
    if missing:
        raise SrEdgeError(f"{p}: not a torchvision VGG19 state dict (missing features.{missing[0]})")
    found = {k: v for k, v in picked.items() if v is not None}  # == picked (none is missing), typed as such
    bad = [k for k, v in found.items() if tuple(v.shape) != tuple(wanted[k].shape)]
    if bad:
        raise SrEdgeError(f"{p}: features.{bad[0]} has shape {tuple(found[bad[0]].shape)}, not VGG19's")
    vgg.features.load_state_dict(found)
    return vgg.eval()


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (per-pixel output)."""

    def __init__(self, channels: int = 3, nf: int = 64):
        super().__init__()
        sn = spectral_norm
        self.conv0 = nn.Conv2d(channels, nf, 3, padding=1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, padding=1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, padding=1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, padding=1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))

        def up(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)

        x4 = act(self.conv4(up(x3, x2))) + x2
        x5 = act(self.conv5(up(x4, x1))) + x1
        x6 = act(self.conv6(up(x5, x0))) + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator, with global pooling so any patch size works."""

    def __init__(self, channels: int = 3, nf: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i, width in enumerate([nf, nf * 2, nf * 4, nf * 8, nf * 8]):
            layers += [
                nn.Conv2d(c, width, 3, 1, 1, bias=i == 0),
                *([] if i == 0 else [nn.BatchNorm2d(width, affine=True)]),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(width, width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width, affine=True),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c, 100), nn.LeakyReLU(0.2, inplace=True), nn.Linear(100, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def make_discriminator(kind: str, channels: int = 3) -> nn.Module:
    if kind == "unet":
        return UNetDiscriminatorSN(channels)
    if kind == "vgg":
        return VGGStyleDiscriminator(channels)
    raise SrEdgeError(f"unknown discriminator {kind!r}; use unet or vgg")


def relativistic_losses(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator adversarial loss, discriminator loss) of the relativistic average GAN."""
    bce = F.binary_cross_entropy_with_logits
    real_rel = d_real - d_fake.mean()
    fake_rel = d_fake - d_real.mean()
    g_loss = (bce(real_rel, torch.zeros_like(real_rel)) + bce(fake_rel, torch.ones_like(fake_rel))) / 2
    d_loss = (bce(real_rel, torch.ones_like(real_rel)) + bce(fake_rel, torch.zeros_like(fake_rel))) / 2
    return g_loss, d_loss


class GanParts:
    """Discriminator, VGG features and their optimizer for perceptual fine-tuning."""

    def __init__(self, config: PerceptualConfig, device: torch.device) -> None:
        self.cfg = config
        self.vgg = load_vgg19(self.cfg.vgg_weights).to(device)
        self.disc = make_discriminator(self.cfg.discriminator).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=self.cfg.disc_lr, betas=(0.9, 0.99))

    def load(self, modules: dict[str, dict[str, torch.Tensor]], optimizers: dict[str, dict[str, Any]]) -> None:
        """Restore the discriminator and its optimizer from a checkpoint's training state."""
        if "disc" not in modules or "disc" not in optimizers:
            raise SrEdgeError("the checkpoint has no discriminator state; it was not a perceptual run")
        self.disc.load_state_dict(modules["disc"])
        self.opt.load_state_dict(optimizers["disc"])

    def modules(self) -> dict[str, dict[str, torch.Tensor]]:
        """The extra module state a checkpoint carries."""
        return {"disc": self.disc.state_dict()}

    def optimizers(self) -> dict[str, dict[str, Any]]:
        """The extra optimizer state a checkpoint carries."""
        return {"disc": self.opt.state_dict()}

    def step(
        self, net: nn.Module, opt_g: torch.optim.Optimizer, lr: torch.Tensor, hr: torch.Tensor
    ) -> dict[str, float]:
        """One generator step (pixel + perceptual + adversarial loss), then one discriminator step."""
        c = self.cfg
        for p in self.disc.parameters():
            p.requires_grad_(False)
        sr = net(lr)
        l_pix = F.l1_loss(sr, hr)
        l_per = F.l1_loss(self.vgg(sr), self.vgg(hr).detach())
        g_adv, _ = relativistic_losses(self.disc(hr).detach(), self.disc(sr))
        loss_g = c.pixel_weight * l_pix + c.perceptual_weight * l_per + c.adversarial_weight * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in self.disc.parameters():
            p.requires_grad_(True)
        _, d_loss = relativistic_losses(self.disc(hr), self.disc(sr.detach()))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        return {
            "loss": float(loss_g.detach()),
            "l_pix": float(l_pix.detach()),
            "l_percep": float(l_per.detach()),
            "l_g_adv": float(g_adv.detach()),
            "l_d": float(d_loss.detach()),
        }
