"""Training (needs the ``train`` extra): config, patch sampling, the loop, GAN parts.

The options (:class:`TrainConfig`, :class:`PerceptualConfig`) import no torch, so the
command line can build its ``train`` parser from them on a deployment-only install; the
loop's names (``train``, ``TrainResult``, ``learning_rate``) load torch on first use.
"""

import sys
import types
from typing import TYPE_CHECKING, Any

from .config import PerceptualConfig, TrainConfig

if TYPE_CHECKING:
    from .loop import TrainHooks, TrainResult, learning_rate, train

__all__ = ["PerceptualConfig", "TrainConfig", "TrainHooks", "TrainResult", "learning_rate", "train"]

_FROM_LOOP = ("TrainHooks", "TrainResult", "learning_rate", "train")


def __getattr__(name: str) -> Any:
    if name in _FROM_LOOP:
        from . import loop

        value = getattr(loop, name)
        globals()[name] = value  # later look-ups find it without coming here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _TrainPackage(types.ModuleType):
    """``sr_edge.train`` names both this package and the function: once the package is
    imported, Python binds the name to it, so calling it runs the function."""

    def __call__(self, *args: Any, **kw: Any) -> Any:
        from .loop import train

        return train(*args, **kw)


sys.modules[__name__].__class__ = _TrainPackage
