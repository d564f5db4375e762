"""Turn a model spec from the command line into an :class:`~sr_edge.upscale.Upscaler`.

Specs: ``bicubic``; a registered model name with an optional weights tag
(``espcn``, ``ecbsr-m4c16``); a checkpoint file (``.safetensors``); an exported bundle folder
(or its ``manifest.json``); :mod:`sr_edge.source` classifies them. Bicubic and bundles never
import torch, and nor does a zoo name on a machine without torch: it runs its shipped bundle.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import SrEdgeError
from .source import resolve_model, shipped_bundle, torch_available, torch_model
from .upscale import Bicubic, NetworkUpscaler, Upscaler, check_scale


def torch_upscaler(model: Any, name: str, color_mode: str, device: str = "cpu") -> NetworkUpscaler:
    """Wrap a zoo model (its deployment form) as an upscaler running in PyTorch eager."""
    import torch

    net = model.deploy().eval().to(device)

    @torch.no_grad()
    def run(x: Any) -> Any:
        return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return NetworkUpscaler(name, model.scale, color_mode, run)  # type: ignore[arg-type]


def _bundle_upscaler(
    path: Path, scale: int, backend: str | None, precision: str | None, device: str | None
) -> Upscaler:
    """A bundle on a backend (default ort); its scale must be the one asked for."""
    from .backends import DEFAULT_BACKEND, load_bundle
    from .bundle import read_manifest

    bundle_scale = read_manifest(path).get("scale")
    if bundle_scale != scale:
        raise SrEdgeError(f"{path}: bundle upscales x{bundle_scale}, not x{scale}; pass --scale {bundle_scale}")
    session = load_bundle(path, backend or DEFAULT_BACKEND, precision, device)
    if session.fallback:  # the images are right; the precision the user named is not what runs
        print(f"sr-edge: warning: {session.fallback}", file=sys.stderr)
    return session.upscaler()


def check_not_an_image(spec: str) -> None:
    """One-line error where a model argument names an image file (arguments in the wrong order)."""
    resolve_model(spec)


def create_upscaler(
    spec: str | os.PathLike[str],
    scale: int,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
) -> Upscaler:
    """Build the upscaler that ``spec`` names, for ``scale``.

    ``backend``/``precision``/``device`` choose how an exported bundle runs (default: ort,
    the bundle's precision, cpu). A zoo name with a runtime backend, or on an install
    without torch, runs its shipped bundle. Other specs run in PyTorch: only
    ``backend='torch'``, fp32 and a torch device apply to them.
    """
    check_scale(scale)
    source = resolve_model(spec)
    if source.kind == "bundle" and source.path is not None:
        return _bundle_upscaler(source.path, scale, backend, precision, device)
    if source.kind == "zoo" and source.name is not None and (backend not in (None, "torch") or not torch_available()):
        # A zoo name on a runtime (or on a core install without torch): its shipped bundle.
        source.check_tag(scale)
        bundle = shipped_bundle(source.name, scale)
        if bundle is not None:
            return _bundle_upscaler(bundle, scale, backend, precision, device)
        if backend not in (None, "torch"):
            raise SrEdgeError(f"{source.name} x{scale} has no shipped bundle; export it first with sr-edge export")
    if backend not in (None, "torch"):
        raise SrEdgeError(f"--backend {backend} runs exported bundles; export {spec} first with sr-edge export")
    if precision not in (None, "fp32"):
        raise SrEdgeError(f"--precision {precision} applies to exported bundles; {spec} runs in fp32")
    if source.kind == "bicubic":
        if device not in (None, "cpu"):
            raise SrEdgeError("bicubic runs on the CPU only")
        return Bicubic(scale)
    model, record = torch_model(source, scale)
    from .models import model_card

    name = record["model"] if source.kind == "zoo" else f"{record['model']}@{Path(spec).name}"
    return torch_upscaler(model, name, model_card(record["model"]).color_mode, device or "cpu")
