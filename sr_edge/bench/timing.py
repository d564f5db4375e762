"""Latency measurement: warm-up, then repeat until a minimum count AND a minimum time.

A run is timed with ``time.perf_counter_ns`` around one call that returns host memory
(every backend's ``run`` copies its output back, so GPU work is finished when it
returns). The statistics are over the timed runs only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import SrEdgeError


@dataclass(frozen=True)
class LatencyPlan:
    """How long to measure: ``warmup`` untimed runs, then timed runs until at least
    ``min_runs`` were made and ``min_time_s`` has passed; stop early (flagged) once
    ``max_time_s`` has passed and at least 3 runs were made."""

    warmup: int = 3
    min_runs: int = 10
    min_time_s: float = 2.0
    max_time_s: float = 30.0
    # Latency is measured this many times per row, in passes over the whole matrix (so
    # minutes apart), and the round with the lowest p50 is reported: a shared host's slow
    # phases last seconds, and one contiguous window cannot be reproduced within 5%.
    rounds: int = 1

    def warmed(self) -> LatencyPlan:
        """This plan for a session that has already run at this size: one warm-up run."""
        return dataclasses.replace(self, warmup=min(self.warmup, 1))

    def __post_init__(self) -> None:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise SrEdgeError(f"warm-up runs must be a non-negative integer, got {self.warmup!r}")
        if isinstance(self.min_runs, bool) or not isinstance(self.min_runs, int) or self.min_runs < 1:
            raise SrEdgeError(f"minimum runs must be a positive integer, got {self.min_runs!r}")
        if not (isinstance(self.min_time_s, (int, float)) and self.min_time_s >= 0):
            raise SrEdgeError(f"minimum time must be >= 0 seconds, got {self.min_time_s!r}")
        if not (isinstance(self.max_time_s, (int, float)) and self.max_time_s >= self.min_time_s):
            raise SrEdgeError(f"maximum time must be >= the minimum time, got {self.max_time_s!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 1 <= self.rounds <= 20:
            raise SrEdgeError(f"latency rounds must be an integer from 1 to 20, got {self.rounds!r}")


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of the timed runs, in milliseconds (``fps`` = 1000 / mean)."""

    runs: int
    warmup: int
    total_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    fps: float
    truncated: bool = False  # stopped by max_time_s before min_runs / min_time were met
    round_p50_ms: tuple[float, ...] = ()  # every round's p50 when measured in rounds (these stats: the best)

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray, warmup: int, total_s: float, truncated: bool) -> LatencyStats:
        """Summarise timed runs (milliseconds)."""
        s = np.asarray(samples_ms, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no timed runs")
        p50, p90, p99 = (float(v) for v in np.percentile(s, [50, 90, 99]))
        mean = float(s.mean())
        return cls(
            runs=int(s.size),
            warmup=warmup,
            total_s=round(total_s, 4),
            p50_ms=round(p50, 4),
            p90_ms=round(p90, 4),
            p99_ms=round(p99, 4),
            mean_ms=round(mean, 4),
            stdev_ms=round(float(s.std(ddof=1)) if s.size > 1 else 0.0, 4),
            min_ms=round(float(s.min()), 4),
            max_ms=round(float(s.max()), 4),
            fps=round(1000.0 / mean, 3) if mean > 0 else math.inf,
            truncated=truncated,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LatencyStats:
        """Inverse of :meth:`to_json` (unknown keys ignored, for forward compatibility)."""
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        if "round_p50_ms" in kw:
            kw["round_p50_ms"] = tuple(kw["round_p50_ms"])
        return cls(**kw)

    def best_with(self, other: LatencyStats) -> LatencyStats:
        """Fold another round in: keep the statistics of the round with the lower p50."""
        rounds = (*(self.round_p50_ms or (self.p50_ms,)), other.p50_ms)
        best = self if self.p50_ms <= other.p50_ms else other
        return dataclasses.replace(best, round_p50_ms=rounds)


def measure_latency(
    fn: Callable[[], Any], plan: LatencyPlan, clock: Callable[[], int] = time.perf_counter_ns
) -> LatencyStats:
    """Time ``fn()`` per ``plan``."""
    for _ in range(plan.warmup):
        fn()
    samples: list[float] = []
    start = clock()
    min_ns, max_ns = plan.min_time_s * 1e9, plan.max_time_s * 1e9
    truncated = False
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        elapsed = t1 - start
        if len(samples) >= plan.min_runs and elapsed >= min_ns:
            break
        if elapsed >= max_ns and len(samples) >= min(3, plan.min_runs):
            truncated = True
            break
    return LatencyStats.from_samples(np.asarray(samples), plan.warmup, (clock() - start) / 1e9, truncated)


def measure_stream(fn: Callable[[np.ndarray], Any], frame: np.ndarray, frames: int) -> float:
    """Sustained frames per second of ``fn`` over a stream of ``frames`` frames.

    The frames come from a producer thread, one fresh copy each, at most two ahead (as a
    decoder would hand them over: :class:`~sr_edge.runtime.pipeline.Prefetch`, the video
    path's own stage), so a frame's preparation overlaps the previous frame's inference.
    Per-frame latency is :func:`measure_latency`'s; this is the rate a stream sustains.
    """
    from ..runtime.pipeline import Prefetch

    if frames < 1:
        raise SrEdgeError(f"a stream needs at least one frame, got {frames}")
    fn(frame)  # warm
    source = (frame.copy() for _ in range(frames))
    start = time.perf_counter()
    with Prefetch(source, depth=2, name="frames") as stream:
        for f in stream:
            fn(f)
    return frames / (time.perf_counter() - start)
