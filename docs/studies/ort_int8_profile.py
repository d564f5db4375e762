"""Where ONNX Runtime spends an int8 bundle's time: per-op milliseconds and the optimised graph's ops.

For each bundle, the file the ``ort`` backend runs on this CPU (``Bundle.onnx_for``), with the
backend's session settings (the PReLU rewrite where it applies, ``WeightBiasQuantization``
off), profiled over a few runs of one 960x540 Y frame::

    python docs/studies/ort_int8_profile.py [export/espcn/x2-int8 export/espcn/x2 ...]

Profiling adds overhead: compare ops within a bundle, not the totals with the bench.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from sr_edge import load_bundle
from sr_edge.backends.ort_backend import cpu_graph

DEFAULT = ["export/espcn/x2-int8", "export/espcn/x2", "export/ecbsr-m4c16/x2-int8", "export/ecbsr-m4c16/x2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="*", default=DEFAULT)
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    x = np.random.default_rng(0).random((1, 1, 540, 960), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.bundles:
            with load_bundle(b, "ort", threads=2) as s:
                path = s.bundle.onnx_for("ort")
                source, _ = cpu_graph(path, s._options, ["CPUExecutionProvider"])
            so = ort.SessionOptions()
            so.enable_profiling = True
            so.intra_op_num_threads = 2
            so.add_session_config_entry("optimization.disable_specified_optimizers", "WeightBiasQuantization")
            so.profile_file_prefix = str(Path(tmp) / "profile")
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            for _ in range(args.runs):
                sess.run(None, {name: x})
            events = json.loads(Path(sess.end_profiling()).read_text())
            per_op: collections.Counter[str] = collections.Counter()
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_op[e["args"]["op_name"]] += e["dur"] / 1000 / args.runs
            ops = collections.Counter(n.op_type for n in onnx.load(str(Path(tmp) / "optimized.onnx")).graph.node)
            top = ", ".join(f"{op} {ms:.1f}" for op, ms in per_op.most_common(8))
            print(f"{b} ({path.name}): ms per run by op: {top}; optimised graph: {dict(ops)}", flush=True)


if __name__ == "__main__":
    main()
