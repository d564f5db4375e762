"""How well two runs of the same bench agree: per row, |p50 run 2 / p50 run 1 - 1|.

The issue's stability target is every row within 5% on p50 between two runs in a row.
This prints, for frame and network p50 and for bundles and peers apart, how many rows
are within the tolerance, the worst row, and every row outside; then the same counts for
other ways to pick a row's p50 from its latency rounds (the bench keeps the lowest round
p50; the median of rounds and the mean of the lowest two are shown for comparison)::

    python docs/studies/pair_check.py benchmarks/reports/ci-cpu/results.json \\
        benchmarks/reports/ci-cpu/results-rerun.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

KINDS = {"frame": "frame", "network": "model"}
PICKS: dict[str, Callable[[np.ndarray], float]] = {
    "lowest round (the bench's p50)": lambda v: float(np.min(v)),
    "median of rounds": lambda v: float(np.median(v)),
    "mean of lowest two rounds": lambda v: float(np.mean(np.sort(v)[:2])),
}


def _rounds(path: Path) -> dict[tuple[str, str], tuple[bool, np.ndarray]]:
    out: dict[tuple[str, str], tuple[bool, np.ndarray]] = {}
    for row in json.loads(path.read_text())["rows"]:
        if row.get("status") != "ok" or not row.get("latency"):
            continue
        timing = next(iter(row["latency"].values()))
        for kind, key in KINDS.items():
            t = timing.get(key)
            if t:
                rounds = t.get("round_p50_ms") or [t["p50_ms"]]
                out[(row["id"], kind)] = (row.get("peer") is not None, np.asarray(rounds, float))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run1", type=Path)
    ap.add_argument("run2", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.05)
    args = ap.parse_args()
    a, b = _rounds(args.run1), _rounds(args.run2)
    common = [k for k in a if k in b]
    tol = args.tolerance
    for n, (pick_name, pick) in enumerate(PICKS.items()):
        print(f"{pick_name}:")
        for kind in KINDS:
            for group, is_peer in (("bundles", False), ("peers", True)):
                keys = [k for k in common if k[1] == kind and a[k][0] == is_peer]
                if not keys:
                    continue
                dev = {k[0]: pick(b[k][1]) / pick(a[k][1]) - 1 for k in keys}
                ok = sum(abs(d) <= tol for d in dev.values())
                worst = max(dev, key=lambda i: abs(dev[i]))
                line = f"  {kind:7s} p50 {group:7s} {ok:2d}/{len(dev)} within {tol:.0%}"
                line += f", median {float(np.median(np.abs(list(dev.values())))):.1%}, worst {dev[worst]:+.1%} {worst}"
                outside = [f"{i} {d:+.1%}" for i, d in dev.items() if abs(d) > tol]
                print(line + (f"; outside: {', '.join(outside)}" if outside and n == 0 else ""))
    frames = [k for k in common if k[1] == "frame"]
    faster = sum(np.min(b[k][1]) < np.min(a[k][1]) for k in frames)
    print(f"frame p50 lower in run 2 on {faster} of {len(frames)} rows (drift if far from half)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
