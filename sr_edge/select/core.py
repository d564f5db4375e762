"""``select``: the best-quality variant that meets a device's latency and memory budget.

A candidate is one deployable variant: a bundle (any folder under the bundles directory:
a shipped model, a pruned or int8 copy; its manifest's ``precision`` and, when present,
``compression`` say what it is) on one of the device's backends at one of its precisions,
plus every bundle row a results file measured for that device. Its figures are:

- **measured** where a results file of that device holds the row for the same graph
  (sha256): frame or network p50 at the resolution, the session's memory rise, PSNR-Y;
- **estimated** otherwise: the roofline time of its graph on the profile's peaks
  (:mod:`sr_edge.roofline`) divided by the efficiency fitted for that backend and precision
  on the measured machines (:mod:`sr_edge.select.calibrate`); a measurement at another
  resolution is scaled by the pixel count. Every estimated figure says so.

Quality is the PSNR-Y on one dataset: measured by that device's run, else by any run of the
same graph at that precision, else the figure the export recorded in the manifest.

The pick: among the candidates that run there, meet the budget, the memory budget and
``min_psnr``, the highest PSNR; ties go to the faster. Every other candidate says why it
lost (over budget, over memory, lower PSNR, not runnable there).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..bench import Results, Row
from ..bundle import Bundle, find_bundles, read_bundle
from ..devices import DeviceProfile, Resolution
from ..errors import SrEdgeError, one_line
from ..paths import bundles_dir as default_bundles_dir
from ..types import check_scale
from .calibrate import Calibration, Factor, fit, lanes
from .measured import (
    bundle_sha,
    committed_results,
    find_results,
    load_many,
    machine_cpu,
    measured_rows,
    resolve_profile,
)

LatencyKind = Literal["frame", "network"]
LATENCY_KINDS: tuple[str, ...] = ("frame", "network")


def _positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SrEdgeError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SelectOptions:
    """What to choose for: a device, a budget, a scale (``None`` fields take the profile's values).

    ``device``: a profile name, a .toml path, a :class:`DeviceProfile`, ``"detected"`` or
    ``None`` (this machine's profile, as ``sr-edge bench`` detects it). ``results``: results
    files of that device (``sr-edge bench``); empty: the ones found where bench and the
    repository put them. ``calibration``: results files the efficiency factors are fitted on
    (empty: the repository's committed results plus ``results``). ``estimate``: ignore
    measurements and rank by the estimate alone.
    """

    device: str | os.PathLike[str] | DeviceProfile | None = None
    budget_ms: float | None = None
    scale: int = 2
    resolution: Resolution | str | None = None
    min_psnr: float | None = None
    memory_mb: float | None = None
    results: tuple[str | os.PathLike[str], ...] = ()
    bundles_dir: str | os.PathLike[str] | None = None
    dataset: str = "Set5"
    latency: LatencyKind = "frame"
    estimate: bool = False
    calibration: tuple[str | os.PathLike[str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_scale(self.scale))
        object.__setattr__(self, "budget_ms", _positive("budget_ms", self.budget_ms))
        object.__setattr__(self, "memory_mb", _positive("memory_mb", self.memory_mb))
        p = self.min_psnr
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 100):
            raise SrEdgeError(f"min_psnr must be a PSNR in dB (0-100), got {self.min_psnr!r}")
        if isinstance(self.resolution, str):
            try:
                object.__setattr__(self, "resolution", Resolution.parse(self.resolution, "resolution"))
            except ValueError as e:
                raise SrEdgeError(str(e)) from None
        elif self.resolution is not None and not isinstance(self.resolution, Resolution):
            raise SrEdgeError(f"resolution must look like 640x360, got {self.resolution!r}")
        if self.latency not in LATENCY_KINDS:
            raise SrEdgeError(f"latency must be one of {', '.join(LATENCY_KINDS)}, got {self.latency!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise SrEdgeError(f"dataset must be a dataset name, got {self.dataset!r}")
        for name in ("results", "calibration"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                value = (value,)
            object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class Candidate:
    """One variant on one device, with its figures, where each came from, and its verdict."""

    id: str  # variant@backend/precision, as results files name rows
    variant: str
    model: str
    backend: str
    precision: str
    compression: str | None
    bundle: str | None  # bundle folder, when it is here
    psnr: float | None
    psnr_source: str
    latency_ms: float | None
    latency_estimated: bool
    latency_source: str
    memory_mb: float | None
    memory_estimated: bool
    not_runnable: str | None = None  # why it cannot run on the device
    verdict: str = ""
    fits: bool = False

    @property
    def label(self) -> str:
        """The row id, with its compression when it has one."""
        return self.id + (f" [{self.compression}]" if self.compression else "")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`: the pick (or why there is none) and every candidate."""

    device: DeviceProfile
    scale: int
    resolution: Resolution
    budget_ms: float
    memory_mb: float
    min_psnr: float | None
    dataset: str
    latency: LatencyKind
    pick: Candidate | None
    candidates: tuple[Candidate, ...]  # the pick first, then the runners-up in rank order
    measured_from: tuple[str, ...]  # results files of this device that were used
    machines: tuple[str, ...]  # the CPUs those files were measured on
    factors: tuple[Factor, ...]  # the efficiency factors the estimates used
    calibrated_on: tuple[str, ...]  # machines the factors were fitted on
    reason: str | None = None  # one line when nothing fits

    @property
    def estimated(self) -> bool:
        """True when any candidate's latency is an estimate."""
        return any(c.latency_estimated for c in self.candidates)

    def headline(self) -> str:
        """One line: the pick and its figures, or why nothing fits."""
        if self.pick is None:
            return self.reason or "nothing fits"
        c = self.pick
        mem = f", memory {c.memory_mb:.0f} MB{' (estimated)' if c.memory_estimated else ''}" if c.memory_mb else ""
        psnr = f"PSNR-Y {self.dataset} {c.psnr:.2f} dB" if c.psnr is not None else "PSNR unknown"
        lat = f"{self.latency} p50 {c.latency_ms:.1f} ms{' (ESTIMATED)' if c.latency_estimated else ' (measured)'}"
        return f"pick for {self.device.name} within {self.budget_ms:g} ms: {c.label}: {psnr}, {lat}{mem}"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (for ``sr-edge select --json``)."""
        return {
            "device": self.device.name,
            "device_source": self.device.source,
            "hardware_estimated": self.device.hardware.estimated,
            "scale": self.scale,
            "resolution": str(self.resolution),
            "budget_ms": self.budget_ms,
            "memory_mb": self.memory_mb,
            "min_psnr": self.min_psnr,
            "dataset": self.dataset,
            "latency": self.latency,
            "pick": self.pick.to_json() if self.pick else None,
            "reason": self.reason,
            "candidates": [c.to_json() for c in self.candidates],
            "measured_from": list(self.measured_from),
            "machines": list(self.machines),
            "calibrated_on": list(self.calibrated_on),
            "factors": [dataclasses.asdict(f) for f in self.factors],
        }


def compression_of(manifest: Mapping[str, Any]) -> str | None:
    """A short description of a bundle's compression record (pruning, quantisation), if any."""
    rec = manifest.get("compression")
    if not rec:
        return None
    if isinstance(rec, str):
        return rec
    if isinstance(rec, Mapping):
        parts = [f"{k}={v}" for k, v in sorted(rec.items()) if isinstance(v, (str, int, float, bool))]
        return ", ".join(parts) or "compressed"
    if isinstance(rec, (list, tuple)):
        return " + ".join(str(compression_of({"compression": r}) or r) for r in rec)
    return str(rec)


@dataclass
class _Draft:
    """A candidate being filled in."""

    id: str
    variant: str
    model: str
    backend: str
    precision: str
    bundle: Bundle | None = None
    row: Row | None = None
    results: Results | None = None
    compression: str | None = None
    notes: list[str] = field(default_factory=list)


def _bundles(root: Path, scale: int) -> tuple[list[tuple[str, Bundle]], list[str]]:
    found, errors = [], []
    for folder in find_bundles(root):
        variant = folder.relative_to(root).as_posix()
        try:
            b = read_bundle(folder)
        except SrEdgeError as e:
            errors.append(f"{variant}: {one_line(str(e))}")
            continue
        if b.scale == scale:
            found.append((variant, b))
    return found, errors


def _pairings(profile: DeviceProfile, bundle: Bundle) -> list[tuple[str, str]]:
    """(backend, precision) pairs of the profile the bundle can be opened at (the backends' own rule)."""
    from ..backends import get_backend
    from ..backends.base import precision_matches_bundle

    out = []
    for backend in profile.runtime.backends:
        allowed = get_backend(backend).precisions
        for precision in profile.runtime.precisions:
            try:
                precision_matches_bundle(backend, bundle, precision, allowed)  # type: ignore[arg-type]
            except SrEdgeError:
                continue  # not a pairing at all (fp32 on a QDQ graph, int8 on a float one)
            out.append((backend, precision))
    return out


def _quality(draft: _Draft, dataset: str, others: Sequence[Results]) -> tuple[float | None, str]:
    if draft.row is not None and dataset in draft.row.quality:
        where = draft.results.path if draft.results is not None else "results"
        return draft.row.quality[dataset].psnr_y, f"measured ({where})"
    sha = draft.bundle.onnx_sha256 if draft.bundle is not None else (bundle_sha(draft.row) if draft.row else None)
    if sha:
        for res in others:
            for r in res.rows:
                if r.ok and r.precision == draft.precision and bundle_sha(r) == sha and dataset in r.quality:
                    return r.quality[dataset].psnr_y, f"measured on {res.device.get('name')} ({r.backend})"
    if draft.bundle is not None:
        m = draft.bundle.metrics or {}
        if m.get("dataset") == dataset and m.get("psnr_y") is not None:
            same = draft.precision == draft.bundle.precision
            note = "" if same else f"; {draft.precision} may differ by a few 0.01 dB"
            return float(m["psnr_y"]), f"export record ({draft.bundle.precision}, {m.get('backend', '?')}){note}"
    return None, f"no {dataset} figure (not measured, none in the manifest)"


def _measured_latency(row: Row, res: Resolution, kind: LatencyKind) -> tuple[float | None, bool, str]:
    """(ms, estimated?, source) from a measured row; another resolution is scaled by pixels."""
    if str(res) in row.latency:
        t = row.latency[str(res)]
        stats = t.frame if kind == "frame" else t.model
        if stats is not None:
            return stats.p50_ms, False, "measured"
    pixels = res.width * res.height
    best: tuple[float, str, float] | None = None
    for text, t in row.latency.items():
        stats = t.frame if kind == "frame" else t.model
        if stats is None:
            continue
        other = Resolution.parse(text)
        ratio = pixels / (other.width * other.height)
        if best is None or abs(math.log(ratio)) < abs(math.log(best[2])):
            best = (stats.p50_ms * ratio, text, ratio)
    if best is None:
        return None, False, "not measured"
    return best[0], True, f"estimated: measured at {best[1]}, scaled by {best[2]:.2f}x the pixels"


def _estimate(
    draft: _Draft, profile: DeviceProfile, res: Resolution, kind: LatencyKind, cal: Calibration
) -> tuple[float | None, str, float | None, Factor | None]:
    """(ms, source, memory MB, factor) from the roofline; ms None when the graph is not here."""
    from ..roofline import graph_cost, roofline

    if draft.bundle is None:
        return None, "not measured here and its graph is not among the bundles: no estimate", None, None
    peak = profile.hardware.peak(draft.precision)
    if peak is None:
        return None, "no peak", None, None
    hw = profile.hardware
    cost = graph_cost(draft.bundle.onnx_path, res.width, res.height, draft.precision)
    rf = roofline(cost, peak, hw.memory_bandwidth_gbs, lanes(profile, draft.precision))
    factor = cal.factor(draft.backend, draft.precision, profile.name)
    seconds = rf.seconds / factor.efficiency
    what = f"roofline {rf.seconds * 1000:.1f} ms ({rf.bound}-bound) / efficiency {factor.efficiency:.2f}"
    if kind == "frame":
        out_px = res.width * res.height * draft.bundle.scale**2
        seconds += cal.frame_overhead_s(out_px, hw.memory_bandwidth_gbs)
        what += " + frame overhead"
    memory = cost.peak_live_bytes / 1e6 * cal.memory_factor(draft.backend)
    return seconds * 1000.0, f"ESTIMATED: {what}", memory, factor


def _drafts(profile: DeviceProfile, scale: int, root: Path, mine: Sequence[Results]) -> tuple[list[_Draft], list[str]]:
    from ..bench.results import row_id

    bundles, errors = _bundles(root, scale)
    drafts: dict[str, _Draft] = {}
    for variant, b in bundles:
        for backend, precision in _pairings(profile, b):
            rid = row_id(variant, backend, precision)
            drafts[rid] = _Draft(
                rid, variant, b.model, backend, precision, bundle=b, compression=compression_of(b.manifest)
            )
    for rid, (row, res) in measured_rows(mine, scale).items():
        d = drafts.get(rid)
        if d is None:
            d = drafts[rid] = _Draft(rid, row.variant, row.model, row.backend, row.precision)
        elif bundle_sha(row) not in (None, d.bundle.onnx_sha256 if d.bundle else None):
            d.notes.append(f"{res.path} measured another graph of {row.variant} (sha256 differs): estimated instead")
            continue
        d.row, d.results = row, res
    return list(drafts.values()), errors


def _figures(
    d: _Draft,
    profile: DeviceProfile,
    opts: SelectOptions,
    res: Resolution,
    cal: Calibration,
    others: Sequence[Results],
    used: dict[tuple[str, str], Factor],
) -> Candidate:
    psnr, psnr_source = _quality(d, opts.dataset, others)
    latency: float | None = None
    estimated = False
    source = "not measured"
    memory: float | None = None
    memory_estimated = False
    not_runnable = None
    if d.row is not None and not d.row.ok:
        not_runnable = f"{d.row.status} when measured: {d.row.reason}"
    elif profile.hardware.peak(d.precision) is None and d.row is None:
        not_runnable = f"{profile.name} has no native {d.precision} (its profile gives no {d.precision} peak)"
    if not_runnable is None:
        if d.row is not None:
            latency, estimated, source = _measured_latency(d.row, res, opts.latency)
            if not estimated and d.results is not None:
                source = f"measured ({d.results.path}, {machine_cpu(d.results)})"
            rise = (d.row.memory or {}).get("rss_delta_mb")
            memory = float(rise) if rise is not None else None
        if latency is None:
            est, source, est_memory, factor = _estimate(d, profile, res, opts.latency, cal)
            if est is not None:
                latency, estimated = est, True
                if factor is not None:
                    used[(factor.backend, factor.precision)] = factor
            if memory is None and est_memory is not None:
                memory, memory_estimated = est_memory, True
    source = "; ".join([source, *d.notes])
    return Candidate(
        d.id, d.variant, d.model, d.backend, d.precision, d.compression,
        str(d.bundle.path) if d.bundle is not None else None, psnr, psnr_source, latency, estimated, source,
        memory, memory_estimated, not_runnable,
    )  # fmt: skip


def _judge(c: Candidate, budget: float, memory: float, min_psnr: float | None) -> str | None:
    """Why ``c`` cannot be the pick (None: it fits)."""
    if c.not_runnable:
        return f"not runnable there: {c.not_runnable}"
    if c.latency_ms is None:
        return f"no latency figure: {c.latency_source}"
    if c.latency_ms > budget:
        return f"over budget: {c.latency_ms:.1f} > {budget:g} ms"
    if c.memory_mb is not None and c.memory_mb > memory:
        return f"over memory: {c.memory_mb:.0f} > {memory:g} MB"
    if min_psnr is not None and (c.psnr is None or c.psnr < min_psnr):
        got = f"{c.psnr:.2f}" if c.psnr is not None else "unknown"
        return f"below --min-psnr: {got} < {min_psnr:.2f} dB"
    return None


def _rank_key(c: Candidate) -> tuple[bool, float, float]:
    return (not c.fits, -(c.psnr if c.psnr is not None else -math.inf), c.latency_ms or math.inf)


def _nothing_fits(
    cands: Sequence[Candidate], profile: DeviceProfile, scale: int, res: Resolution, budget: float, memory: float,
    min_psnr: float | None, kind: str,
) -> str:  # fmt: skip
    where = f"{profile.name} x{scale} at {res}"
    runnable = [c for c in cands if not c.not_runnable and c.latency_ms is not None]
    if not cands:
        return f"nothing to choose from for {where}: no bundle at x{scale} and no measured row"
    if not runnable:
        return f"nothing runs on {where}: {cands[0].id}: {cands[0].not_runnable or cands[0].latency_source}"
    good = [c for c in runnable if min_psnr is None or (c.psnr is not None and c.psnr >= min_psnr)]
    if not good:
        best = max((c.psnr for c in runnable if c.psnr is not None), default=None)
        top = f" (best {best:.2f} dB)" if best is not None else ""
        return f"nothing fits {where}: no variant reaches --min-psnr {min_psnr:.2f} dB{top}"
    small = [c for c in good if c.memory_mb is None or c.memory_mb <= memory]
    if not small:
        least = min(good, key=lambda c: c.memory_mb or math.inf)
        return f"nothing fits {where} in {memory:g} MB: the smallest, {least.id}, needs {least.memory_mb:.0f} MB"
    fastest = min(small, key=lambda c: c.latency_ms or math.inf)
    how = "estimated" if fastest.latency_estimated else "measured"
    return (
        f"nothing fits {where} within {budget:g} ms ({kind} p50): the fastest, {fastest.id}, "
        f"takes {fastest.latency_ms:.1f} ms ({how})"
    )


def _calibration(opts: SelectOptions, mine: Sequence[Results], root: Path) -> tuple[Calibration, list[Results]]:
    """The fit, and every results file read for it (other devices' files lend quality figures)."""
    files = load_many(list(opts.calibration) or committed_results())
    known = {str(r.path) for r in files}
    files += [r for r in mine if str(r.path) not in known]
    return fit(files, [root, default_bundles_dir()]), files


def select(options: SelectOptions | None = None, /, **fields: Any) -> Selection:
    """The best-quality variant for a device under a latency and memory budget (see the module docstring).

    Pass a :class:`SelectOptions` or its fields as keywords:
    ``select(device="jetson-orin-nano", budget_ms=33.3, scale=2)``.
    """
    if options is not None and fields:
        raise SrEdgeError("pass either a SelectOptions or keyword fields, not both")
    opts = options if options is not None else SelectOptions(**fields)
    profile = resolve_profile(opts.device)
    given = load_many(opts.results)
    if given and not any(r.device.get("name") == profile.name for r in given):
        names = ", ".join(sorted({str(r.device.get("name")) for r in given}))
        raise SrEdgeError(f"the --results files were measured for {names}, not {profile.name}")
    mine = [] if opts.estimate else find_results(profile, given)
    root = Path(opts.bundles_dir) if opts.bundles_dir is not None else default_bundles_dir()
    if opts.bundles_dir is not None and not root.is_dir():
        raise SrEdgeError(f"bundles folder {root} does not exist")
    res = opts.resolution if isinstance(opts.resolution, Resolution) else profile.workload.primary
    budget = opts.budget_ms if opts.budget_ms is not None else profile.workload.latency_budget_ms
    memory = opts.memory_mb if opts.memory_mb is not None else profile.workload.memory_budget_mb
    cal, read = _calibration(opts, mine, root)
    drafts, _errors = _drafts(profile, opts.scale, root, mine)
    used: dict[tuple[str, str], Factor] = {}
    others = [*mine, *(r for r in read if r not in mine)]
    cands = []
    for d in drafts:
        c = _figures(d, profile, opts, res, cal, others, used)
        why = _judge(c, budget, memory, opts.min_psnr)
        cands.append(dataclasses.replace(c, fits=why is None, verdict=why or ""))
    cands.sort(key=_rank_key)
    pick = cands[0] if cands and cands[0].fits else None
    ranked: list[Candidate] = []
    for c in cands:
        if pick is not None and c is pick:
            ranked.append(dataclasses.replace(c, verdict="pick"))
        elif c.fits and pick is not None:
            if c.psnr is not None and pick.psnr is not None and c.psnr < pick.psnr:
                why = f"lower PSNR: {c.psnr:.2f} < {pick.psnr:.2f} dB"
            elif c.psnr is None:
                why = f"PSNR unknown ({c.psnr_source})"
            else:
                why = f"same PSNR, slower: {c.latency_ms:.1f} >= {pick.latency_ms:.1f} ms"
            ranked.append(dataclasses.replace(c, verdict=why))
        else:
            ranked.append(c)
    reason = None
    if pick is None:
        reason = _nothing_fits(cands, profile, opts.scale, res, budget, memory, opts.min_psnr, opts.latency)
    return Selection(
        device=profile,
        scale=opts.scale,
        resolution=res,
        budget_ms=budget,
        memory_mb=memory,
        min_psnr=opts.min_psnr,
        dataset=opts.dataset,
        latency=opts.latency,
        pick=ranked[0] if pick else None,
        candidates=tuple(ranked),
        measured_from=tuple(str(r.path) for r in mine),
        machines=tuple(sorted({machine_cpu(r) for r in mine})),
        factors=tuple(used.values()),
        calibrated_on=cal.machines,
        reason=reason,
    )


__all__ = ["LATENCY_KINDS", "Candidate", "SelectOptions", "Selection", "compression_of", "select"]
