"""One table of variants by devices, with each device's pick under its budget.

A team measures on several devices (one ``sr-edge bench`` results file each; every file
carries its device profile and machine) and may name devices nobody measured (a Jetson,
from a laptop): :func:`across_devices` runs :func:`~sr_edge.select.select` once per device
and lines the candidates up by row id. ``sr-edge report A.json B.json`` and
``sr-edge select --results A.json B.json`` show it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..bench import Results, load_results
from ..devices import DeviceProfile, Resolution
from ..errors import SrEdgeError
from .core import Candidate, LatencyKind, Selection, SelectOptions, select
from .measured import profile_of


@dataclass(frozen=True)
class DevicesTable:
    """Per device, its :class:`Selection`; the union of their candidates' row ids, best first."""

    scale: int
    selections: tuple[Selection, ...]
    row_ids: tuple[str, ...]

    def cell(self, device: int, row_id: str) -> Candidate | None:
        """The candidate ``row_id`` on the ``device``-th device (None: not a candidate there)."""
        return next((c for c in self.selections[device].candidates if c.id == row_id), None)

    def psnr(self, row_id: str) -> float | None:
        """The row's PSNR on the first device that has a figure for it."""
        for i in range(len(self.selections)):
            c = self.cell(i, row_id)
            if c is not None and c.psnr is not None:
                return c.psnr
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"scale": self.scale, "rows": list(self.row_ids), "devices": [s.to_json() for s in self.selections]}


def across_devices(
    results: Sequence[str | os.PathLike[str] | Results] = (),
    devices: Sequence[str | os.PathLike[str] | DeviceProfile] = (),
    scale: int = 2,
    budget_ms: float | None = None,
    memory_mb: float | None = None,
    min_psnr: float | None = None,
    resolution: Resolution | str | None = None,
    dataset: str = "Set5",
    latency: LatencyKind = "frame",
    bundles_dir: str | os.PathLike[str] | None = None,
    calibration: Sequence[str | os.PathLike[str]] = (),
) -> DevicesTable:
    """Select on every device: those the ``results`` files were measured for, then ``devices``.

    Results files of the same device are pooled. ``None`` budgets take each device's own.
    """
    loaded = [r if isinstance(r, Results) else load_results(r) for r in results]
    if not loaded and not devices:
        raise SrEdgeError("pass results files (one per device) or device names")
    by_device: dict[str, list[Results]] = {}
    for r in loaded:
        by_device.setdefault(str(r.device.get("name")), []).append(r)
    common: dict[str, Any] = {
        "scale": scale, "budget_ms": budget_ms, "memory_mb": memory_mb, "min_psnr": min_psnr,
        "resolution": resolution, "dataset": dataset, "latency": latency, "bundles_dir": bundles_dir,
        "calibration": tuple(calibration),
    }  # fmt: skip
    selections: list[Selection] = []
    for files in by_device.values():
        paths = tuple(str(r.path) for r in files if r.path is not None)
        selections.append(select(SelectOptions(device=profile_of(files[0]), results=paths, **common)))
    for d in devices:
        selections.append(select(SelectOptions(device=d, **common)))
    names = [s.device.name for s in selections]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SrEdgeError(f"device {dupes[0]!r} is named twice (pass its results files together, or once)")
    ids: dict[str, float] = {}
    for s in selections:
        for c in s.candidates:
            ids[c.id] = max(ids.get(c.id, -1.0), c.psnr if c.psnr is not None else -1.0)
    order = sorted(ids, key=lambda i: (-ids[i], i))
    return DevicesTable(scale, tuple(selections), tuple(order))
