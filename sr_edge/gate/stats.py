"""The gate's statistics: a paired-round ratio and its bootstrap interval, and the verdict.

Each round times the base and the candidate back to back (the order alternating from round
to round), so a slow phase of a shared host hits both sides of a pair alike. Per row:

- ``ratio`` = the median over rounds of (candidate p50 / base p50 in that round);
- the interval: a percentile bootstrap over the paired rounds (rounds resampled with
  replacement, the pairs kept together), ``confidence`` one-sided at each end, so its lower
  end is a one-sided test: "slower by more than the threshold" holds at that confidence
  when ``low > 1 + threshold``;
- verdict: ``fail`` when ``low > 1 + threshold``; ``pass`` when ``high <= 1 + threshold``;
  ``inconclusive`` otherwise, which passes (the gate fails only on evidence).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SrEdgeError


@dataclass(frozen=True)
class Interval:
    """A ratio with its bootstrap interval."""

    ratio: float
    low: float
    high: float
    rounds: int


def paired_ratio(
    base_ms: Sequence[float], cand_ms: Sequence[float], confidence: float = 0.95, resamples: int = 4000, seed: int = 0
) -> Interval:
    """Median of per-round ratios, and its bootstrap interval (``confidence`` one-sided at each end)."""
    if len(base_ms) != len(cand_ms):
        raise SrEdgeError(f"paired rounds must match: {len(base_ms)} base, {len(cand_ms)} candidate")
    if len(base_ms) == 0:
        raise SrEdgeError("no paired rounds to compare")
    if not 0.5 < confidence < 1:
        raise SrEdgeError(f"confidence must lie between 0.5 and 1, got {confidence!r}")
    ratios = np.asarray(cand_ms, dtype=np.float64) / np.asarray(base_ms, dtype=np.float64)
    point = float(np.median(ratios))
    if len(ratios) < 3:  # too few pairs for an interval worth the name
        return Interval(point, 0.0, math.inf, len(ratios))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ratios), size=(resamples, len(ratios)))
    meds = np.median(ratios[idx], axis=1)
    low, high = (float(v) for v in np.quantile(meds, [1 - confidence, confidence]))
    return Interval(point, low, high, len(ratios))


def verdict(interval: Interval, threshold: float) -> str:
    """``fail``, ``pass`` or ``inconclusive`` (see the module docstring)."""
    limit = 1.0 + threshold
    if interval.low > limit:
        return "fail"
    if interval.high <= limit:
        return "pass"
    return "inconclusive"


def spread(values: Sequence[float]) -> float:
    """(p90 - p10) / median of a sequence: how much it varied (0 for fewer than 2 values)."""
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    p10, p90 = np.quantile(np.asarray(values, dtype=np.float64), [0.1, 0.9])
    return float((p90 - p10) / med) if med else 0.0
