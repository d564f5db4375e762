"""A tiny typed model registry: ``@register_model``, ``create_model``, ``list_models``.

Each family module registers its variants by name; ``models/__init__.py`` imports the
family modules explicitly (no folder scanning). Registering a name twice is an error.
A variant's :class:`ModelCard` records what is fixed (family, colour mode, paper, the
sha256 of each shipped weights file); parameter counts and MACs are computed from the
module itself (:func:`sr_edge.models.profile.model_stats`), never typed in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import SrEdgeError
from ..paths import WEIGHTS_DIR
from ..types import SCALES, ColorMode, check_scale


class SRModel(nn.Module):
    """Base class of every zoo model: N x C x h x w in [0, 1] -> N x C x sh x sw."""

    scale: int
    channels: int

    def deploy(self) -> nn.Module:
        """The inference form (re-parameterised models collapse their branches here)."""
        return self


@dataclass(frozen=True)
class ModelCard:
    """What a variant is: fixed facts only; numbers are measured elsewhere."""

    name: str
    family: str
    color_mode: ColorMode
    paper: str
    description: str
    scales: tuple[int, ...] = SCALES
    # sha256 of each shipped weights file, by scale: the loader refuses any other bytes.
    weights: Mapping[int, str] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "y" else 3

    def weights_file(self, scale: int) -> Path:
        return WEIGHTS_DIR / f"{self.name}_x{scale}.safetensors"


Factory = Callable[..., SRModel]
F = TypeVar("F", bound=Factory)
_REGISTRY: dict[str, tuple[ModelCard, Factory]] = {}


def register_model(
    name: str,
    *,
    family: str,
    color_mode: ColorMode,
    paper: str,
    description: str,
    weights: Mapping[int, str] | None = None,
) -> Callable[[F], F]:
    """Register ``factory(scale, **overrides) -> SRModel`` under ``name``."""

    def decorate(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        card = ModelCard(name, family, color_mode, paper, description, weights=dict(weights or {}))
        _REGISTRY[name] = (card, factory)
        return factory

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_card(name: str) -> ModelCard:
    """The card of a registered model (one-line error for an unknown name)."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise SrEdgeError(f"unknown model {name!r}; available: {', '.join(['bicubic', *list_models()])}") from None


def shipped_scales(name: str) -> list[int]:
    """Scales for which trained weights ship with sr-edge."""
    return sorted(model_card(name).weights)


def shipped_card(name: str, scale: int) -> dict[str, Any] | None:
    """The measured card (JSON) of shipped weights, or None when none ship for ``scale``."""
    import json

    card = model_card(name)
    if scale not in card.weights:
        return None
    path = card.weights_file(scale).with_suffix(".json")
    return dict(json.loads(path.read_text())) if path.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def create_model(name: str, scale: int = 2, pretrained: bool = False, **overrides: Any) -> SRModel:
    """Build a registered model; ``pretrained=True`` loads the shipped weights for ``scale``."""
    card = model_card(name)
    check_scale(scale)
    factory = _REGISTRY[name][1]
    try:
        model = factory(scale, **overrides)
    except TypeError as e:
        raise SrEdgeError(f"{name}: bad option ({e})") from None
    if pretrained:
        if overrides:
            raise SrEdgeError(f"{name}: shipped weights exist only for the default configuration, not {overrides}")
        if scale not in card.weights:
            have = ", ".join(f"x{s}" for s in sorted(card.weights)) or "none"
            raise SrEdgeError(
                f"{name} has no shipped weights for x{scale} (shipped: {have}); train them with sr-edge train"
            )
        path = card.weights_file(scale)
        if not path.is_file():
            raise SrEdgeError(f"{path}: shipped weights file is missing; reinstall sr-edge")
        digest = _sha256(path)
        if digest != card.weights[scale]:
            raise SrEdgeError(f"{path}: sha256 {digest[:12]}... does not match the model card; the file was modified")
        ckpt = load_checkpoint(path)
        load_state(model, ckpt.state_dict, str(path))
    return model


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load weights strictly, with a one-line error naming what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise SrEdgeError(f"{source}: weights do not fit {type(model).__name__}: {'; '.join(detail)}")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        raise SrEdgeError(
            f"{source}: weights do not fit {type(model).__name__}: {k} has shape {tuple(state[k].shape)}, "
            f"expected {tuple(own[k].shape)} (another scale or configuration?)"
        )
    model.load_state_dict(dict(state), strict=True)


def model_from_checkpoint(path: str | os.PathLike[str], scale: int | None = None) -> tuple[SRModel, Checkpoint]:
    """Build the checkpoint's model with its weights; ``scale`` must match when given."""
    ckpt = load_checkpoint(path)
    if scale is not None and scale != ckpt.scale:
        raise SrEdgeError(f"{ckpt.path}: weights are for x{ckpt.scale}, not x{scale}; pass --scale {ckpt.scale}")
    model = create_model(ckpt.model, ckpt.scale, **ckpt.overrides)
    load_state(model, ckpt.state_dict, str(ckpt.path))
    return model, ckpt
