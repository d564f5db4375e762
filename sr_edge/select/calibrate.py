"""Efficiency factors for the roofline estimate, fitted on the machines that were measured.

A sample is one measured row of a results file (``sr-edge bench``): its network p50 next
to the roofline time of its graph (:mod:`sr_edge.roofline`) under the peaks of the profile
it was measured for. ``efficiency = roofline / measured``: the share of the roofline that
backend reached at that precision there. A :class:`Factor` per backend and precision is the
geometric mean over machines of each machine's geometric mean, so a machine measured four
times does not outvote one measured once. Where no row of a backend and precision was
measured, the factor falls back to the same backend at any precision, then the same
precision on any backend, then every sample, and says so (``basis``).

Two smaller fits ride along: the frame overhead (uint8 colour handling and copies around
the network, charged per output pixel against the device's bandwidth) and the memory a
session adds over its graph's working set (``rise / working set`` per backend).

:func:`check_estimates` ranks a device's measured rows by their estimate, calibrated
without that machine's own rows, and quotes the Spearman rank correlation with the
measured ranking.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bench import Results, Row
from ..bundle import find_bundles, read_manifest
from ..devices import DeviceProfile, Resolution
from ..errors import SrEdgeError
from ..paths import bundles_dir as default_bundles_dir
from ..roofline import graph_cost, roofline
from .measured import bundle_sha, machine_cpu, misfit, profile_of

# With no measured results anywhere (an install without the repository's benchmarks), the
# estimate still ranks variants by their roofline; its absolute figures assume this share.
UNCALIBRATED_EFFICIENCY = 0.3
UNCALIBRATED_MEMORY_FACTOR = 3.0


def lanes(profile: DeviceProfile, precision: str) -> int:
    """The channel blocking a device's kernels pad output channels to (an assumption, stated in docs/select.md).

    CPUs: the fp32 vector width (16 with AVX-512, 8 with AVX2, 4 with Arm NEON); oneDNN's
    AMX and VNNI kernels block output channels by 16 too. GPUs: none for fp32 (threads run
    over pixels), 8 for fp16/bf16 tensor-core layouts, 32 for int8 (TensorRT's NC/32 layout).
    """
    if profile.runtime.device == "cpu":
        if "avx512f" in profile.detect.isa:
            return 16
        if any(a in ("aarch64", "arm64") for a in profile.detect.arch):
            return 4
        return 8
    return {"fp32": 1, "fp16": 8, "bf16": 8, "int8": 32}.get(precision, 1)


@dataclass(frozen=True)
class Sample:
    """One measured row next to its roofline time."""

    row_id: str
    device: str
    cpu: str
    backend: str
    precision: str
    resolution: str
    roofline_s: float
    measured_s: float  # network p50
    frame_s: float | None  # frame p50
    out_pixels: int
    bandwidth_gbs: float
    working_set_mb: float
    rise_mb: float | None

    @property
    def machine(self) -> str:
        """The machine class the sample belongs to: profile name and CPU model."""
        return f"{self.device} ({self.cpu})"

    @property
    def efficiency(self) -> float:
        """Share of the roofline reached."""
        return self.roofline_s / self.measured_s


@dataclass(frozen=True)
class Factor:
    """The efficiency used for one backend and precision, and what it rests on."""

    backend: str
    precision: str
    efficiency: float
    samples: int
    machines: tuple[str, ...]
    low: float
    high: float
    basis: str  # "fit" or a sentence saying which fallback was used


def _geomean(values: Iterable[float]) -> float:
    vals = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan


def _by_machine(samples: Sequence[Sample]) -> float:
    machines: dict[str, list[float]] = {}
    for s in samples:
        machines.setdefault(s.machine, []).append(s.efficiency)
    return _geomean(_geomean(v) for v in machines.values())


@dataclass(frozen=True)
class Calibration:
    """The samples a set of results files gives, and the factors fitted on them."""

    samples: tuple[Sample, ...]
    sources: tuple[str, ...] = ()  # the results files read
    skipped: tuple[str, ...] = ()  # rows left out, one line each (graph not found, ...)

    @property
    def machines(self) -> tuple[str, ...]:
        """The machine classes the fit rests on."""
        return tuple(sorted({s.machine for s in self.samples}))

    def without(self, machine: str) -> Calibration:
        """The same calibration with one machine's samples left out (to check estimates on it)."""
        return Calibration(tuple(s for s in self.samples if s.machine != machine), self.sources, self.skipped)

    def factor(self, backend: str, precision: str, device: str | None = None) -> Factor:
        """The efficiency for ``backend`` at ``precision``, with the fallback it took, if any.

        With ``device``, that device's own measured rows come first: a device measured at
        another resolution or with another graph is its own best calibration.
        """
        tiers = (
            (f"fit on {device}'s own rows",
             lambda s: s.device == device and s.backend == backend and s.precision == precision),
            ("fit", lambda s: s.backend == backend and s.precision == precision),
            (f"no {backend}/{precision} row measured: {backend} at other precisions",
             lambda s: s.backend == backend),
            (f"no {backend} row measured: {precision} on other backends", lambda s: s.precision == precision),
            (f"no {backend} or {precision} row measured: every measured row", lambda s: True),
        )  # fmt: skip
        for basis, keep in tiers[0 if device else 1 :]:
            chosen = [s for s in self.samples if keep(s)]
            if chosen:
                effs = [s.efficiency for s in chosen]
                machines = tuple(sorted({s.machine for s in chosen}))
                eff = _by_machine(chosen)
                return Factor(backend, precision, eff, len(chosen), machines, min(effs), max(effs), basis)
        basis = f"uncalibrated: no measured results to fit on; {UNCALIBRATED_EFFICIENCY:g} assumed"
        eff = UNCALIBRATED_EFFICIENCY
        return Factor(backend, precision, eff, 0, (), eff, eff, basis)

    def frame_overhead_s(self, out_pixels: int, bandwidth_gbs: float) -> float:
        """Estimated time of the work around the network (colour, copies) for a frame of ``out_pixels``.

        Fitted as bytes-equivalent per output pixel (the work is memory-bound), so it scales
        with the device's bandwidth.
        """
        per_px = [
            (s.frame_s - s.measured_s) * s.bandwidth_gbs * 1e9 / s.out_pixels
            for s in self.samples
            if s.frame_s is not None and s.frame_s > s.measured_s
        ]
        if not per_px:
            return 0.0
        return statistics.median(per_px) * out_pixels / (bandwidth_gbs * 1e9)

    def memory_factor(self, backend: str) -> float:
        """Session memory rise over the graph's working set, for ``backend`` (else over every backend)."""
        for keep in (lambda s: s.backend == backend, lambda s: True):
            ratios = [s.rise_mb / s.working_set_mb for s in self.samples if keep(s) and s.rise_mb and s.working_set_mb]
            if ratios:
                return statistics.median(ratios)
        return UNCALIBRATED_MEMORY_FACTOR


def _graph_index(folders: Sequence[Path]) -> dict[str, Path]:
    """sha256 of model.onnx -> bundle folder, for every bundle under ``folders`` (from the manifests)."""
    index: dict[str, Path] = {}
    for root in folders:
        for folder in find_bundles(root):
            try:
                sha = str(read_manifest(folder)["files"]["model.onnx"]["sha256"])
            except (SrEdgeError, KeyError, TypeError):
                continue
            index.setdefault(sha, folder)
    return index


def locate_graph(row: Row, index: Mapping[str, Path]) -> Path | None:
    """The bundle folder holding the very graph ``row`` measured (matched by sha256), if it is here."""
    sha = bundle_sha(row)
    if sha is None:
        return None
    return index.get(sha)


def samples_of(results: Results, index: Mapping[str, Path]) -> tuple[list[Sample], list[str]]:
    """Every sample one results file gives, and one line per measured row it could not use."""
    if misfit(results):
        return [], [f"{results.path}: measured on a machine outside its profile; not used for calibration"]
    profile = profile_of(results)
    hw = profile.hardware
    out: list[Sample] = []
    skipped: list[str] = []
    for row in results.rows:
        if not row.ok or row.peer is not None:
            continue
        folder = locate_graph(row, index)
        if folder is None:
            skipped.append(f"{results.path}: {row.id}: its graph (sha256) is not among the bundles here")
            continue
        peak = hw.peak(row.precision)
        if peak is None:
            skipped.append(f"{results.path}: {row.id}: the profile has no {row.precision} peak")
            continue
        for res_text, timing in row.latency.items():
            if timing.model is None:
                continue
            res = Resolution.parse(res_text)
            cost = graph_cost(folder, res.width, res.height, row.precision)
            rf = roofline(cost, peak, hw.memory_bandwidth_gbs, lanes(profile, row.precision))
            rise = (row.memory or {}).get("rss_delta_mb")
            out.append(
                Sample(
                    row.id, profile.name, machine_cpu(results), row.backend, row.precision, res_text, rf.seconds,
                    timing.model.p50_ms / 1000.0, timing.frame.p50_ms / 1000.0,
                    res.width * res.height * row.scale**2, hw.memory_bandwidth_gbs, cost.peak_live_bytes / 1e6,
                    float(rise) if rise is not None else None,
                )
            )  # fmt: skip
    return out, skipped


def fit(results: Sequence[Results], bundle_dirs: Sequence[str | os.PathLike[str]] | None = None) -> Calibration:
    """A calibration from measured results; graphs are found by sha256 under ``bundle_dirs`` (default: the shipped)."""
    folders = [Path(d) for d in (bundle_dirs or [default_bundles_dir()])]
    index = _graph_index(folders)
    samples: list[Sample] = []
    skipped: list[str] = []
    seen: set[tuple[str, str, str, str]] = set()
    for res in results:
        got, left = samples_of(res, index)
        for s in got:
            key = (str(res.path), s.row_id, s.resolution, s.machine)
            if key not in seen:
                seen.add(key)
                samples.append(s)
        skipped += left
    return Calibration(tuple(samples), tuple(str(r.path) for r in results), tuple(skipped))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get their mean rank)."""
    if len(a) != len(b) or len(a) < 2:
        raise SrEdgeError(f"rank correlation needs two sequences of the same length >= 2, got {len(a)} and {len(b)}")

    def ranks(x: Sequence[float]) -> list[float]:
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0 + 1.0
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va and vb else math.nan


@dataclass(frozen=True)
class EstimateCheck:
    """A device's measured rows next to their estimates, and how well the two rankings agree."""

    device: str
    machine: str
    resolution: str
    rows: tuple[tuple[str, float, float], ...]  # (row id, measured network ms, estimated network ms)
    rho: float  # Spearman rank correlation of estimated vs measured
    calibrated_on: tuple[str, ...]  # the machines whose rows fitted the factors (this one left out)

    def to_json(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "device": self.device,
            "machine": self.machine,
            "resolution": self.resolution,
            "spearman": self.rho,
            "calibrated_on": list(self.calibrated_on),
            "rows": [{"id": r, "measured_ms": m, "estimated_ms": e} for r, m, e in self.rows],
        }


def check_estimates(
    results: Results,
    calibration: Calibration,
    resolution: str | None = None,
    leave_out: bool = True,
    bundle_dirs: Sequence[str | os.PathLike[str]] | None = None,
) -> EstimateCheck:
    """Estimate every measured row of ``results`` and compare the rankings (Spearman).

    ``leave_out``: fit the factors without this machine's own rows, so the check is of the
    estimate as it would be for an unmeasured device.
    """
    own, skipped = samples_of(results, _graph_index([Path(d) for d in (bundle_dirs or [default_bundles_dir()])]))
    if not own:
        why = skipped[0] if skipped else f"{results.path}: no measured bundle row with network latency"
        raise SrEdgeError(f"nothing to check: {why}")
    res = resolution or own[0].resolution
    own = [s for s in own if s.resolution == res]
    machine = own[0].machine if own else ""
    cal = calibration.without(machine) if leave_out else calibration
    if not cal.samples:
        raise SrEdgeError(f"no other machine's results to calibrate on (only {machine}); pass more results files")
    rows = []
    for s in own:
        factor = cal.factor(s.backend, s.precision)
        rows.append((s.row_id, s.measured_s * 1000.0, s.roofline_s / factor.efficiency * 1000.0))
    rho = spearman([r[1] for r in rows], [r[2] for r in rows])
    return EstimateCheck(results.device.get("name", "?"), machine, res, tuple(rows), rho, cal.machines)
