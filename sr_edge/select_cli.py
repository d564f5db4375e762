"""Verbs ``select`` and ``gate`` (registered by :mod:`sr_edge.cli`).

Thin: parse, build a :class:`~sr_edge.select.SelectOptions` or
:class:`~sr_edge.gate.GateOptions`, call the public API, print. Exit codes: 0 done (a pick,
or no row slower); 1 nothing fits / a row slower by more than the threshold (or a
candidate row that no longer runs); 2 a user error, one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SrEdgeError

EXIT_NO_FIT = 1
EXIT_SLOWER = 1


def _table(headers: list[str], rows: list[list[str]]) -> str:
    from .cliutil import format_table

    return format_table(headers, rows)


def _ms(c: Any) -> str:
    if c.latency_ms is None:
        return "-"
    return f"~{c.latency_ms:.1f} (est.)" if c.latency_estimated else f"{c.latency_ms:.1f}"


def _mb(c: Any) -> str:
    if c.memory_mb is None:
        return "-"
    return f"~{c.memory_mb:.0f} (est.)" if c.memory_estimated else f"{c.memory_mb:.0f}"


def _print_selection(sel: Any, show_all: bool) -> None:
    head = f"{sel.device.name}" + (" (profile built from this machine)" if sel.device.source == "detected" else "")
    measured = f"measured: {', '.join(sel.measured_from)}" if sel.measured_from else "no measurements: ESTIMATES"
    print(
        f"{head}: x{sel.scale} at {sel.resolution}, budget {sel.budget_ms:g} ms {sel.latency} p50, "
        f"memory {sel.memory_mb:g} MB" + (f", PSNR >= {sel.min_psnr:.2f} dB" if sel.min_psnr else "") + f"; {measured}"
    )
    cands = sel.candidates if show_all else sel.candidates[:12]
    rows = [
        [str(i + 1), c.label, f"{c.psnr:.2f}" if c.psnr is not None else "-", _ms(c), _mb(c), c.verdict]
        for i, c in enumerate(cands)
    ]
    print(_table(["#", "variant", f"PSNR-Y {sel.dataset}", f"{sel.latency} p50 ms", "memory MB", "verdict"], rows))
    if len(sel.candidates) > len(cands):
        print(f"({len(sel.candidates) - len(cands)} more; --all lists them)")
    if sel.estimated:
        fitted = ", ".join(sel.calibrated_on) or "no machine (uncalibrated)"
        print(f"~ = ESTIMATE: roofline on {sel.device.name}'s peak figures / efficiency fitted on {fitted}")
        for f in sel.factors:
            if not f.basis.startswith("fit"):
                print(f"  {f.backend}/{f.precision} efficiency {f.efficiency:.2f}: {f.basis}")
        if sel.device.hardware.estimated:
            print(f"  {sel.device.name}'s peak figures are themselves estimates")
    print(sel.headline())


def _options(args: argparse.Namespace, device: Any = None) -> Any:
    from .select import SelectOptions

    return SelectOptions(
        device=device,
        budget_ms=args.budget_ms,
        scale=args.scale,
        resolution=args.resolution,
        min_psnr=args.min_psnr,
        memory_mb=args.memory_mb,
        results=tuple(args.results or ()),
        bundles_dir=args.bundles,
        dataset=args.dataset,
        latency=args.latency,
        estimate=args.estimate,
        calibration=tuple(args.calibration or ()),
    )


def cmd_select(args: argparse.Namespace) -> int:
    """``sr-edge select``: the best-quality variant for a device under its budget."""
    from .bench import load_results

    devices = list(args.device or [])
    given = [load_results(p) for p in args.results or []]
    result_devices = list(dict.fromkeys(str(r.device.get("name")) for r in given))
    if args.check_estimate:
        return _check_estimate(args, given)
    from .select import resolve_profile

    extra = [d for d in devices if resolve_profile(d).name not in result_devices]
    if len(result_devices) + len(extra) > 1:
        return _select_many(args, extra)
    device: Any = devices[0] if devices else None
    if device is None and given:
        from .select import profile_of

        device = profile_of(given[0])  # the profile the file was measured for, as it recorded it
    from .select import select

    sel = select(_options(args, device))
    if args.json:
        print(json.dumps(sel.to_json(), indent=2))
    if sel.pick is None:
        print(f"sr-edge: {sel.reason}", file=sys.stderr)
        return EXIT_NO_FIT
    if not args.json:
        _print_selection(sel, args.all)
    if args.verify:
        from .select import verify

        v = verify(sel)
        print(v.line())
        return 0 if v.meets else EXIT_NO_FIT
    return 0


def _select_many(args: argparse.Namespace, devices: list[str]) -> int:
    from .bench.report import devices_markdown
    from .select import across_devices

    table = across_devices(
        results=tuple(args.results or ()), devices=devices, scale=args.scale,
        budget_ms=args.budget_ms, memory_mb=args.memory_mb, min_psnr=args.min_psnr, resolution=args.resolution,
        dataset=args.dataset, latency=args.latency, bundles_dir=args.bundles, calibration=tuple(args.calibration or ()),
    )  # fmt: skip
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(devices_markdown(table))
    missing = [s for s in table.selections if s.pick is None]
    for s in missing:
        print(f"sr-edge: {s.reason}", file=sys.stderr)
    return EXIT_NO_FIT if missing else 0


def devices_report(args: argparse.Namespace) -> int:
    """``sr-edge report A.json B.json``: the table of variants by device, per scale, and each device's pick."""
    from .bench import load_results
    from .bench.report import write_devices_report
    from .select import across_devices

    loaded = [load_results(p) for p in args.results]
    scales = args.scale or sorted({r.scale for res in loaded for r in res.rows if r.ok and r.peer is None})
    if not scales:
        raise SrEdgeError("no measured bundle row in these results files; nothing to tabulate")
    tables = [
        across_devices(loaded, scale=s, budget_ms=args.budget_ms, resolution=args.resolution,
                       dataset=args.dataset or "Set5")
        for s in scales
    ]  # fmt: skip
    out = Path(args.out) if args.out else Path(args.results[0]).with_name("devices_report")
    path = write_devices_report(tables, out, overwrite=args.overwrite)
    print(path)
    for t in tables:
        for s in t.selections:
            print(f"x{t.scale} {s.headline() if s.pick else s.device.name + ': ' + str(s.reason)}")
    return 0


def _check_estimate(args: argparse.Namespace, given: list[Any]) -> int:
    """``--check-estimate``: each results file's measured ranking vs the estimate's (Spearman)."""
    from .select import check_estimates, committed_results, fit

    if not given:
        raise SrEdgeError("--check-estimate needs --results FILE (measured rows to check the estimate against)")
    calib = [*(args.calibration or committed_results()), *(args.results or [])]
    from .bench import load_results

    files = {str(p): load_results(p) for p in calib}
    cal = fit(list(files.values()), [args.bundles] if args.bundles else None)
    code = 0
    for res in given:
        check = check_estimates(res, cal, args.resolution, bundle_dirs=[args.bundles] if args.bundles else None)
        if args.json:
            print(json.dumps(check.to_json(), indent=2))
            continue
        rows = sorted(check.rows, key=lambda r: r[1])
        print(
            _table(["row", "measured net p50 ms", "estimated net p50 ms", "est / measured"],
                   [[r, f"{m:.1f}", f"{e:.1f}", f"{e / m:.2f}"] for r, m, e in rows])
        )  # fmt: skip
        print(
            f"{check.machine} at {check.resolution}: Spearman rank correlation of the estimate vs "
            f"the measured network p50 over {len(rows)} rows = {check.rho:.3f} "
            f"(efficiency fitted without this machine, on: {', '.join(check.calibrated_on)})"
        )
    return code


def _gate_show(path: str) -> int:
    from .gate import load_gate, result_from_json

    result = result_from_json(load_gate(path), path)
    t = float(result.header["settings"]["threshold"])
    for row in result.rows:
        print(row.line(t))
    print(result.summary(), file=sys.stderr)
    return _gate_exit(result)


def _gate_exit(result: Any) -> int:
    broken = [r for r in result.errors if r.message.startswith("candidate")]
    return EXIT_SLOWER if result.failed or broken else 0


def cmd_gate(args: argparse.Namespace) -> int:
    """``sr-edge gate --base REF``: base and candidate measured interleaved here; exit 1 on a slower row."""
    if args.show:
        return _gate_show(args.show)
    if not args.base:
        raise SrEdgeError("--base is required (a git ref such as origin/main, or a folder of bundles)")
    from .gate import GateOptions, gate

    opts = GateOptions(
        base=args.base, bundles=args.bundles, models=tuple(args.models or ()), scales=tuple(args.scale or ()),
        backend=args.backend, precision=args.precision, device=args.device, threads=args.threads,
        resolution=args.resolution, threshold=args.threshold, confidence=args.confidence, runs=args.runs,
        min_rounds=args.min_rounds, max_rounds=args.max_rounds, max_seconds=args.max_seconds,
        base_code=args.base_code,
    )  # fmt: skip
    out = Path(args.out)
    if out.exists() and not args.overwrite:  # before minutes of measuring
        raise SrEdgeError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    result = gate(opts, out=out, progress=True)
    print(f"base: {result.header['base']['describe']}", file=sys.stderr)
    for row in result.rows:
        print(row.line(opts.threshold))
    print(result.summary(), file=sys.stderr)
    print(f"results: {out}", file=sys.stderr)
    return _gate_exit(result)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``select`` and ``gate``."""
    from .cliutil import scale_arg
    from .gate import BASE_CODES
    from .select import LATENCY_KINDS

    p = sub.add_parser(
        "select", help="the best-quality variant for a device under a latency and memory budget (measured or estimated)"
    )
    p.add_argument(
        "--device", nargs="+",
        help="profile name(s) or .toml path(s) (default: this machine's, or the --results files' devices)",
    )  # fmt: skip
    p.add_argument("--budget-ms", type=float, help="latency budget per frame (default: the profile's)")
    p.add_argument("--scale", "-s", type=scale_arg, default=2, help="2, 3 or 4 (default 2)")
    p.add_argument("--resolution", metavar="WxH", help="LR input frame (default: the profile's first)")
    p.add_argument("--min-psnr", type=float, help="lowest acceptable PSNR-Y in dB on --dataset")
    p.add_argument("--memory-mb", type=float, help="memory budget (default: the profile's)")
    p.add_argument("--results", nargs="+", help="results JSON files from sr-edge bench, one or more per device")
    p.add_argument("--bundles", help="folder of bundles to choose from (default: the shipped ones)")
    p.add_argument("--dataset", "-d", default="Set5", help="dataset PSNR ranks by (default Set5)")
    p.add_argument("--latency", choices=LATENCY_KINDS, default="frame",
                   help="frame (uint8 in/out, default) or network (the model alone)")  # fmt: skip
    p.add_argument("--estimate", action="store_true", help="ignore measurements; rank by the roofline estimate")
    p.add_argument(
        "--calibration", nargs="+", metavar="RESULTS",
        help="results files the estimate's efficiencies are fitted on (default: the committed ones)",
    )  # fmt: skip
    p.add_argument("--verify", action="store_true", help="then time the pick on this machine against the budget")
    p.add_argument(
        "--check-estimate", action="store_true",
        help="rank the --results rows by the estimate (fitted without their machine); print Spearman",
    )  # fmt: skip
    p.add_argument("--all", action="store_true", help="list every candidate")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser(
        "gate", help="CI latency gate: base and candidate measured interleaved here; exit 1 when a row is slower"
    )
    p.add_argument("--base", help="git ref (checked out into a temporary worktree) or a folder of bundles")
    p.add_argument("--bundles", help="the candidate's bundles (default: export/ of the repository)")
    p.add_argument("--models", nargs="+", help="model names or variant folders (default: all)")
    p.add_argument("--scale", "-s", nargs="+", type=scale_arg, help="only these scales")
    p.add_argument("--backend", default="ort", help="runtime (default ort)")
    p.add_argument("--precision", help="fp32, fp16, bf16 or int8 (default: each bundle's own)")
    p.add_argument("--device", help="backend device (default: the backend's)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    p.add_argument("--resolution", default="640x360", metavar="WxH", help="LR input (default 640x360)")
    p.add_argument("--threshold", type=float, default=0.10, help="fail above this slowdown (default 0.10)")
    p.add_argument("--confidence", type=float, default=0.95, help="one-sided confidence (default 0.95)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per side per round (default 3)")
    p.add_argument("--min-rounds", type=int, default=10, help="rounds before any row is decided (default 10)")
    p.add_argument("--max-rounds", type=int, default=40, help="at most this many rounds (default 40)")
    p.add_argument("--max-seconds", type=float, default=150.0, help="stop starting rounds after this (default 150)")
    p.add_argument("--base-code", choices=BASE_CODES, default="base",
                   help="run a git ref's bundles under its own sr-edge code (base, default) or this one")  # fmt: skip
    p.add_argument("--out", "-o", default="gate-results.json", help="gate results JSON (default gate-results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out once the gate has run")
    p.add_argument("--show", metavar="FILE", help="print the verdicts of an earlier gate results file")
    p.set_defaults(func=cmd_gate)
