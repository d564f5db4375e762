"""Measure an int8 bundle's files on this CPU and record the best per runtime for its class.

``sr-edge quantize`` chooses each CPU runtime's file on the machine that quantises, but the
best file depends on the CPU's int8 kernels: on an AMD Zen 3 (AVX2, no VNNI) OpenVINO lost
1.7 dB on FSRCNN x2 with its own placement (QDQ on conv inputs) and nothing with ONNX
Runtime's; on an AMD Zen 5 (AVX-512 VNNI) its own placement lost nothing and ran 4.7x
faster (35.8 vs 168.2 ms network p50 at 960x540, ``sr-edge bench``). A bundle quantised on
one class and deployed on the other is measured once here::

    python -m sr_edge.compress.placements export/fsrcnn/x2-int8 [more bundles] [-d Set5]

and its manifest gains ``placements_by_cpu[<this class>]`` (the files ``load_bundle`` opens on
CPUs of that class) and ``quantization.placement_choice[<this class>]`` (every score and the
CPU). The measuring runs on a temporary copy; the manifest is replaced in one rename.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import SrEdgeError


def recheck(folder: str | Path, dataset: str = "Set5") -> dict[str, dict[str, Any]]:
    """Choose each CPU runtime's file of the int8 bundle at ``folder`` by what it measures here
    on ``dataset`` and record it for this CPU's class; returns the choice per runtime."""
    from ..bundle import MANIFEST, read_bundle
    from ..data.datasets import resolve_dataset
    from ..provenance import write_json
    from .pipeline import choose_placements, record_placements

    bundle = read_bundle(folder)  # verified first: a damaged bundle is refused before any work
    if bundle.precision != "int8" or not bundle.placements:
        raise SrEdgeError(f"{bundle.path}: not an int8 bundle with one file per runtime; nothing to choose")
    ds = resolve_dataset(dataset)
    src = SimpleNamespace(model=bundle.model, scale=bundle.scale, color_mode=bundle.color_mode)
    with tempfile.TemporaryDirectory(prefix="sr-edge-placements-") as tmp:
        work = Path(tmp) / bundle.path.name
        shutil.copytree(bundle.path, work)
        # choose_placements reads the source's model, scale and colour mode only
        choice = choose_placements(work, src, ds)  # type: ignore[arg-type]
        record_placements(work, choice)
        write_json(bundle.path / MANIFEST, json.loads((work / MANIFEST).read_text()))
    return choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sr_edge.compress.placements",
        description="Measure int8 bundles' files through each CPU runtime here; record the best for this CPU class.",
    )
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("-d", "--dataset", default="Set5", help="dataset measured (default Set5)")
    args = parser.parse_args(argv)
    from ..boundary import run_cli  # the CLI's one-line errors and exit codes

    def work() -> int:
        from ..devices.probe import int8_cpu_class

        for folder in args.bundles:
            choice = recheck(folder, args.dataset)
            picks = ", ".join(f"{b} {c['chosen']}" for b, c in choice.items())
            print(f"{folder}: {int8_cpu_class()}: {picks}")
        return 0

    return run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
