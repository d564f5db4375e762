"""Why ORT threads stop spinning when a run returns: network and frame time per spin mode.

Each bundle gets three ONNX Runtime CPU sessions (2 threads, the backend's own graph
rewrites): threads that spin-wait during a run and keep spinning after it (ORT's default),
that never spin, and that spin during a run but stop when it returns (what the ``ort``
backend does: ``session.force_spinning_stop``). Each runs the network alone (640x360 Y)
and a whole frame (640x360 uint8 RGB, colour work on 2 threads), all interleaved in 5
rounds of 7 on the bench's steady heap; the line gives each one's median of round medians::

    python docs/studies/ort_spin_check.py
    python docs/studies/ort_spin_check.py --bundles export/ecbsr-m4c16/x4

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this file is docs/studies/<name>.py
MODES = {"spin": ("1", "0"), "no spin": ("0", "0"), "spin, stop after run": ("1", "1")}
DEFAULT = ["fsrcnn/x2", "fsrcnn/x3", "ecbsr-m4c16/x3", "ecbsr-m4c16/x4", "espcn/x4"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="+", type=Path, default=[ROOT / "export" / b for b in DEFAULT])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    import onnxruntime as ort

    from sr_edge.backends.ort_backend import OrtOptions, cpu_graph
    from sr_edge.backends.timing import interleaved_medians
    from sr_edge.bench.heap import steady_heap
    from sr_edge.bundle import read_bundle
    from sr_edge.upscale import NetworkUpscaler

    frame = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    with steady_heap():
        for path in args.bundles:
            bundle = read_bundle(path)
            x = np.random.default_rng(0).random((1, bundle.channels, 360, 640), dtype=np.float32)
            graph, _ = cpu_graph(bundle.onnx_path, OrtOptions(), ["CPUExecutionProvider"])
            calls = {}
            for mode, (spin, stop) in MODES.items():
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
                so.add_session_config_entry("session.intra_op.allow_spinning", spin)
                so.add_session_config_entry("session.force_spinning_stop", stop)
                sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
                name = sess.get_inputs()[0].name

                def run(t: np.ndarray, sess: ort.InferenceSession = sess, name: str = name) -> np.ndarray:
                    return np.asarray(sess.run(None, {name: t})[0])

                up = NetworkUpscaler(bundle.name, bundle.scale, bundle.color_mode, run, workers=2)
                calls[f"network, {mode}"] = functools.partial(run, x)
                calls[f"frame, {mode}"] = functools.partial(up, frame)
            got = interleaved_medians(calls, args.rounds, args.runs)
            label = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
            print(f"{label}: " + " | ".join(f"{k} {v:.1f} ms" for k, v in got.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
