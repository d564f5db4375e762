"""Timing rounds: open a contender's session and time it at every resolution.

The first round runs inside the row (:mod:`sr_edge.bench.execute`); with
``LatencyPlan.rounds`` above 1, :func:`another_round` reopens each finished row in later
passes over the matrix (minutes apart) and keeps, per resolution, the round with the lower
p50: a shared host's slow phases last seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from ..devices import Resolution
from . import heap
from .contenders import Contender, Deployed
from .memory import MemoryProbe, MemoryStats
from .planning import Plan
from .results import Row, Timing
from .timing import LatencyPlan, measure_latency, measure_stream


def _timings(
    deployed: Deployed,
    resolutions: Sequence[Resolution],
    scale: int,
    latency: LatencyPlan,
    peak: float | None,
    probe: MemoryProbe,
) -> dict[str, Timing]:
    rng = np.random.default_rng(0)
    out: dict[str, Timing] = {}
    for res in resolutions:
        frame = rng.integers(0, 256, (res.height, res.width, 3), dtype=np.uint8)
        frame_stats = measure_latency(lambda f=frame: deployed.upscaler(f), latency)  # type: ignore[misc]
        stream = measure_stream(deployed.upscaler, frame, max(latency.min_runs, 4))
        probe.sample()
        model_stats = None
        gops = achieved = efficiency = None
        if deployed.model_fn is not None:
            x = rng.random((1, deployed.channels, res.height, res.width), dtype=np.float32)
            # The frame runs just ran this network at this size: one warm-up run is enough.
            model_stats = measure_latency(lambda x=x, fn=deployed.model_fn: fn(x), latency.warmed())  # type: ignore[misc]
            probe.sample()
            if deployed.macs_per_lr_pixel:
                gops = 2.0 * deployed.macs_per_lr_pixel * res.width * res.height / 1e9
                achieved = gops / (model_stats.p50_ms / 1000.0)
                efficiency = achieved / peak if peak else None
        out[str(res)] = Timing(
            frame_stats,
            model_stats,
            round(gops, 4) if gops is not None else None,
            round(achieved, 2) if achieved is not None else None,
            round(efficiency, 4) if efficiency is not None else None,
            round(stream, 2),
        )
    return out


@contextlib.contextmanager
def measured(
    c: Contender, plan_: Plan, peak: float | None, latency: LatencyPlan | None = None
) -> Iterator[tuple[Deployed, dict[str, Timing], MemoryStats]]:
    """Open ``c``'s session and time it at every resolution; the session closes on exit.

    Memory is probed from before the open, so session build memory counts.
    """
    deployed: Deployed | None = None
    if plan_.settings.heap == "steady":
        heap.release()  # what earlier rows freed is not this row's memory
    try:
        with MemoryProbe() as probe:
            deployed = c.open()
            probe.sample()
            timings = _timings(deployed, plan_.resolutions, c.scale, latency or plan_.settings.latency, peak, probe)
            memory = probe.stats()
        yield deployed, timings, memory
    finally:
        if deployed is not None:
            deployed.close()


def rounds_done(row: Row) -> int:
    """How many timing rounds every resolution of ``row`` has had (0: it has no latency)."""
    timings = list((row.latency or {}).values())
    if not timings:
        return 0
    return min(len(t.frame.round_p50_ms) or 1 for t in timings)


def another_round(row: Row, c: Contender, plan_: Plan) -> Row:
    """Time ``row`` once more and keep, per resolution and kind, the round with the lower p50."""
    peak = plan_.profile.hardware.peak(c.precision)
    # A reopened session needs one untimed run (first-run set-up at this size), not the
    # first round's full warm-up: that saves about a third of each later round.
    try:
        with measured(c, plan_, peak, plan_.settings.latency.warmed()) as (_, again, _):
            pass
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # the first round stands; a flaky reopen must not lose a finished row
        return row
    merged: dict[str, Timing] = {}
    for res, t in (row.latency or {}).items():
        new = again.get(res)
        if new is None:
            merged[res] = t
            continue
        model = t.model.best_with(new.model) if t.model is not None and new.model is not None else t.model
        achieved = efficiency = None
        if model is not None and t.gops_per_frame:
            achieved = round(t.gops_per_frame / (model.p50_ms / 1000.0), 2)
            efficiency = round(achieved / peak, 4) if peak else None
        merged[res] = dataclasses.replace(
            t,
            frame=t.frame.best_with(new.frame),
            model=model,
            achieved_gops=achieved,
            efficiency=efficiency,
            stream_fps=max((v for v in (t.stream_fps, new.stream_fps) if v is not None), default=None),
        )
    return dataclasses.replace(row, latency=merged)
