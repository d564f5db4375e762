"""Transitional alias while the bench is being split: the bundle format now lives in ``sr_edge.bundle``."""

from ..bundle import *  # noqa: F403
from ..bundle import find_bundles, read_bundle  # noqa: F401
