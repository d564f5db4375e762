"""sr-edge: super-resolution from training to edge deployment.

The public API is what ``__all__`` lists. Deployment-side names (evaluation, bundles,
backends, benchmark, device profiles) import no torch; training-side names
(``create_model``, ``list_models``, ``train``, ``prune``, ``quantize`` and their configs)
are loaded on first use and need the ``train`` extra (``TrainConfig`` itself imports no
torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import load_bundle, load_upscaler
from .bench import BenchSettings, benchmark, compare, write_report
from .data import imresize, modcrop, read_image, resolve_dataset, rgb_to_y, write_image
from .devices import DeviceProfile, load_profile
from .errors import DatasetNotFoundError, MissingDependencyError, SrEdgeError
from .evaluate import EvalResult, degrade, evaluate
from .export import export_bundle
from .metrics import psnr, ssim
from .resolve import create_upscaler
from .select import Selection, SelectOptions, select
from .upscale import Bicubic, NetworkUpscaler, Upscaler, upscale_image
from .version import __version__

if TYPE_CHECKING:
    from .compress.prune import PruneConfig, prune
    from .compress.quantize import QuantConfig, quantize
    from .models import create_model, list_models
    from .train import TrainConfig, train

# Training-side names, imported on first access so that deployment never imports torch.
_LAZY = {
    "create_model": ("sr_edge.models", "create_model"),
    "list_models": ("sr_edge.models", "list_models"),
    "train": ("sr_edge.train", "train"),
    "TrainConfig": ("sr_edge.train", "TrainConfig"),
    "prune": ("sr_edge.compress.prune", "prune"),
    "PruneConfig": ("sr_edge.compress.prune", "PruneConfig"),
    "quantize": ("sr_edge.compress.quantize", "quantize"),
    "QuantConfig": ("sr_edge.compress.quantize", "QuantConfig"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name == "torch":
                raise MissingDependencyError(f"sr_edge.{name}", "train", "torch") from None
            raise
    raise AttributeError(f"module 'sr_edge' has no attribute {name!r}")


__all__ = [
    "BenchSettings",
    "Bicubic",
    "DatasetNotFoundError",
    "DeviceProfile",
    "EvalResult",
    "MissingDependencyError",
    "NetworkUpscaler",
    "PruneConfig",
    "QuantConfig",
    "SelectOptions",
    "Selection",
    "SrEdgeError",
    "TrainConfig",
    "Upscaler",
    "__version__",
    "benchmark",
    "compare",
    "create_model",
    "create_upscaler",
    "degrade",
    "evaluate",
    "export_bundle",
    "imresize",
    "list_models",
    "load_bundle",
    "load_profile",
    "load_upscaler",
    "modcrop",
    "prune",
    "psnr",
    "quantize",
    "read_image",
    "resolve_dataset",
    "rgb_to_y",
    "select",
    "ssim",
    "train",
    "upscale_image",
    "write_image",
    "write_report",
]
