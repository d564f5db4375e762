"""Frame path of Y models: the colour work in the graph (sr_edge.frame_graph) against numpy.

For each bundle and CPU backend: network p50 (float Y tensor), frame p50 through the graph
path and through the numpy path (uint8 RGB in and out), interleaved in rounds on the same
session so both see the same machine; then, on Set5 and Set14, PSNR-Y through each path and
the share of output values the two paths put more than one grey level apart.

    python docs/studies/frame_path_check.py [--bundles export/ecbsr-m4c16/x2 ...] [--resolution 960x540]
    python docs/studies/frame_path_check.py --backends openvino --precision bf16   # the split graph

``--variants``: instead, frame p50 of each frame-graph variant (``fused`` colour convs or Split
and Concat; three single-axis transposes or one 6-D transpose) beside the network p50, in
interleaved rounds, per bundle and backend: how each backend's ``frame_options`` was chosen.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sr_edge.backends import available_backends, load_bundle
from sr_edge.data.datasets import resolve_dataset
from sr_edge.evaluate import evaluate, iter_pairs

DEFAULT = ["export/ecbsr-m4c16/x2", "export/espcn/x2", "export/fsrcnn/x2"]


def p50(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="+", default=DEFAULT)
    ap.add_argument("--resolution", default="960x540")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["ort", "openvino"])
    ap.add_argument("--precision", default=None, help="fp32, bf16, ... (default: the bundle's own)")
    ap.add_argument("--variants", action="store_true", help="time each frame-graph variant instead")
    args = ap.parse_args()
    w, h = (int(v) for v in args.resolution.split("x"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y = rng.random((1, 1, h, w), dtype=np.float32)
    if args.variants:
        variants(args, frame, y)
        return
    print(
        "| bundle | backend | network p50 ms | frame p50 ms, graph | frame / network | frame p50 ms, numpy | "
        "numpy / network | Set5 / Set14 PSNR-Y graph - numpy (dB) | values > 1 level apart |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for bundle in args.bundles:
        for backend in (b for b in args.backends if b in available_backends()):
            with load_bundle(bundle, backend=backend, precision=args.precision, threads=args.threads) as s:
                graph, numpy_path = s.upscaler(), s.upscaler(frame_path="numpy")
                net, fg, fn = [], [], []
                for _ in range(args.rounds):  # interleaved: the three see the same machine
                    net.append(p50(lambda s=s: s.run(y), args.runs))
                    fg.append(p50(lambda up=graph: up(frame), args.runs))
                    fn.append(p50(lambda up=numpy_path: up(frame), args.runs))
                n, g, m = (float(np.median(v)) for v in (net, fg, fn))
                diffs, apart, total = [], 0, 0
                for name in ("Set5", "Set14"):
                    ds = resolve_dataset(name)
                    diffs.append(evaluate(graph, ds).psnr_y - evaluate(numpy_path, ds).psnr_y)
                    for _, _, lr in iter_pairs(ds, s.bundle.scale):
                        if lr.ndim != 3 or lr.shape[-1] != 3:
                            continue  # a grey image: both take the numpy path
                        d = np.abs(graph(lr).astype(np.int16) - numpy_path(lr).astype(np.int16))
                        apart, total = apart + int((d > 1).sum()), total + d.size
                share = f"{apart / total:.2e}" if total else "-"
                print(
                    f"| {bundle} | {backend}/{s.precision} | {n:.1f} | {g:.1f} | {g / n:.2f}x | {m:.1f} | "
                    f"{m / n:.2f}x | {diffs[0]:+.4f} / {diffs[1]:+.4f} | {share} |",
                    flush=True,
                )


VARIANTS = {
    "split, 3 transposes": {"fused": False, "transpose": "axes"},
    "split, 6-D": {"fused": False, "transpose": "6d"},
    "fused, 3 transposes": {"fused": True, "transpose": "axes"},
    "fused, 6-D": {"fused": True, "transpose": "6d"},
}


def variants(args: argparse.Namespace, frame: np.ndarray, y: np.ndarray) -> None:
    print("| bundle | backend | network p50 ms | " + " | ".join(f"{v}: frame ms (x net)" for v in VARIANTS) + " |")
    print("|---|---|---|" + "---|" * len(VARIANTS))
    for bundle in args.bundles:
        for backend in (b for b in ("ort", "openvino") if b in available_backends()):
            with load_bundle(bundle, backend=backend, threads=args.threads) as s:
                cls = type(s)
                saved = cls.frame_options
                ups = {}
                try:
                    for name, opts in VARIANTS.items():
                        cls.frame_options = opts
                        ups[name] = s.upscaler()
                finally:
                    cls.frame_options = saved
                net, times = [], {name: [] for name in VARIANTS}
                for _ in range(args.rounds):  # interleaved: all see the same machine
                    net.append(p50(lambda s=s: s.run(y), args.runs))
                    for name, up in ups.items():
                        times[name].append(p50(lambda up=up: up(frame), args.runs))
                n = float(np.median(net))
                cells = [f"{float(np.median(v)):.1f} ({float(np.median(v)) / n:.2f}x)" for v in times.values()]
                print(f"| {bundle} | {backend} | {n:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
