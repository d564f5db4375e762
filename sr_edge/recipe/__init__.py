"""The main job (``sr-edge run``): a recipe of models, compression steps, backends, devices
and budgets, run stage by stage with every stage cached by the hash of its inputs."""

from __future__ import annotations

from .runner import RunResult, StageStatus, dry_run, run_recipe
from .schema import DEFAULT_RECIPE, Recipe, load_recipe, recipe_from_dict

__all__ = [
    "DEFAULT_RECIPE",
    "Recipe",
    "RunResult",
    "StageStatus",
    "dry_run",
    "load_recipe",
    "recipe_from_dict",
    "run_recipe",
]
