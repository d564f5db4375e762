"""The project's shared vocabulary: one definition each of scale, colour mode and precision.

Every stage imports these from here (never from another stage), so no module has to reach
upward into ``upscale`` or ``devices`` for a constant.
"""

from __future__ import annotations

from typing import Literal

from .errors import SrEdgeError

SCALES: tuple[int, ...] = (2, 3, 4)
ColorMode = Literal["rgb", "y"]
COLOR_MODES: tuple[str, ...] = ("rgb", "y")
Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")


def check_scale(scale: object) -> int:
    """Validate an upscaling factor (one-line error for anything but 2, 3 or 4)."""
    import numbers

    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or int(scale) not in SCALES:
        raise SrEdgeError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return int(scale)
