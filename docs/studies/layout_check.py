"""Why the torch backend runs channels_last: eager NCHW vs NHWC on every shipped model.

Both layouts of the same deployment-form model run interleaved in one process (4 rounds
of 7 forwards each, 640x360 Y input, 2 threads, on the bench's steady heap), so host
phases hit both alike; the line gives each layout's median of round medians, the ratio
and the largest output difference::

    python docs/studies/layout_check.py
    python docs/studies/layout_check.py --models ecbsr-m4c16 --scales 2

Needs the ``train`` extra (torch). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ecbsr-m4c16", "fsrcnn", "espcn"])
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    import torch

    from sr_edge.backends.timing import interleaved_medians
    from sr_edge.bench.heap import steady_heap
    from sr_edge.models import create_model

    torch.set_num_threads(2)
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 360, 640), dtype=np.float32))
    layouts = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}
    with steady_heap(), torch.inference_mode():
        for name in args.models:
            for scale in args.scales:
                # one model per layout: Module.to(memory_format=...) converts in place
                nets = {k: create_model(name, scale, pretrained=True).deploy().eval() for k in layouts}
                nets = {k: net.to(memory_format=layouts[k]) for k, net in nets.items()}
                xs = {k: x.contiguous(memory_format=f) for k, f in layouts.items()}
                diff = float((nets["NCHW"](xs["NCHW"]) - nets["NHWC"](xs["NHWC"])).abs().max())
                calls = {k: functools.partial(nets[k], xs[k]) for k in layouts}
                a, b = interleaved_medians(calls, args.rounds, args.runs).values()
                line = f"{name} x{scale}: NCHW {a:6.1f} ms, NHWC {b:6.1f} ms, {a / b:.2f}x; max |diff| {diff:.1e}"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
