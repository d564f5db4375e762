"""Compression between training and export (needs the ``train`` extra): structured pruning
(:mod:`.prune`, on torch-pruning) and int8 quantisation, QAT and PTQ (:mod:`.quantize`).

Both fine-tune through the project's trainer (:class:`sr_edge.train.TrainHooks`), write
checkpoints that record what they are, and export to ordinary bundles. Names load on first
use, so importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PruneConfig": ".prune",
    "prune": ".prune",
    "QuantConfig": ".quantize",
    "quantize": ".quantize",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
