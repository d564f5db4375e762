"""Quick per-backend latency of bundles: ``python -m sr_edge.backends.timing BUNDLE ... --size 360x640``.

A developer's sanity check (median ms per frame after warm-up, plus session build time),
not the benchmark: ``sr_edge.bench`` owns repeatable measurements, baselines and reports.
Each ``--backends`` entry is ``name`` or ``name:precision`` (e.g. ``openvino:bf16``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import SrEdgeError, one_line
from .api import load_bundle
from .base import parse_shape

_THREAD_OPTION = {"ort": "threads", "openvino": "threads", "torch": "threads"}


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 0) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def time_session(session: Any, x: np.ndarray, runs: int, warmup: int) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    return time_calls(lambda: session.run(x), runs, warmup)


def interleaved_medians(calls: Mapping[str, Callable[[], object]], rounds: int, runs: int) -> dict[str, float]:
    """Each call's median of round medians (ms), the calls taking turns round by round.

    Every round gives each call one untimed run, then ``runs`` timed ones; interleaving
    makes a slow host phase hit all of them alike, so their ratio stays fair.
    """
    medians: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            medians[k].append(statistics.median(time_calls(fn, runs, warmup=1)))
    return {k: statistics.median(v) for k, v in medians.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sr_edge.backends.timing", description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+")
    p.add_argument("--backends", nargs="+", default=["ort", "openvino", "torch"], help="name or name:precision")
    p.add_argument("--size", default="360x640", help="LR input HxW or NxHxW (default 360x640)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="intra-op threads for ort, openvino and torch")
    args = p.parse_args(argv)
    n, h, w = parse_shape(args.size)
    print("| bundle | backend | precision | build s | median ms | min ms |")
    print("|---|---|---|---|---|---|")
    for path in args.bundles:
        for spec in args.backends:
            name, _, precision = spec.partition(":")
            options = {_THREAD_OPTION[name]: args.threads} if args.threads and name in _THREAD_OPTION else {}
            try:
                with load_bundle(path, name, precision or None, **options) as session:
                    x = np.random.default_rng(0).random((n, session.input_spec.channels, h, w), dtype=np.float32)
                    times = time_session(session, x, args.runs, args.warmup)
                    label = session.bundle.name
                    print(
                        f"| {label} | {name} | {session.precision} | {session.build_seconds:.2f} | "
                        f"{statistics.median(times):.1f} | {min(times):.1f} |",
                        flush=True,
                    )
            except SrEdgeError as e:
                print(f"| {path} | {name} | {precision or '-'} | - | {one_line(str(e))[:80]} | - |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
