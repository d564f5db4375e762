"""Verbs ``devices``, ``bench``, ``report`` and ``compare`` (registered by :mod:`sr_edge.cli`).

Thin: parse, build a :class:`~sr_edge.bench.BenchSettings`, call the public API. Heavy
imports stay inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SrEdgeError, Terminated
from ..paths import bundles_dir
from .heap import HEAP_MODES

EXIT_REGRESSION = 1


def _table(headers: list[str], rows: list[list[str]]) -> str:
    from ..cliutil import format_table

    return format_table(headers, rows)


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def cmd_devices(args: argparse.Namespace) -> int:
    """``sr-edge devices``: list the profiles; ``--detect``: which fits this machine, and what it has."""
    from ..devices import list_profiles, load_profile

    if args.detect:
        return _detect(args)
    profiles = [load_profile(n) for n in (args.names or list_profiles())]
    if args.json:
        print(json.dumps([p.to_json() for p in profiles], indent=2))
        return 0
    headers = ["device", "backends", "precisions", "on", "input", "scales", "budget ms", "MB",
               "fp32 GFLOP/s", "fp16", "bf16", "int8 GOP/s", "GB/s", "figures"]  # fmt: skip
    rows = [
        [p.name, ",".join(p.runtime.backends), ",".join(p.runtime.precisions), p.runtime.device,
         ",".join(map(str, p.workload.resolutions)), ",".join(f"x{s}" for s in p.workload.scales),
         f"{p.workload.latency_budget_ms:g}", f"{p.workload.memory_budget_mb:g}",
         _g(p.hardware.peak_fp32_gflops), _g(p.hardware.peak_fp16_gflops), _g(p.hardware.peak_bf16_gflops),
         _g(p.hardware.peak_int8_gops), f"{p.hardware.memory_bandwidth_gbs:g}",
         "estimated" if p.hardware.estimated else "cited"]
        for p in profiles
    ]  # fmt: skip
    print(_table(headers, rows))
    return 0


def _detect(args: argparse.Namespace) -> int:
    """``sr-edge devices --detect [NAMES]``: what this machine has, and the profile that fits.

    Without names every profile found is ranked, and the profile built from the machine
    stands last, so it is chosen only when no named one fits (as ``sr-edge bench`` does).
    """
    from ..devices import detect, estimate, load_profile, probe_machine

    facts = probe_machine()
    est = estimate(facts)
    found = detect(facts, [load_profile(n) for n in args.names] if args.names else None)
    best = next((d for d in found if d.matches), None)
    if args.json:
        doc = {
            "machine": facts.describe(),
            "detected": {
                "summary": est.summary(facts),
                "features": list(est.features),
                "native": list(est.native),
                "precisions": list(est.precisions),
                "cores": est.cores,
                "clock_ghz": est.clock_ghz,
                "memory_gb": facts.memory_gb,
                "estimated": True,
                "notes": list(est.hardware.notes),
            },
            "profile": best.profile.name if best else None,
            "source": best.profile.source if best else None,
            "candidates": [
                {"name": d.profile.name, "source": d.profile.source, "matches": d.matches, "reasons": list(d.reasons)}
                for d in found
            ],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"this machine: {facts.describe()}")
    print(est.summary(facts))
    if best is None:
        print("none of the named profiles fits this machine (without names, detection builds its own profile)")
        return 0
    prof = best.profile
    if prof.source == "detected":
        print(f"profile: {prof.name} (built from this machine, figures ESTIMATED: no named profile fits)")
        for note in prof.hardware.notes:
            print(f"  {note}")
    else:
        label = ", figures estimated" if prof.hardware.estimated else ""
        print(f"profile: {prof.name} ({prof.path}{label})")
        for reason in best.reasons:
            print(f"  because {reason}")
    others = [d.profile.name for d in found if d.matches and d is not best and d.profile.source == "file"]
    if others:
        print(f"also fits (less specific): {', '.join(others)}")
    return 0


def _resolutions(values: list[str] | None) -> tuple[Any, ...] | None:
    from ..devices import ProfileError, Resolution

    if not values:
        return None
    try:
        return tuple(Resolution.parse(v, "--resolution") for v in values)
    except ProfileError as e:
        raise SrEdgeError(str(e)) from None


def _summary(results: Any, resolution: str | None) -> str:
    from .report import p50, primary_dataset, psnr

    ds = primary_dataset(results)
    rows = []
    for r in results.rows:
        q = psnr(r, ds)
        rows.append(
            [r.id, r.status, f"{q:.2f}" if q is not None else "-",
             f"{p50(r, resolution, 'frame'):.2f}" if resolution and p50(r, resolution, "frame") else "-",
             f"{p50(r, resolution, 'model'):.2f}" if resolution and p50(r, resolution, "model") else "-",
             (r.reason or "")[:80]]
        )  # fmt: skip
    return _table(["row", "status", f"PSNR-Y {ds}", f"frame p50 ms {resolution}", "net p50 ms", "note"], rows)


def _print_checks(checks: list[Any], tolerance: float) -> int:
    bad = [c for c in checks if c.regressed]
    for c in checks:
        print(("REGRESSION " if c.regressed else "ok         ") + c.message)
    verdict = f"{len(bad)} regression(s)" if bad else "no regression"
    print(f"compare: {len(checks)} checks, {verdict} (latency tolerance {tolerance:.0%})", file=sys.stderr)
    return EXIT_REGRESSION if bad else 0


def _forecast(c: Any) -> str:
    note = c.forecast()
    return f"will be skipped: {note}" if note else "will run"


def cmd_bench(args: argparse.Namespace) -> int:
    from ..devices import detect, load_profile
    from . import BenchSettings, LatencyPlan, compare, load_results, write_report
    from .report import check_report_target, primary_resolution

    if args.device:
        profile = load_profile(args.device)
    else:
        best = next((d for d in detect() if d.matches), None)
        if best is None:
            raise SrEdgeError("no device profile fits this machine; pass --device NAME (see sr-edge devices)")
        profile = best.profile
        print(f"sr-edge: device {profile.name} (detected; pass --device to choose)", file=sys.stderr)
    baseline = load_results(args.compare) if args.compare else None  # fail before measuring
    if args.max_time <= 0:
        raise SrEdgeError(f"--max-time is seconds above 0, got {args.max_time:g}")
    if args.quick:
        latency = LatencyPlan(warmup=1, min_runs=3, min_time_s=0.0, max_time_s=10.0, rounds=1)
    else:
        latency = LatencyPlan(
            args.warmup, args.min_runs, args.min_time, max(args.max_time, args.min_time), rounds=args.rounds
        )
    peers: tuple[str, ...] | None = () if args.no_peers else (tuple(args.peers) if args.peers else None)
    settings = BenchSettings(
        models=tuple(args.models or ()),
        bundles_dir=Path(args.bundles) if args.bundles else bundles_dir(),
        datasets=tuple(args.dataset) if args.dataset else None,
        data_root=args.data_root,
        resolutions=_resolutions(args.resolution),
        scales=tuple(args.scale) if args.scale else None,
        backends=tuple(args.backend) if args.backend else None,
        precisions=tuple(args.precision) if args.precision else None,
        peers=peers,
        threads=args.threads,
        latency=latency,
        quality=not args.no_quality,
        crops=not args.no_crops,
        heap=args.heap,
    )
    if args.dry_run:
        from . import plan

        p = plan(profile, settings)
        rows = [[c.id, c.skip_reason() or _forecast(c)] for c in p.contenders]
        print(_table(["row", "plan"], rows))
        print(f"{len(rows)} rows on {profile.name}; {_quality_on(p.settings_json())}", file=sys.stderr)
        for err in p.bundle_errors:
            print(f"sr-edge: unreadable bundle {err}", file=sys.stderr)
        return 0
    out = Path(args.out or f"results-{profile.name}.json")
    if args.overwrite and args.resume:
        raise SrEdgeError("--overwrite starts a new run and --resume continues the one in --out; pass one of them")
    report_dir = Path(args.report) if args.report else out.with_name(f"{out.stem}_report")
    if args.report is not None:  # refused now, not after the run: an earlier report is kept
        check_report_target(report_dir, args.overwrite)
    replacing = args.overwrite and out.is_file() and out.stat().st_size > 0
    try:
        results = _run_bench(profile, settings, out, args.resume, replacing)
    except (KeyboardInterrupt, Terminated) as e:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(e, Terminated) else ("interrupted", 130)
        if replacing:
            print(f"sr-edge: {what}; {out} is unchanged: --overwrite replaces it with a complete run only; "
                  "the rows measured were discarded", file=sys.stderr)  # fmt: skip
        else:
            print(f"sr-edge: {what}; finished rows are kept in {out}; continue with --resume", file=sys.stderr)
        return code
    print(_summary(results, primary_resolution(results)))
    print(f"results: {out}; {_quality_on(results.settings)}", file=sys.stderr)
    for err in results.header.get("bundle_errors") or []:
        print(f"sr-edge: warning: unreadable bundle {err}", file=sys.stderr)
    _warn_misfit(results, str(out), "its latencies do not stand for that device")
    if args.report is not None:
        files = write_report(results, report_dir, overwrite=args.overwrite)
        print(f"report: {files.markdown}", file=sys.stderr)
    if baseline is not None:
        _warn_misfit(baseline, args.compare, "latency checks compare different hardware")
        return _print_checks(compare(results, baseline, args.tolerance, args.psnr_tolerance), args.tolerance)
    return 0


def _run_bench(profile: Any, settings: Any, out: Path, resume: bool, replacing: bool) -> Any:
    """``benchmark`` into ``out``; with ``replacing`` (``--overwrite`` of an existing file), into a
    hidden folder beside it, whose results and crops replace the old ones only once complete.

    The old file survives everything short of success: a refusal at once (an unknown
    ``--models``), a failure, Ctrl-C, SIGTERM (the folder is removed), and ``kill -9``
    (the folder is left, and the next run over ``out`` sweeps it).
    """
    from ..provenance import sweep_stale, temp_beside
    from . import benchmark, load_results, plan
    from .crops import crops_folder

    plan(profile, settings)  # every one-line refusal (an unknown --models, ...) before anything is touched
    for stale in sweep_stale(out):  # what a killed run left: ours by name (.NAME.xxxx.tmp) only
        print(f"sr-edge: removed {stale.name}, left by an interrupted run", file=sys.stderr)
    if not replacing:
        return benchmark(profile, settings, out=out, resume=resume, progress=True)
    staging = temp_beside(out, folder=True)
    try:
        new = staging / out.name
        benchmark(profile, settings, out=new, progress=True)
        new_crops, old_crops = crops_folder(new), crops_folder(out)
        if old_crops.is_dir():  # the old run's crops go with it, into the folder removed below
            os.replace(old_crops, staging / "replaced_crops")
        if new_crops.is_dir():
            os.replace(new_crops, old_crops)
        os.replace(new, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_results(out)


def _quality_on(settings: Mapping[str, Any]) -> str:
    """Which datasets the quality columns come from, and which of the profile's were not found."""
    text = f"quality on {', '.join(settings.get('datasets', [])) or '-'}"
    missing = settings.get("datasets_missing") or []
    if missing:
        text += f" ({', '.join(missing)} not found: pass --data-root or set SR_EDGE_DATA)"
    return text


def cmd_report(args: argparse.Namespace) -> int:
    from . import write_report

    if len(args.results) > 1:  # one file per device: the cross-device table and each device's pick
        from ..select_cli import devices_report

        return devices_report(args)
    files = write_report(
        args.results[0], args.out, dataset=args.dataset, resolution=args.resolution, overwrite=args.overwrite
    )
    print(files.markdown)
    for p in (files.pareto, *files.sheets):
        if p is not None:
            print(p)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare, load_results

    current, baseline = load_results(args.results), load_results(args.baseline)
    checks = compare(current, baseline, args.tolerance, args.psnr_tolerance)
    for path, results in ((args.results, current), (args.baseline, baseline)):
        _warn_misfit(results, path, "latency checks compare different hardware")
    return _print_checks(checks, args.tolerance)


def _warn_misfit(results: Any, path: str, consequence: str) -> None:
    """One warning line when ``results`` were measured on a machine outside their device class."""
    from .compare import misfit

    note = misfit(results)
    if note:
        print(f"sr-edge: warning: {path}: {note}; {consequence}", file=sys.stderr)


def _add_compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerance", type=float, default=0.10, help="allowed p50 latency rise, a fraction (default 0.10)")
    p.add_argument("--psnr-tolerance", type=float, default=0.05, help="allowed PSNR-Y drop in dB (default 0.05)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``devices``, ``bench``, ``report`` and ``compare``."""
    from ..cliutil import scale_arg

    p = sub.add_parser("devices", help="device profiles (devices/*.toml); --detect: which one fits this machine")
    p.add_argument("names", nargs="*", help="profiles to show (default: all)")
    p.add_argument("--detect", action="store_true", help="say which profile fits this machine, and why")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "bench", help="quality and latency of every bundle x backend x precision on a device, with peers"
    )
    p.add_argument("--device", help="profile name (sr-edge devices) or a .toml path (default: detected)")
    p.add_argument("--models", nargs="+", help="bundle model names or variant folders under --bundles (default: all)")
    p.add_argument("--bundles", help="folder searched for bundles (default: the shipped ones, export/ in a checkout)")
    p.add_argument("--out", "-o", help="results JSON (default: results-<device>.json)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (and --report) once the new run is complete"
    )
    p.add_argument("--dataset", "-d", nargs="+", help="quality datasets (default: the profile's)")
    p.add_argument("--data-root", help="folder holding dataset folders")
    p.add_argument("--resolution", nargs="+", metavar="WxH", help="LR input sizes (default: the profile's)")
    p.add_argument("--scale", "-s", nargs="+", type=scale_arg, help="scales (default: the profile's)")
    p.add_argument("--backend", nargs="+", help="backends (default: the profile's)")
    p.add_argument("--precision", nargs="+", help="precisions (default: the profile's)")
    p.add_argument("--peers", nargs="+", choices=["bicubic", "torch", "opencv"], help="peers (default: the profile's)")
    p.add_argument("--no-peers", action="store_true", help="bundles only")
    p.add_argument("--threads", type=int, help="runtime threads (default: the profile's)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed runs before a row's first timing (default 3; 1 in later rounds)"
    )
    p.add_argument("--min-runs", type=int, default=3, help="at least this many timed runs per round (default 3)")
    p.add_argument("--min-time", type=float, default=0.5, help="and at least this many seconds per round (default 0.5)")
    p.add_argument("--max-time", type=float, default=30.0, help="stop a slow row after this many seconds (default 30)")
    p.add_argument(
        "--rounds",
        type=int,
        default=6,
        help="latency rounds per row, in passes over the matrix; the best round's p50 is kept (default 6)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 1 warm-up, 3 runs, no minimum time")
    p.add_argument(
        "--dry-run", action="store_true", help="list the rows (and why any would be skipped); measure nothing"
    )
    p.add_argument(
        "--heap",
        choices=HEAP_MODES,
        default="steady",
        help="steady (default): freed memory stays mapped between runs, as in a frame loop (glibc); "
        "default: the C library's own heuristics",
    )
    p.add_argument("--no-quality", action="store_true", help="latency only")
    p.add_argument("--no-crops", action="store_true", help="no crops for the visual comparison sheet")
    p.add_argument("--report", nargs="?", const="", help="also write the report (into DIR, default <out>_report)")
    p.add_argument("--compare", metavar="BASELINE", help="results JSON to compare with; exit 1 on a regression")
    _add_compare_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="Markdown table, Pareto plot and visual comparison sheet from a results JSON")
    p.add_argument(
        "results", nargs="+",
        help="results JSON written by sr-edge bench; several (one per device): a table of variants by device",
    )  # fmt: skip
    p.add_argument("--out", "-o", help="output folder (default: <results>_report beside it)")
    p.add_argument("--scale", "-s", nargs="+", type=scale_arg, help="several files: scales to tabulate (default: all)")
    p.add_argument("--budget-ms", type=float, help="several files: one budget for all (default: each profile's)")
    p.add_argument("--dataset", "-d", help="dataset to rank and plot by (default: the first measured)")
    p.add_argument("--resolution", metavar="WxH", help="resolution to tabulate and plot (default: the first)")
    p.add_argument("--overwrite", action="store_true", help="replace the report files already in --out")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare a results JSON with a baseline; exit 1 on a regression")
    p.add_argument("results", help="results JSON to check")
    p.add_argument("baseline", help="baseline results JSON (e.g. benchmarks/baselines/ci-cpu.json)")
    _add_compare_options(p)
    p.set_defaults(func=cmd_compare)
