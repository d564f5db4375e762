"""Measuring a pick on this machine, to check it meets the budget it was chosen under.

``verify(selection)`` opens the picked bundle on its backend at its precision (the
profile's device and threads) and times it as the bench does: the whole frame (uint8 in
and out, colour handling included) or the network alone, whichever the selection ranked
by. It refuses a selection made for another device: a figure measured here says nothing
about a Jetson.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bench import LatencyPlan, measure_latency
from ..bench.timing import LatencyStats
from ..devices import probe_machine
from ..errors import SrEdgeError
from .core import Selection


@dataclass(frozen=True)
class Verification:
    """The pick, timed here."""

    id: str
    stats: LatencyStats
    budget_ms: float
    kind: str

    @property
    def meets(self) -> bool:
        """True when the measured p50 is within the budget."""
        return self.stats.p50_ms <= self.budget_ms

    def line(self) -> str:
        """One line for people."""
        verdict = "meets" if self.meets else "MISSES"
        return (
            f"verified here: {self.id} {self.kind} p50 {self.stats.p50_ms:.1f} ms "
            f"(p90 {self.stats.p90_ms:.1f}, {self.stats.runs} runs) {verdict} the {self.budget_ms:g} ms budget"
        )


def is_this_machine(selection: Selection) -> bool:
    """True when the selection's device profile describes the machine this runs on."""
    profile = selection.device
    if profile.source == "detected":
        from ..devices import detected_name

        return profile.name == detected_name(probe_machine())
    ok, _ = profile.detect.match(probe_machine())
    return ok


def verify(selection: Selection, plan: LatencyPlan | None = None) -> Verification:
    """Time ``selection``'s pick on this machine (see the module docstring)."""
    from ..backends import load_bundle

    pick = selection.pick
    if pick is None:
        raise SrEdgeError(f"nothing to verify: {selection.reason}")
    if pick.bundle is None:
        raise SrEdgeError(f"{pick.id}: its bundle is not here; pass --bundles with the folder that holds it")
    if not is_this_machine(selection):
        raise SrEdgeError(
            f"this machine is not a {selection.device.name}; verify the pick on that device (or select for this one)"
        )
    rt = selection.device.runtime
    options = {"threads": rt.threads} if rt.threads and pick.backend != "tensorrt" else {}
    plan = plan or LatencyPlan(warmup=3, min_runs=10, min_time_s=2.0, max_time_s=30.0)
    res = selection.resolution
    rng = np.random.default_rng(0)
    with load_bundle(pick.bundle, pick.backend, pick.precision, rt.device, **options) as session:
        if session.fallback:
            raise SrEdgeError(f"{pick.id}: runs as another precision here ({session.fallback})")
        if selection.latency == "frame":
            frame = rng.integers(0, 256, (res.height, res.width, 3), dtype=np.uint8)
            upscaler = session.upscaler()
            stats = measure_latency(lambda: upscaler(frame), plan)
        else:
            x = rng.random((1, session.input_spec.channels, res.height, res.width), dtype=np.float32)
            stats = measure_latency(lambda: session.run(x), plan)
    return Verification(pick.id, stats, selection.budget_ms, selection.latency)
