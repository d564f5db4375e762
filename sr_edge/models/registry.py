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


# How a checkpoint of a model whose layers differ from its registered configuration (a pruned
# model: non-uniform channel counts) says what it is: which form of the registered model it
# is (``train``, or ``deploy``: what ``SRModel.deploy()`` returns, e.g. ECBSR's PlainSR), the
# options that form is built with, and the shape of every tensor. The loader builds that form,
# then resizes each layer to the recorded shapes before loading, so the file alone suffices.
ARCHITECTURE_FORMS = ("train", "deploy")


def architecture_record(model: nn.Module, form: str, base_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``architecture`` entry a checkpoint of ``model`` records (see :func:`build_architecture`).

    ``channels`` (in, out per convolution) is for people; ``shapes`` is what the loader uses."""
    if form not in ARCHITECTURE_FORMS:
        raise ValueError(f"form must be one of {ARCHITECTURE_FORMS}, got {form!r}")
    channels: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            channels[name] = [m.in_channels, m.out_channels]
        elif isinstance(m, nn.Linear):
            channels[name] = [m.in_features, m.out_features]
        elif hasattr(m, "c_in") and hasattr(m, "c_out") and isinstance(getattr(m, "weight", None), torch.Tensor):
            channels[name] = [int(m.c_in), int(m.c_out)]  # FSRCNN's sub-pixel deconvolution
    return {
        "form": form,
        "class": type(model).__name__,
        "base_overrides": dict(base_overrides or {}),
        "channels": channels,
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def _resize_module(module: nn.Module, name: str, want: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Give ``module``'s own parameters/buffers the shapes in ``want`` and update its channel attributes."""
    own = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
    if all(tuple(own[k].shape) == shape for k, shape in want.items()):
        return
    weight = want.get("weight")
    if weight is None:
        raise SrEdgeError(f"{source}: cannot rebuild layer {name} ({type(module).__name__}) at its recorded shapes")
    if isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if module.groups != 1 and not depthwise:
            raise SrEdgeError(f"{source}: cannot rebuild grouped convolution {name} at its recorded shapes")
        module.out_channels = weight[0]
        module.in_channels = weight[0] if depthwise else weight[1]
        if depthwise:
            module.groups = weight[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight[0], weight[1]
    elif isinstance(module, nn.PReLU):
        module.num_parameters = weight[0]
    elif hasattr(module, "c_in") and hasattr(module, "c_out"):  # SubPixelDeconv: weight c_in x c_out x k x k
        setattr(module, "c_in", weight[0])  # noqa: B010 - a duck-typed attribute (no import of the family module)
        setattr(module, "c_out", weight[1])  # noqa: B010
    else:
        raise SrEdgeError(f"{source}: cannot rebuild layer {name} ({type(module).__name__}) at its recorded shapes")
    for key, shape in want.items():
        if key in module._parameters:
            module._parameters[key] = nn.Parameter(torch.zeros(shape))
        else:
            module._buffers[key] = torch.zeros(shape)


def build_architecture(name: str, scale: int, record: Mapping[str, Any], source: str = "checkpoint") -> SRModel:
    """The model a checkpoint's ``architecture`` record describes, with placeholder weights.

    The registered model ``name`` is built with the record's options, turned into the
    recorded form, and every layer resized to the recorded shapes; load the weights after."""
    form = record.get("form")
    shapes = record.get("shapes")
    if form not in ARCHITECTURE_FORMS or not isinstance(shapes, Mapping) or not shapes:
        raise SrEdgeError(f"{source}: malformed architecture record (form {form!r}, {type(shapes).__name__} shapes)")
    base = record.get("base_overrides") or {}
    if not isinstance(base, Mapping):
        raise SrEdgeError(f"{source}: malformed architecture record (base_overrides is {type(base).__name__})")
    model = create_model(name, scale, **dict(base))
    if form == "deploy":
        deployed = model.deploy()
        if not isinstance(deployed, SRModel):
            raise SrEdgeError(f"{source}: {name}'s deployment form is not a zoo model; cannot rebuild it")
        model = deployed
    want_class = record.get("class")
    if want_class is not None and type(model).__name__ != want_class:
        raise SrEdgeError(f"{source}: records a {want_class}, but {name} ({form} form) builds a {type(model).__name__}")
    by_module: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SrEdgeError(f"{source}: malformed architecture record (shape of {key}: {shape!r})")
        mod, _, leaf = str(key).rpartition(".")
        by_module.setdefault(mod, {})[leaf] = tuple(shape)
    modules = dict(model.named_modules())
    for mod, want in by_module.items():
        module = modules.get(mod)
        if module is None:
            continue  # load_state names the tensor that does not fit
        own = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        _resize_module(module, mod, {k: v for k, v in want.items() if k in own}, source)
    return model.train()


def model_from_checkpoint(path: str | os.PathLike[str], scale: int | None = None) -> tuple[SRModel, Checkpoint]:
    """Build the checkpoint's model with its weights; ``scale`` must match when given.

    A checkpoint that records its own ``architecture`` (a pruned model) is rebuilt in that
    architecture (:func:`build_architecture`); any other is the registered model with the
    checkpoint's overrides."""
    ckpt = load_checkpoint(path)
    if scale is not None and scale != ckpt.scale:
        raise SrEdgeError(f"{ckpt.path}: weights are for x{ckpt.scale}, not x{scale}; pass --scale {ckpt.scale}")
    record = ckpt.meta.get("architecture")
    if record is not None:
        if not isinstance(record, Mapping):
            raise SrEdgeError(f"{ckpt.path}: malformed architecture record ({type(record).__name__})")
        model = build_architecture(ckpt.model, ckpt.scale, record, str(ckpt.path))
    else:
        model = create_model(ckpt.model, ckpt.scale, **ckpt.overrides)
    load_state(model, ckpt.state_dict, str(ckpt.path))
    return model, ckpt
