"""Training (needs the ``train`` extra): config, patch sampling, the loop, GAN parts."""

import sys
import types
from typing import Any

from .config import PerceptualConfig, TrainConfig
from .loop import TrainResult, learning_rate, train

__all__ = ["PerceptualConfig", "TrainConfig", "TrainResult", "learning_rate", "train"]


class _TrainPackage(types.ModuleType):
    """``sr_edge.train`` names both this package and the function: once the package is
    imported, Python binds the name to it, so calling it runs the function."""

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return train(*args, **kw)


sys.modules[__name__].__class__ = _TrainPackage
