"""The ``sr-edge export`` verb."""

from __future__ import annotations

import argparse
from typing import Any


def _default_out(source: str, scale: int | None) -> str:
    from pathlib import Path

    stem = Path(source).stem if source.endswith(".safetensors") else source
    return f"export/{stem}/x{scale}" if scale else f"export/{stem}"


def cmd_export(args: argparse.Namespace) -> int:
    import sys

    from .exporter import export_bundle

    out = args.out or _default_out(args.source, args.scale)
    path = export_bundle(
        args.source,
        out,
        scale=args.scale,
        opset=args.opset,
        exporter=args.exporter,
        simplify=not args.no_simplify,
        measure=not args.no_eval,
        dataset=args.dataset,
        data_root=args.data_root,
        overwrite=args.overwrite,
        progress=True,
    )
    from ..bundle import read_bundle

    bundle = read_bundle(path)
    m = bundle.metrics
    quality = f", {m['dataset']} PSNR-Y {m['psnr_y']:.2f} dB / SSIM {m['ssim_y']:.4f} (ort)" if m else ""
    print(f"exported {bundle.model} x{bundle.scale} {bundle.precision} opset {bundle.opset}{quality}", file=sys.stderr)
    print(path)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``export`` on the ``sr-edge`` subparsers."""
    from ..cliutil import scale_arg

    p = sub.add_parser("export", help="export a checkpoint or shipped model to a deployable bundle (ONNX + manifest)")
    p.add_argument("source", help="checkpoint (.safetensors) or registered model name (its shipped weights)")
    p.add_argument("--scale", "-s", type=scale_arg, help="2, 3 or 4 (a checkpoint knows its own)")
    p.add_argument("--out", "-o", help="bundle folder (default export/<model>/x<scale>)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17-20 (default 18)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto", help="torch ONNX exporter")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--no-eval", action="store_true", help="skip measuring PSNR/SSIM on the exported graph")
    p.add_argument("--dataset", "-d", help="dataset for the recorded PSNR/SSIM (default Set5 if found, else samples)")
    p.add_argument("--data-root", help="folder holding dataset folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=cmd_export)
