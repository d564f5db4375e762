"""Turn a model spec from the command line into an :class:`~sr_edge.upscale.Upscaler`.

Specs: ``bicubic``; a registered model name with an optional weights tag
(``espcn``, ``ecbsr-m4c16``); a checkpoint file (``.safetensors``); an exported bundle folder
(or its ``manifest.json``). Bicubic and bundles never import torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .data.io import IMAGE_SUFFIXES
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


def _bundle_upscaler(
    path: Path, scale: int, backend: str | None, precision: str | None, device: str | None
) -> Upscaler:
    """A bundle on a backend (default ort); its scale must be the one asked for."""
    from .backends import DEFAULT_BACKEND, load_bundle
    from .export.bundle import read_manifest

    bundle_scale = read_manifest(path).get("scale")
    if bundle_scale != scale:
        raise SrEdgeError(f"{path}: bundle upscales x{bundle_scale}, not x{scale}; pass --scale {bundle_scale}")
    session = load_bundle(path, backend or DEFAULT_BACKEND, precision, device)
    if session.fallback:  # the images are right; the precision the user named is not what runs
        print(f"sr-edge: warning: {session.fallback}", file=sys.stderr)
    return session.upscaler()


def check_not_an_image(spec: str) -> None:
    """One-line error where a model argument names an image file (arguments in the wrong order)."""
    path = Path(spec)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        raise SrEdgeError(
            f"{spec}: an image file, not a model; the model argument comes first "
            "(a zoo name such as fsrcnn, a .safetensors checkpoint or a bundle folder)"
        )


def create_upscaler(
    spec: str | os.PathLike[str],
    scale: int,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
) -> Upscaler:
    """Build the upscaler that ``spec`` names, for ``scale``.

    ``backend``/``precision``/``device`` choose how an exported bundle runs (default: ort,
    the bundle's precision, cpu). Other specs run in PyTorch: only ``backend='torch'``,
    fp32 and a torch device apply to them.
    """
    check_scale(scale)
    if not isinstance(spec, (str, os.PathLike)):
        raise SrEdgeError(f"model spec must be a name or a path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    path = Path(spec)
    is_bundle = spec.lower() != BICUBIC and (path.is_dir() or path.name in ("manifest.json", "model.onnx"))
    if is_bundle:
        return _bundle_upscaler(path, scale, backend, precision, device)
    if backend not in (None, "torch"):
        raise SrEdgeError(f"--backend {backend} runs exported bundles; export {spec} first with sr-edge export")
    if precision not in (None, "fp32"):
        raise SrEdgeError(f"--precision {precision} applies to exported bundles; {spec} runs in fp32")
    if spec.lower() == BICUBIC:
        if device not in (None, "cpu"):
            raise SrEdgeError("bicubic runs on the CPU only")
        return Bicubic(scale)
    torch_device = device or "cpu"
    check_not_an_image(spec)
    if path.suffix == ".safetensors" or (path.exists() and path.is_file() and path.suffix != ".json"):
        _require_torch(f"running checkpoint {path}")
        from .checkpoint import model_from_checkpoint
        from .models import model_card

        model, ckpt = model_from_checkpoint(path, scale)
        return torch_upscaler(model, f"{ckpt.model}@{path.name}", model_card(ckpt.model).color_mode, torch_device)
    name, _, tag = spec.partition(":")
    _require_torch(f"running zoo model {name!r} in PyTorch")
    from .models import create_model, model_card

    card = model_card(name)
    if tag and tag != f"x{scale}":
        raise SrEdgeError(f"{name}: unknown weights tag {tag!r}; shipped weights are selected by --scale")
    model = create_model(name, scale, pretrained=True)
    return torch_upscaler(model, name, card.color_mode, torch_device)
