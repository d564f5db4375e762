"""Why the ORT backend rewrites PRelu on the CPU: the shipped bundles with and without it.

Each bundle runs on ONNX Runtime's CPU provider twice in one process, as exported
(``prelu_rewrite=False``) and rewritten (the default, :mod:`sr_edge.backends.ort_rewrite`),
interleaved in 4 rounds of 7 network runs (640x360 input, 2 threads, the bench's steady
heap), so host phases hit both alike; the line gives each one's median of round medians,
the ratio, the nodes rewritten and the largest output difference (0: bit-identical)::

    python docs/studies/ort_prelu_check.py
    python docs/studies/ort_prelu_check.py --bundles export/ecbsr-m4c16/x2

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
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from sr_edge.backends import load_bundle
    from sr_edge.backends.timing import interleaved_medians
    from sr_edge.bench.heap import steady_heap

    with steady_heap():
        for path in args.bundles:
            kinds = {"as exported": False, "rewritten": True}
            sessions = {k: load_bundle(path, "ort", threads=args.threads, prelu_rewrite=v) for k, v in kinds.items()}
            spec = sessions["rewritten"].input_spec
            x = np.random.default_rng(0).random((1, spec.channels, 360, 640), dtype=np.float32)
            diff = float(np.abs(sessions["as exported"].run(x) - sessions["rewritten"].run(x)).max())
            calls = {k: functools.partial(s.run, x) for k, s in sessions.items()}
            a, b = interleaved_medians(calls, args.rounds, args.runs).values()
            rewrites = getattr(sessions["rewritten"], "graph_rewrites", None) or {}
            name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
            print(
                f"{name}: as exported {a:6.1f} ms, rewritten {b:6.1f} ms, {a / b:.2f}x; "
                f"rewrites {rewrites or 'none'}; max |diff| {diff:.1e}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
