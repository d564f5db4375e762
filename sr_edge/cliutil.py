"""Small pieces every verb's parser shares (the main CLI and the stage sub-CLIs import them
from here, never from ``cli.py``, so no sub-CLI reaches back into the entry point)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .errors import SrEdgeError
from .types import check_scale


def scale_arg(text: str) -> int:
    """argparse type for ``--scale``: 2, 3 or 4, with a one-line error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale must be an integer, got {text!r}") from None
    try:
        return check_scale(value)
    except SrEdgeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns (what every verb prints)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
