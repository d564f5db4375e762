"""Why the bench keeps freed memory mapped: page faults and latency of PyTorch eager frames.

Each line is a fresh process (allocation history differs per process, and with it how
much glibc hands back to the kernel between frames) timing one model's eager forward at
640x360 under glibc's default heap and under ``sr_edge.bench.heap.steady_heap``::

    python docs/studies/heap_check.py                       # ecbsr-m4c16 x2, NCHW, 4 processes per mode
    python docs/studies/heap_check.py --model espcn --scale 3 --channels-last --processes 6

Needs the ``train`` extra (torch). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from sr_edge.bench.heap import steady_heap
from sr_edge.models import create_model
name, scale, mode, cl, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])
torch.set_num_threads(2)
fmt = torch.channels_last if cl else torch.contiguous_format
net = create_model(name, scale, pretrained=True).deploy().eval().to(memory_format=fmt)
x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 360, 640), dtype=np.float32)).contiguous(memory_format=fmt)
with steady_heap(mode), torch.inference_mode():
    for _ in range(3):
        net(x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"p50_ms": float(np.median(times)) * 1e3, "faults": faults / runs}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ecbsr-m4c16")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true", help="NHWC, as the torch backend runs")
    ap.add_argument("--processes", type=int, default=4, help="fresh processes per heap mode")
    ap.add_argument("--runs", type=int, default=20, help="timed forwards per process")
    args = ap.parse_args()
    layout = "channels_last" if args.channels_last else "NCHW"
    print(f"{args.model} x{args.scale}, {layout}, 640x360, 2 threads; p50 of {args.runs} forwards per process")
    for i in range(args.processes):
        line = []
        for mode in ("default", "steady"):
            argv = [args.model, str(args.scale), mode, "1" if args.channels_last else "0", str(args.runs)]
            out = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed", file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            line.append(f"{mode:7s} {r['p50_ms']:6.1f} ms, {r['faults']:7.0f} page faults/forward")
        print(f"process {i + 1}: " + " | ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
