"""The model zoo (needs the ``train`` extra: torch).

Each family lives in one module that registers its variants; they are imported here by
name so the registry is complete and explicit.
"""

from . import classic, ecbsr, edsr, esrgan  # noqa: F401  (registration side effects)
from .profile import ModelStats, count_params, model_stats
from .registry import (
    ModelCard,
    SRModel,
    create_model,
    list_models,
    load_state,
    model_card,
    model_from_checkpoint,
    register_model,
    shipped_card,
    shipped_scales,
)

__all__ = [
    "ModelCard",
    "ModelStats",
    "SRModel",
    "count_params",
    "create_model",
    "list_models",
    "load_state",
    "model_card",
    "model_from_checkpoint",
    "model_stats",
    "register_model",
    "shipped_card",
    "shipped_scales",
]
