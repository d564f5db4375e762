"""The measured cards of the shipped weights (``sr_edge/weights/<model>_x<s>.json``), read
without torch, so a deployment install can list what ships and how good it is."""

from __future__ import annotations

import json
from typing import Any

from .errors import SrEdgeError
from .paths import WEIGHTS_DIR


def shipped_cards() -> list[dict[str, Any]]:
    """Every shipped card, sorted by model then scale."""
    cards = []
    for path in sorted(WEIGHTS_DIR.glob("*_x[0-9].json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SrEdgeError(f"{path}: unreadable model card ({e}); reinstall sr-edge") from None
        if isinstance(card, dict) and "model" in card and "scale" in card:
            cards.append(card)
    return sorted(cards, key=lambda c: (str(c["model"]), int(c["scale"])))
