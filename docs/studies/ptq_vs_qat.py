"""What QAT buys over post-training quantisation: fp32 / PTQ / QAT PSNR-Y per model, scale and backend.

For each shipped model and scale, quantises the fp32 bundle with each post-training engine
(sr-edge's own calibration, ONNX Runtime ``quantize_static``, NNCF ``nncf.quantize``) into
``--out`` (a bundle per engine; existing ones are reused, so an interrupted run goes on), then
prints one Markdown table: the fp32 PSNR-Y, each PTQ bundle's and the shipped QAT bundle's
(``export/<model>/x<s>-int8``) change against it, on Set5 / Set14, through ORT and OpenVINO.
Each PTQ run is ``sr-edge quantize MODEL --scale S --mode ptq --ptq-engine ENGINE``.

    python docs/studies/ptq_vs_qat.py --out /tmp/ptq [--models fsrcnn espcn ecbsr-m4c16] [--scales 2 3 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sr_edge.backends import available_backends
from sr_edge.paths import PROJECT_ROOT

ENGINES = ("sr-edge", "ort", "nncf")


def _drops(manifest: dict) -> dict:
    return manifest["quantization"]["drop_db"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the PTQ bundles (reused when present)")
    ap.add_argument("--models", nargs="+", default=["fsrcnn", "espcn", "ecbsr-m4c16"])
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from sr_edge.compress.quantize import QuantConfig, quantize

    backends = [b for b in ("ort", "openvino") if b in available_backends()]
    rows = []
    for model in args.models:
        for scale in args.scales:
            qat = json.loads((PROJECT_ROOT / "export" / model / f"x{scale}-int8" / "manifest.json").read_text())
            ptq = {}
            for engine in ENGINES:
                folder = args.out / f"{model}_x{scale}_{engine}"
                if not (folder / "manifest.json").exists():
                    quantize(
                        QuantConfig(
                            source=model,
                            scale=scale,
                            mode="ptq",
                            ptq_engine=engine,
                            out=str(folder),
                            run_dir=str(args.out / f"run_{model}_x{scale}_{engine}"),
                            threads=args.threads,
                        ),
                        progress=True,
                    )
                ptq[engine] = _drops(json.loads((folder / "manifest.json").read_text()))
            fp32 = qat["quantization"]["fp32_metrics"]
            for backend in backends:
                cells = [f"{fp32[backend][d]['psnr_y']:.2f}" for d in ("Set5", "Set14")]
                for drops in (*(ptq[e] for e in ENGINES), _drops(qat)):
                    cells.append(" / ".join(f"{drops[backend][d]:+.2f}" for d in ("Set5", "Set14")))
                rows.append(
                    f"| {model} x{scale} | {backend} | {cells[0]} / {cells[1]} | " + " | ".join(cells[2:]) + " |"
                )
    print("| model | backend | fp32 Set5 / Set14 | PTQ sr-edge | PTQ ORT quantize_static | PTQ NNCF | QAT (shipped) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
