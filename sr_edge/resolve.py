"""Turn a model spec from the command line into an :class:`~sr_edge.upscale.Upscaler`.

Specs: ``bicubic``; a registered model name with an optional weights tag
(``espcn``, ``fsrcnn:x2``); a checkpoint file (``.safetensors``); an exported bundle folder
(or its ``manifest.json``). Bicubic and bundles never import torch.
"""

from __future__ import annotations

from .errors import SrEdgeError
from .upscale import Bicubic, Upscaler, check_scale

BICUBIC = "bicubic"


def create_upscaler(spec: str, scale: int) -> Upscaler:
    """Build the upscaler that ``spec`` names, for ``scale``."""
    check_scale(scale)
    if spec.lower() == BICUBIC:
        return Bicubic(scale)
    raise SrEdgeError(f"unknown model {spec!r}; available: {BICUBIC}")
