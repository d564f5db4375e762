"""Turn a model spec from the command line into an :class:`~sr_edge.upscale.Upscaler`.

Specs: ``bicubic``; a registered model name with an optional weights tag
(``espcn``, ``ecbsr-m4c16``); a checkpoint file (``.safetensors``); an exported bundle folder
(or its ``manifest.json``). Bicubic and bundles never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import MissingDependencyError, SrEdgeError
from .upscale import Bicubic, NetworkUpscaler, Upscaler, check_scale

BICUBIC = "bicubic"


def torch_upscaler(model: Any, name: str, color_mode: str, device: str = "cpu") -> NetworkUpscaler:
    """Wrap a zoo model (its deployment form) as an upscaler running in PyTorch eager."""
    import torch

    net = model.deploy().eval().to(device)

    @torch.no_grad()
    def run(x: Any) -> Any:
        return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return NetworkUpscaler(name, model.scale, color_mode, run)  # type: ignore[arg-type]


def _require_torch(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(what, "train", "torch")


def create_upscaler(spec: str, scale: int) -> Upscaler:
    """Build the upscaler that ``spec`` names, for ``scale``."""
    check_scale(scale)
    if spec.lower() == BICUBIC:
        return Bicubic(scale)
    path = Path(spec)
    if path.suffix == ".safetensors" or (path.exists() and path.is_file() and path.suffix != ".json"):
        _require_torch(f"running checkpoint {path}")
        from .checkpoint import model_from_checkpoint
        from .models import model_card

        model, ckpt = model_from_checkpoint(path, scale)
        return torch_upscaler(model, f"{ckpt.model}@{path.name}", model_card(ckpt.model).color_mode)
    if path.is_dir() or path.name == "manifest.json":
        raise SrEdgeError(f"{path}: bundles are not supported yet")
    name, _, tag = spec.partition(":")
    _require_torch(f"running zoo model {name!r} in PyTorch")
    from .models import create_model, model_card

    card = model_card(name)
    if tag and tag != f"x{scale}":
        raise SrEdgeError(f"{name}: unknown weights tag {tag!r}; shipped weights are selected by --scale")
    model = create_model(name, scale, pretrained=True)
    return torch_upscaler(model, name, card.color_mode)
