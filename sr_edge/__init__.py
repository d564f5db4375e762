"""sr-edge: super-resolution from training to edge deployment.

The public API is what ``__all__`` lists. Deployment-side names import no torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .data import imresize, modcrop, read_image, resolve_dataset, rgb_to_y, write_image
from .errors import MissingDependencyError, SrEdgeError
from .evaluate import EvalResult, degrade, evaluate
from .metrics import psnr, ssim
from .resolve import create_upscaler
from .upscale import Bicubic, NetworkUpscaler, Upscaler, upscale_image

__all__ = [
    "Bicubic",
    "EvalResult",
    "MissingDependencyError",
    "NetworkUpscaler",
    "SrEdgeError",
    "Upscaler",
    "__version__",
    "create_upscaler",
    "degrade",
    "evaluate",
    "imresize",
    "modcrop",
    "psnr",
    "read_image",
    "resolve_dataset",
    "rgb_to_y",
    "ssim",
    "upscale_image",
    "write_image",
]
