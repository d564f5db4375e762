"""``write_report(results, out_dir)``: Markdown table, Pareto plot and visual comparison sheets.

- ``report.md``: per scale, every measured row (quality per dataset, frame and network
  p50/p90/p99, fps, achieved GFLOP/s and % of the device's peak, build time, peak RSS,
  whether it fits the latency budget, whether it is on the Pareto front), the
  side-by-side ratios (best model vs OpenCV ESPCN and vs PyTorch eager on the same
  weights), and every skipped or failed row with its reason.
- ``pareto.png``: PSNR-Y vs p50 latency (log scale), one marker per row, colour = backend,
  marker = precision, the latency budget as a vertical line, the Pareto front drawn and
  its points ringed; one column per scale, top row end-to-end frame latency, bottom row
  network-only latency.
- ``sheet_x<s>.png``: the same HR crop through bicubic and every variant, each titled
  with its PSNR on that image (PSNR alone misleads; the eye sees ringing and blur).

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, SrEdgeError
from .compare import misfit
from .results import Results, Row, load_results

LatencyKind = str  # "frame" or "model"
_BACKEND_COLOURS = {
    "openvino": "#1f77b4",
    "ort": "#ff7f0e",
    "tensorrt": "#2ca02c",
    "torch": "#d62728",
    "opencv": "#9467bd",
    "numpy": "#7f7f7f",
}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "bf16": "s", "int8": "D", "fp64": "X"}


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    markdown: Path
    pareto: Path | None
    sheets: tuple[Path, ...]


def primary_dataset(results: Results) -> str | None:
    """The dataset reports rank by: the first one the run measured."""
    names = list(results.settings.get("datasets", []))
    return names[0] if names else None


def primary_resolution(results: Results) -> str | None:
    """The resolution reports plot: the first one the run measured."""
    names = list(results.settings.get("resolutions", []))
    return names[0] if names else None


def p50(row: Row, resolution: str, kind: LatencyKind) -> float | None:
    """p50 latency of a row (ms) at a resolution, ``frame`` or ``model``; None if not measured."""
    t = row.latency.get(resolution)
    if t is None:
        return None
    stats = t.frame if kind == "frame" else t.model
    return stats.p50_ms if stats is not None else None


def psnr(row: Row, dataset: str | None) -> float | None:
    """PSNR-Y of a row on a dataset (None if not measured)."""
    q = row.quality.get(dataset) if dataset else None
    return q.psnr_y if q is not None else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, quality) no other point beats on both (lower, higher)."""
    front = []
    for i, (lat, q) in enumerate(points):
        dominated = any((l2 <= lat and q2 >= q) and (l2 < lat or q2 > q) for j, (l2, q2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _fmt(v: float | None, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _scales(rows: Sequence[Row]) -> list[int]:
    return sorted({r.scale for r in rows})


def _front_ids(rows: Sequence[Row], resolution: str, dataset: str | None, kind: LatencyKind) -> set[str]:
    pts, ids = [], []
    for r in rows:
        lat, q = p50(r, resolution, kind), psnr(r, dataset)
        if lat is not None and q is not None:
            pts.append((lat, q))
            ids.append(r.id)
    return {ids[i] for i in pareto_front(pts)}


def _side_by_side(rows: Sequence[Row], resolution: str, dataset: str | None) -> list[str]:
    """Ratios of the best deployed variant against OpenCV ESPCN and PyTorch eager, per scale."""
    lines = []
    for scale in _scales(rows):
        at = [r for r in rows if r.scale == scale and r.ok]
        deployed = [r for r in at if r.peer is None and psnr(r, dataset) is not None and p50(r, resolution, "frame")]
        if not deployed:
            continue
        best_q = max(psnr(r, dataset) or 0.0 for r in deployed)
        best_variant = next(r.variant for r in deployed if psnr(r, dataset) == best_q)
        mine = min((r for r in deployed if r.variant == best_variant), key=lambda r: p50(r, resolution, "frame") or 0)
        q_mine = psnr(mine, dataset) or 0.0
        lines.append(
            f"- **x{scale}: best model {mine.variant}** (PSNR-Y {dataset} {q_mine:.2f} dB), fastest on "
            f"{mine.backend}/{mine.precision}: frame p50 {_fmt(p50(mine, resolution, 'frame'))} ms, "
            f"network p50 {_fmt(p50(mine, resolution, 'model'))} ms"
        )
        peers = [r for r in at if r.peer == "opencv" and r.model == "opencv-espcn"]
        peers += [r for r in at if r.peer == "torch" and r.variant == mine.variant]
        for peer in peers:
            q_peer = psnr(peer, dataset)
            parts = []
            for kind, what in (("frame", "frame"), ("model", "network")):
                a, b = p50(mine, resolution, kind), p50(peer, resolution, kind)
                if a and b:
                    parts.append(f"{b / a:.2f}x ({what}: {b:.2f} -> {a:.2f} ms)")
            gain = f"{q_mine - q_peer:+.2f} dB PSNR-Y" if q_peer is not None else "PSNR n/a"
            lines.append(f"  - vs {peer.id}: {gain}, speed-up " + ", ".join(parts))
    return lines


def _estimated_line(device: Mapping[str, Any]) -> list[str]:
    """The label a profile with estimated peaks carries (its "% peak" is against estimates)."""
    hw = device.get("hardware") or {}
    if not hw.get("estimated"):
        return []
    built = " built from this machine's ISA features and clock" if device.get("source") == "detected" else ""
    peaks = [f"{p} {hw[k]:,.0f}" for p, k in (("fp32", "peak_fp32_gflops"), ("fp16", "peak_fp16_gflops"),
             ("bf16", "peak_bf16_gflops"), ("int8", "peak_int8_gops")) if hw.get(k)]  # fmt: skip
    return [f"- peaks **estimated**{built}, not vendor figures (G ops/s: {', '.join(peaks)}); % peak is against these"]


def markdown(results: Results, dataset: str | None = None, resolution: str | None = None) -> str:
    """The report as Markdown text."""
    dataset = dataset or primary_dataset(results)
    resolution = resolution or primary_resolution(results)
    if resolution is None:
        raise SrEdgeError(f"{results.path}: results record no resolution")
    h = results.header
    dev = results.device
    budget = (dev.get("workload") or {}).get("latency_budget_ms")
    mem_budget = (dev.get("workload") or {}).get("memory_budget_mb")
    machine = h.get("machine", {})
    git = h.get("git", {})
    s = results.settings
    lat = s.get("latency", {})
    datasets = list(s.get("datasets", []))
    out = [
        f"# sr-edge benchmark: {dev.get('name')}",
        "",
        f"{dev.get('description', '')}",
        "",
        f"- machine: {machine.get('cpu')} ({machine.get('affinity')} CPUs usable), {machine.get('system')} "
        f"{machine.get('release')}, Python {machine.get('python')}"
        + (f"; **{off}: its latencies do not stand for that device**" if (off := misfit(results)) else ""),
        f"- sr-edge commit {str(git.get('commit', '?'))[:12]}{' (dirty)' if git.get('dirty') else ''}; "
        f"libraries: {', '.join(f'{k} {v}' for k, v in (h.get('libraries') or {}).items())}",
        f"- run {h.get('created')} .. {h.get('updated')}{'' if h.get('complete') else ' (INCOMPLETE: interrupted)'}",
        f"- latency at {', '.join(s.get('resolutions', []))} (LR input), {s.get('threads') or 'default'} threads: "
        f"{lat.get('warmup')} warm-up runs, then at least {lat.get('min_runs')} runs and {lat.get('min_time_s')} s"
        + (
            f", in {lat['rounds']} rounds (passes over the matrix), the round with the lowest p50 kept; "
            if (lat.get("rounds") or 1) > 1
            else "; "
        )
        + "frame = uint8 image in and out (colour handling included), network = the model alone on a float32 tensor; "
        "stream fps = frames per second sustained over a stream (each frame prepared while the previous one runs); "
        "frame / net = what the work around the network costs",
        f"- heap: {s.get('heap') or 'default (not recorded: measured before sr-edge kept a steady heap)'}",
        f"- quality: PSNR-Y / SSIM-Y (standard protocol) on {', '.join(datasets)}, computed from the deployed "
        "backend's own outputs",
        f"- budget: {budget} ms per frame, {mem_budget} MB",
        *_estimated_line(dev),
        "",
    ]
    ok = [r for r in results.rows if r.ok]
    for scale in _scales(ok):
        rows = [r for r in ok if r.scale == scale]
        rows.sort(key=lambda r: p50(r, resolution, "frame") or float("inf"))
        front = _front_ids(rows, resolution, dataset, "frame")
        q_heads = [f"{d} PSNR / SSIM" for d in datasets]
        heads = [
            "row", "backend", "prec.", *q_heads, "frame p50 / p90 / p99 ms", "fps", "stream fps", "net p50 ms",
            "frame / net",
            "GFLOP/s (GOP/s int8)", "% peak", "build s", "peak RSS (+rise) MB", "in budget", "Pareto",
        ]  # fmt: skip
        out += [f"## x{scale} at {resolution}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for r in rows:
            t = r.latency.get(resolution)
            f = t.frame if t else None
            qs = [f"{r.quality[d].psnr_y:.2f} / {r.quality[d].ssim_y:.4f}" if d in r.quality else "-" for d in datasets]
            mem = r.memory or {}
            rss, rise = mem.get("rss_peak_mb"), mem.get("rss_delta_mb")
            fits = "-" if budget is None or f is None else ("yes" if f.p50_ms <= budget else "no")
            if fits == "yes" and mem_budget is not None and rise is not None and rise > mem_budget:
                fits = "no (memory)"
            cells = [
                r.variant + (f" ({r.peer})" if r.peer else ""),
                r.backend,
                r.precision,
                *qs,
                f"{f.p50_ms:.2f} / {f.p90_ms:.2f} / {f.p99_ms:.2f}" if f else "-",
                _fmt(f.fps if f else None, ".1f"),
                _fmt(t.stream_fps if t else None, ".1f"),
                _fmt(p50(r, resolution, "model")),
                _ratio(f.p50_ms if f else None, p50(r, resolution, "model")),
                _fmt(t.achieved_gops if t else None, ".1f"),
                _fmt(t.efficiency * 100 if t and t.efficiency is not None else None, ".0f"),
                _fmt(r.build_s, ".3f"),
                f"{_fmt(rss, '.0f')} (+{_fmt(rise, '.0f')})",
                fits,
                "**yes**" if r.id in front else "",
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    ratios = _side_by_side(ok, resolution, dataset)
    if ratios:
        out += [f"## Side by side (PSNR on {dataset}, latency at {resolution})", "", *ratios, ""]
    other = [r for r in results.rows if not r.ok]
    if other:
        out += ["## Not measured", "", "| row | status | reason |", "|---|---|---|"]
        out += [f"| {r.id} | {r.status} | {(r.reason or '').replace('|', '/')} |" for r in other]
        out.append("")
    if h.get("bundle_errors"):
        out += ["## Unreadable bundles", "", *[f"- {e}" for e in h["bundle_errors"]], ""]
    return "\n".join(out)


def _ratio(frame: float | None, net: float | None) -> str:
    """Frame p50 over network p50: what the work around the network costs (1.00: nothing)."""
    return f"{frame / net:.2f}x" if frame and net else "-"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("sr-edge report plots", "bench", "matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(results: Results, path: Path, dataset: str | None = None, resolution: str | None = None) -> Path | None:
    """PSNR vs p50 latency, per scale (columns), frame and network latency (rows)."""
    dataset = dataset or primary_dataset(results)
    resolution = resolution or primary_resolution(results)
    ok = [r for r in results.rows if r.ok and psnr(r, dataset) is not None and resolution in r.latency]
    if not ok or resolution is None:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    scales = _scales(ok)
    kinds = [("frame", "frame p50 (ms, uint8 in/out)"), ("model", "network p50 (ms)")]
    fig, axes = plt.subplots(
        len(kinds), len(scales), figsize=(6.5 * len(scales) + 1.5, 9.5), squeeze=False, constrained_layout=True
    )
    budget = (results.device.get("workload") or {}).get("latency_budget_ms")
    for col, scale in enumerate(scales):
        for row_i, (kind, xlabel) in enumerate(kinds):
            ax = axes[row_i][col]
            rows = [r for r in ok if r.scale == scale and p50(r, resolution, kind) is not None]
            pts = [(p50(r, resolution, kind) or 0.0, psnr(r, dataset) or 0.0) for r in rows]
            front = pareto_front(pts)
            for r, (x, y) in zip(rows, pts, strict=True):
                ax.scatter(
                    x, y, s=55, c=_BACKEND_COLOURS.get(r.backend, "#17becf"),
                    marker=_PRECISION_MARKERS.get(r.precision, "o"), edgecolors="black", linewidths=0.4, zorder=3,
                )  # fmt: skip
                ax.annotate(r.variant, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, alpha=0.8)
            if front:
                fx, fy = zip(*[pts[i] for i in front], strict=True)
                ax.step(fx, fy, where="post", color="black", linewidth=1.0, alpha=0.6, zorder=2)
                ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
            if budget:
                ax.axvline(budget, color="crimson", linestyle="--", linewidth=1.2)
                ax.text(budget, ax.get_ylim()[0], f" budget {budget:g} ms", color="crimson", fontsize=8, va="bottom")
            if pts and min(p[0] for p in pts) > 0:
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"PSNR-Y on {dataset} (dB)")
            ax.set_title(f"x{scale}, {resolution} input: {'end to end' if kind == 'frame' else 'network only'}")
            ax.grid(True, which="both", alpha=0.3)
    backends = sorted({r.backend for r in ok})
    precisions = sorted({r.precision for r in ok})
    handles = [
        Line2D([], [], marker="o", linestyle="", color=_BACKEND_COLOURS.get(b, "#17becf"), label=b) for b in backends
    ]
    handles += [
        Line2D([], [], marker=_PRECISION_MARKERS.get(p, "o"), linestyle="", color="grey", label=p) for p in precisions
    ]
    handles.append(Line2D([], [], marker="o", markerfacecolor="none", color="black", label="Pareto front"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(f"sr-edge: quality vs latency on {results.device.get('name')}")
    _save(plt, fig, path, dpi=110)
    return path


def _save(plt: Any, fig: Any, path: Path, dpi: int) -> None:
    from ..provenance import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def _sheet_rows(results: Results, scale: int) -> list[Row]:
    """One row per variant with a crop: the deployed (non-peer) row first, in run order."""
    chosen: dict[str, Row] = {}
    for r in results.rows:
        if not (r.ok and r.scale == scale and r.crop):
            continue
        have = chosen.get(r.variant)
        if have is None or (have.peer == "torch" and r.peer is None):
            chosen[r.variant] = r
    bicubic = [r for r in chosen.values() if r.peer == "bicubic"]
    return bicubic + [r for r in chosen.values() if r.peer != "bicubic"]


def comparison_sheets(results: Results, out_dir: Path) -> list[Path]:
    """One PNG per scale: HR crop, bicubic and each variant (files written by ``sr-edge bench``)."""
    crops = results.header.get("crops")
    if not crops or results.path is None:
        return []
    folder = results.path.parent / str(crops["folder"])
    if not folder.is_dir():
        return []
    from ..data.io import read_image

    plt = _pyplot()
    written = []
    image, ds = crops.get("image"), crops.get("dataset")
    for scale_text, hr_name in sorted((crops.get("hr") or {}).items()):
        scale = int(scale_text)
        rows = [r for r in _sheet_rows(results, scale) if (folder / str(r.crop)).is_file()]
        if not rows or not (folder / hr_name).is_file():
            continue
        panels: list[tuple[str, Any]] = [("HR (ground truth)", read_image(folder / hr_name))]
        for r in rows:
            q = (r.quality.get(ds) or None) if ds else None
            on_image = q.per_image.get(str(image)) if q else None
            title = f"{r.variant}\n{r.backend}/{r.precision}" + (f"\n{on_image:.2f} dB" if on_image else "")
            panels.append((title, read_image(folder / str(r.crop))))
        cols = min(5, len(panels))
        nrows = -(-len(panels) // cols)
        fig, axes = plt.subplots(
            nrows, cols, figsize=(3.0 * cols, 3.4 * nrows + 0.6), squeeze=False, constrained_layout=True
        )
        for ax in axes.flat:
            ax.axis("off")
        for ax, (title, img) in zip(axes.flat, panels, strict=False):
            ax.imshow(
                img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None, interpolation="nearest", vmin=0, vmax=255
            )
            ax.set_title(title, fontsize=8)
        box = crops.get("box", ["?", "?", "?"])
        fig.suptitle(
            f"x{scale}: {ds}/{image}, HR crop at (top {box[0]}, left {box[1]}), {box[2]} px; PSNR-Y of the whole image"
        )
        path = out_dir / f"sheet_x{scale}.png"
        _save(plt, fig, path, dpi=100)
        written.append(path)
    return written


_REPORT_FILES = ("report.md", "pareto.png", "sheet_x*.png")  # what write_report writes
_DEVICES_FILES = ("devices.md", "devices.json")  # what write_devices_report writes


def report_conflicts(out_dir: str | os.PathLike[str], names: Sequence[str] = _REPORT_FILES) -> list[Path]:
    """The files of an earlier report in ``out_dir`` that writing a report there would replace."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return [p for pattern in names for p in sorted(out.glob(pattern))]


def check_report_target(out_dir: str | os.PathLike[str], overwrite: bool, names: Sequence[str] = _REPORT_FILES) -> None:
    """One-line refusal, before any work, where ``out_dir`` (or a folder above it) is a file,
    or holds a report and ``overwrite`` is off."""
    from ..data.io import check_out_folder

    check_out_folder(Path(out_dir))
    found = report_conflicts(out_dir, names)
    if found and not overwrite:
        more = f" (and {len(found) - 1} more report file(s))" if len(found) > 1 else ""
        raise SrEdgeError(f"{found[0]} already exists{more}; pass --overwrite to replace the report, or another --out")


def write_report(
    results: Results | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    resolution: str | None = None,
    overwrite: bool = False,
) -> ReportFiles:
    """Write ``report.md``, ``pareto.png`` and ``sheet_x<s>.png`` into ``out_dir``.

    ``out_dir`` defaults to ``<results stem>_report`` beside the results file. Files are
    written atomically (temp file + rename); those of an earlier report in ``out_dir`` are
    replaced only with ``overwrite`` (refused before anything is written).
    """
    from ..provenance import atomic_path

    res = results if isinstance(results, Results) else load_results(results)
    if not any(r.ok for r in res.rows):
        where = res.path or "results"
        raise SrEdgeError(f"{where}: no row was measured (all skipped or failed); nothing to report")
    if dataset is not None and dataset not in res.settings.get("datasets", []):
        raise SrEdgeError(
            f"dataset {dataset!r} is not in the results (measured: {', '.join(res.settings.get('datasets', []))})"
        )
    if resolution is not None and resolution not in res.settings.get("resolutions", []):
        measured = ", ".join(res.settings.get("resolutions", []))
        raise SrEdgeError(f"resolution {resolution!r} is not in the results (measured: {measured})")
    if out_dir is not None and not os.fspath(out_dir).strip():  # Path("") would be the current folder
        raise SrEdgeError("the report folder is empty; name one (--out DIR) or leave it out")
    if out_dir is None:
        if res.path is None:
            raise SrEdgeError("pass out_dir: these results were not read from a file")
        out_dir = res.path.with_name(f"{res.path.stem}_report")
    out = Path(out_dir)
    check_report_target(out, overwrite)  # a file at --out (or above it), or an earlier report: named, never replaced
    out.mkdir(parents=True, exist_ok=True)
    md_path = out / "report.md"
    text = markdown(res, dataset, resolution)
    pareto = pareto_plot(res, out / "pareto.png", dataset, resolution)
    sheets = comparison_sheets(res, out)
    files = [("Pareto plot", pareto)] + [(f"Visual comparison {s.stem[-2:]}", s) for s in sheets]
    text += "\n" + "\n".join(f"![{title}]({p.name})" for title, p in files if p is not None) + "\n"
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)
    return ReportFiles(md_path, pareto, tuple(sheets))


# --- Several devices: one table of variants by devices, each device's pick under its budget.
# The picks come from sr_edge.select (which reads results through this package, so the
# table is handed in rather than computed here).
import typing as _typing  # noqa: E402  (kept with the functions it serves)

if _typing.TYPE_CHECKING:
    from ..select import Candidate, DevicesTable, Selection


def _device_heading(sel: Selection) -> str:
    where = f", {', '.join(sel.machines)}" if sel.machines else ""
    how = "measured" if sel.measured_from else "ESTIMATED"
    return f"{sel.device.name} ({how}{where}; {sel.resolution}, budget {sel.budget_ms:g} ms)"


def _device_cell(c: Candidate | None, sel: Selection) -> str:
    if c is None:
        return "-"
    if c.not_runnable:
        return "n/a"
    if c.latency_ms is None:
        return "?"
    text = f"{'~' if c.latency_estimated else ''}{c.latency_ms:.1f}"
    if sel.pick is not None and c.id == sel.pick.id:
        return f"**{text} pick**"
    if c.verdict.startswith("over budget"):
        return f"{text} over"
    if c.verdict.startswith("over memory"):
        return f"{text} memory"
    if c.verdict.startswith("below --min-psnr"):
        return f"{text} <PSNR"
    return text


def devices_markdown(table: DevicesTable) -> str:
    """The cross-device table (variants x devices) and each device's pick, as Markdown."""
    sels = table.selections
    if not sels:
        raise SrEdgeError("no device to tabulate")
    dataset = sels[0].dataset
    kind = sels[0].latency
    heads = ["variant", f"PSNR-Y {dataset}", *(_device_heading(s) for s in sels)]
    out = [
        f"# sr-edge: x{table.scale} variants by device",
        "",
        f"Cells: {kind} p50 in ms; `~` marks an ESTIMATE (roofline on the profile's peaks x an efficiency fitted on "
        "the measured machines); **pick** = that device's choice, `over` = over its budget, `n/a` = not runnable "
        "there, `-` = not a candidate there.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    for rid in table.row_ids:
        q = table.psnr(rid)
        cells = [_device_cell(table.cell(i, rid), s) for i, s in enumerate(sels)]
        out.append("| " + " | ".join([rid, f"{q:.2f}" if q is not None else "-", *cells]) + " |")
    out += ["", "## Picks", ""]
    for s in sels:
        out.append(f"- {s.headline()}" if s.pick else f"- {s.device.name}: {s.reason}")
        if s.measured_from:
            out.append(f"  - measured: {', '.join(s.measured_from)}")
        est = [f for f in s.factors if not f.basis.startswith("fit")]
        if s.estimated:
            fitted = ", ".join(s.calibrated_on) or "no machine"
            out.append(f"  - estimates: efficiency fitted on {fitted}")
            out += [f"  - {f.backend}/{f.precision}: {f.basis} ({f.efficiency:.2f})" for f in est]
        if s.device.hardware.estimated:
            out.append("  - the profile's peak figures are themselves estimates")
    return "\n".join(out) + "\n"


def write_devices_report(
    tables: Sequence[DevicesTable], out_dir: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write ``devices.md`` (per scale: the cross-device table and picks) and ``devices.json`` into ``out_dir``
    (an earlier report there is replaced only with ``overwrite``)."""
    import json

    from ..provenance import atomic_path

    if not tables:
        raise SrEdgeError("no table to write")
    out = Path(out_dir)
    check_report_target(out, overwrite, _DEVICES_FILES)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "devices.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(devices_markdown(t) for t in tables))
    with atomic_path(out / "devices.json") as tmp:
        tmp.write_text(json.dumps([t.to_json() for t in tables], indent=2))
    return path
