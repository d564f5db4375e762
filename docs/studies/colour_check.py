"""Why Y-model frames do their colour work on threads: frame latency with 1 and N workers.

A Y-channel model's frame is: RGB -> YCbCr at LR, the network on Y, bicubic Cb/Cr to the
output size (Pillow), YCbCr -> RGB with rounding. At x4 the colour work costs more than
ECBSR's network. Each bundle runs one session, wrapped as an upscaler with ``workers=1``
and with ``--workers`` (default 2), interleaved in 4 rounds of 7 frames (640x360 uint8 RGB,
2 runtime threads, the bench's steady heap); the line gives each one's median of round
medians, the ratio, and whether the frames are identical. ``--no-spin`` runs ONNX Runtime
with threads that never spin-wait (sr-edge lets them spin during a run and stops them when
it returns, which frees the cores the colour threads need)::

    python docs/studies/colour_check.py
    python docs/studies/colour_check.py --bundles export/ecbsr-m4c16/x4 --backend ort [--no-spin]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this file is docs/studies/<name>.py


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="+", type=Path, default=sorted((ROOT / "export").glob("*/x*")))
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-spin", action="store_true", help="ort: intra-op threads never spin-wait")
    args = ap.parse_args()

    from sr_edge.backends import load_bundle
    from sr_edge.backends.timing import interleaved_medians
    from sr_edge.bench.heap import steady_heap

    frame = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    with steady_heap():
        for path in args.bundles:
            options = {"spin": False} if args.no_spin and args.backend == "ort" else {}
            with load_bundle(path, args.backend, args.precision, threads=args.threads, **options) as session:
                if session.bundle.color_mode != "y":
                    continue
                ups = {"1 worker": session.upscaler(1), f"{args.workers} workers": session.upscaler(args.workers)}
                same = np.array_equal(*(u(frame) for u in ups.values()))
                a, b = interleaved_medians(
                    {k: functools.partial(u, frame) for k, u in ups.items()}, args.rounds, args.runs
                ).values()
                name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
                print(
                    f"{name} {args.backend}/{session.precision}: 1 worker {a:6.1f} ms, "
                    f"{args.workers} workers {b:6.1f} ms, {a / b:.2f}x; identical frames: {same}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
