"""Is this machine quiet enough for latency baselines? Time the same open sessions in windows.

Run before measuring a baseline (``benchmarks/baselines/README.md``)::

    python docs/studies/quiet_check.py                      # 3 committed x2/x3 bundles, 8 windows of 2 s
    python docs/studies/quiet_check.py --windows 12 --seconds 1

Each line is one round: the median latency of every session over one window. On a quiet
machine a session's medians agree within a few percent from window to window; if they do
not, no single benchmark run on this machine can be reproduced within 5% either, and the
spread printed at the end says by how much.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sr_edge.backends import load_bundle

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this file is docs/studies/<name>.py
SESSIONS = {
    "ecbsr-m4c16/x2 openvino bf16": ("export/ecbsr-m4c16/x2", "openvino", "bf16"),
    "espcn/x3 openvino fp32": ("export/espcn/x3", "openvino", "fp32"),
    "espcn/x2 ort fp32": ("export/espcn/x2", "ort", "fp32"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((1, 1, 360, 640), dtype=np.float32)
    sessions = {
        name: load_bundle(ROOT / path, backend=backend, precision=precision, threads=args.threads)
        for name, (path, backend, precision) in SESSIONS.items()
    }
    for s in sessions.values():
        for _ in range(3):
            s.run(x)
    medians: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.windows):
        cells = []
        for name, s in sessions.items():
            times = []
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                t = time.perf_counter()
                s.run(x)
                times.append((time.perf_counter() - t) * 1e3)
            medians[name].append(float(np.median(times)))
            cells.append(f"{name} {medians[name][-1]:7.2f} ms")
        print(time.strftime("%H:%M:%S"), " | ".join(cells), flush=True)
    for name, m in medians.items():
        spread = max(m) / min(m) - 1
        print(f"{name}: window medians {min(m):.2f}-{max(m):.2f} ms, spread {spread:.0%}")


if __name__ == "__main__":
    main()
