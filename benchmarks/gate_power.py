"""The gate's power, measured: how often ``sr-edge gate`` fails a real slowdown and passes no change.

    python benchmarks/gate_power.py --out benchmarks/reports/gate-power --repeats 10

1. Slowed copies of one bundle (``--victim``, default ``ecbsr-m4c16/x2``) are made with
   :mod:`sr_edge.gate.inject` (identity 1x1 convolutions: the output is unchanged): by
   default 1 and 3 convolutions on its first 16-channel map (``--fixed``), about 5% and 15%
   here; each copy is measured alone against the original first (interleaved, in one
   process) and that ratio is recorded next to the gate's verdicts.
2. For each condition (no change, then each slowdown) a candidate tree is built: the
   shipped bundles of ``--scale`` with the victim replaced by its slowed copy.
3. ``sr-edge gate --base <the shipped bundles> --bundles <candidate tree>`` runs
   ``--repeats`` times per condition, the conditions taking turns (none, 5%, 15%, none, ...)
   so the host's busy and quiet phases spread over all of them. Each run's gate JSON is
   kept; ``summary.json`` and ``summary.md`` say how often each condition failed, each
   run's time, the victim row's ratio and interval, and the reference workload's spread.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree(src: Path, scale: int, dst: Path) -> Path:
    """A copy of the shipped bundles of one scale (``<model>/x<scale>``)."""
    for folder in sorted(src.glob(f"*/x{scale}")):
        shutil.copytree(folder, dst / folder.relative_to(src))
    return dst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/reports/gate-power")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--victim", default="ecbsr-m4c16/x2")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--backend", default="openvino")
    p.add_argument("--resolution", default="640x360")
    p.add_argument("--slowdowns", type=float, nargs="+", default=[0.15, 0.05])
    p.add_argument("--calibration-rounds", type=int, default=30)
    p.add_argument(
        "--points", nargs="+", default=["1:3"],
        help="POINT:MAX_CONVS insertion points tried (narrowest map first) and how many convolutions at each",
    )  # fmt: skip
    p.add_argument(
        "--fixed", nargs="*", default=["0.05=1:1", "0.15=1:3"],
        help="SLOWDOWN=POINT:CONVS injections chosen beforehand (default: ECBSR's 16-channel map, 1 and 3 convs)",
    )  # fmt: skip
    p.add_argument("--gate-args", default="", help="extra arguments for sr-edge gate, as one string")
    args = p.parse_args()

    from sr_edge.gate.inject import calibrate, closest, inject

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sr-edge-power-"))
    export = ROOT / "export"
    victim = export / args.victim
    res = [int(v) for v in args.resolution.split("x")]
    t0 = time.time()
    measured = {}
    for spec in args.points:  # POINT:MAX_CONVS, each measured against the original, interleaved
        point, most = (int(v) for v in spec.split(":"))
        measured.update(calibrate(victim, work / f"calib{point}", args.backend, (res[0], res[1]), max_convs=most,
                                  rounds=args.calibration_rounds, points=[point]))  # fmt: skip
    conditions: dict[str, dict[str, object]] = {"none": {"point": None, "convs": 0, "measured_ratio": 1.0}}
    fixed = dict(item.split("=") for item in args.fixed)
    for target in args.slowdowns:
        if f"{target:g}" in fixed:  # chosen beforehand (a noisy host can misorder close calibrations)
            point, n = (int(v) for v in fixed[f"{target:g}"].split(":"))
        else:
            point, n = closest(measured, target)
        conditions[f"{target:.0%}"] = {"point": point, "convs": n, "measured_ratio": measured[(point, n)][1],
                                       "target": target}  # fmt: skip
    table = {f"point {p}, {n} conv(s)": round(r, 4) for (p, n), (_, r) in sorted(measured.items())}
    print(f"injection calibration ({time.time() - t0:.0f} s): {table}", file=sys.stderr)
    base = _tree(export, args.scale, work / "base")
    trees = {}
    for name, cond in conditions.items():
        tree = _tree(export, args.scale, work / f"cand-{name.rstrip('%')}")
        if cond["convs"]:
            shutil.rmtree(tree / args.victim)
            inject(victim, tree / args.victim, int(cond["convs"]), int(cond["point"]))  # type: ignore[call-overload]
        trees[name] = tree
    runs: list[dict[str, object]] = []
    for rep in range(args.repeats):
        for name, tree in trees.items():
            path = out / f"gate-{name.rstrip('%')}-{rep:02d}.json"
            cmd = [sys.executable, "-m", "sr_edge", "gate", "--base", str(base), "--bundles", str(tree),
                   "--backend", args.backend, "--resolution", args.resolution, "--out", str(path),
                   *args.gate_args.split()]  # fmt: skip
            started = time.time()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            seconds = time.time() - started
            if done.returncode not in (0, 1):
                print(done.stderr, file=sys.stderr)
                return 2
            doc = json.loads(path.read_text())
            row = next(r for r in doc["rows"] if r["variant"] == args.victim)
            others = [r for r in doc["rows"] if r["variant"] != args.victim]
            runs.append({
                "condition": name, "repeat": rep, "exit": done.returncode, "seconds": round(seconds, 1),
                "victim_ratio": row["ratio"], "victim_low": row["low"], "victim_high": row["high"],
                "victim_verdict": row["verdict"], "victim_rounds": row["rounds"],
                "other_verdicts": [r["verdict"] for r in others],
                "other_ratios": [r["ratio"] for r in others],
                "reference_p50_ms": doc["reference"]["p50_ms"], "reference_spread": doc["reference"]["spread"],
                "file": path.name,
            })  # fmt: skip
            print(f"{name:>5} #{rep}: exit {done.returncode}, {seconds:.0f} s, victim {row['ratio']:.3f} "
                  f"[{row['low']:.3f}, {row['high'] or float('inf'):.3f}] {row['verdict']}, "
                  f"reference spread {doc['reference']['spread']:.0%}", file=sys.stderr, flush=True)  # fmt: skip
    summary = {"conditions": conditions, "calibration": table,
               "settings": vars(args), "runs": runs}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| condition | injected (measured alone) | gate failed | victim ratio, median [min, max] | "
             "run time s, median [max] |", "|---|---|---|---|---|"]  # fmt: skip
    for name, cond in conditions.items():
        mine = [r for r in runs if r["condition"] == name]
        fails = sum(r["exit"] == 1 for r in mine)
        ratios = [float(r["victim_ratio"]) for r in mine]  # type: ignore[arg-type]
        secs = [float(r["seconds"]) for r in mine]  # type: ignore[arg-type]
        lines.append(
            f"| {name} | {cond['convs']} conv(s) at point {cond['point']}, x{float(cond['measured_ratio']):.3f} "  # type: ignore[arg-type]
            f"| {fails}/{len(mine)} | {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
            f"| {statistics.median(secs):.0f} [{max(secs):.0f}] |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
