"""The ``sr-edge quantize`` verb: parse, build a :class:`QuantConfig`, call :func:`quantize`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _config(args: argparse.Namespace) -> Any:
    from .quantize import QuantConfig

    return QuantConfig(
        source=args.source,
        scale=args.scale,
        mode=args.mode,
        out=args.out,
        run_dir=args.run_dir,
        calib_data=tuple(args.calib_data),
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        data=tuple(args.data),
        data_root=args.data_root,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        lr_min=args.lr_min,
        distill=args.distill,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        seed=args.seed,
        threads=args.threads,
        eval_datasets=tuple(args.eval_dataset),
        sensitivity=args.sensitivity,
        max_drop_db=args.max_drop_db,
        float_layers=tuple(args.float_layer),
        ptq_engine=args.ptq_engine,
        fixed_outputs=args.fixed_outputs,
        opset=args.opset,
        exporter=args.exporter,
        overwrite=args.overwrite,
    )


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..cliutil import format_table
    from .pipeline import sensitivity_json
    from .quantize import quantize

    result = quantize(_config(args), resume=args.resume, progress=not args.json)
    if result.interrupted:
        print(
            f"sr-edge: interrupted at step {result.step}; continue with the same command plus --resume", file=sys.stderr
        )
        print(result.run_dir)
        return 130
    if result.bundle is None:  # a sensitivity report
        report = sensitivity_json(result.sensitivity)
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        print(
            format_table(
                ["layer", "kernel", "PSNR-Y int8 alone (dB)", "drop (dB)"],
                [
                    [r["name"], "x".join(map(str, r["shape"])), f"{r['psnr_y']:.3f}", f"{r['drop_db']:.3f}"]
                    for r in report
                ],
            )
        )
        return 0
    if args.json:
        print(json.dumps({"bundle": str(result.bundle), "float_layers": list(result.float_layers), **result.metrics}))
        return 0
    fp32, int8 = result.metrics.get("fp32", {}), result.metrics.get("int8", {})
    rows: list[list[str]] = []
    for backend, by_set in int8.items():  # "model.onnx@ort": TensorRT's file run by ORT, against ORT's fp32
        for dataset, m in by_set.items():
            ref = fp32.get(backend, fp32.get(backend.rsplit("@", 1)[-1], {})).get(dataset, {}).get("psnr_y")
            drop = f"{m['psnr_y'] - ref:+.3f}" if ref is not None else "-"
            rows.append([backend, dataset, f"{ref:.2f}" if ref is not None else "-", f"{m['psnr_y']:.2f}", drop])
    print(format_table(["backend", "dataset", "fp32 PSNR-Y", "int8 PSNR-Y", "change (dB)"], rows), file=sys.stderr)
    if result.float_layers:
        print(f"kept in float: {', '.join(result.float_layers)}", file=sys.stderr)
    print(result.bundle)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``quantize`` on the ``sr-edge`` subparsers."""
    from ..cliutil import scale_arg
    from ..train.config import add_field_option
    from .quantize import DEFAULT_EVAL, QuantConfig

    p = sub.add_parser(
        "quantize",
        help="int8 bundle of a model by quantisation-aware fine-tuning (qat) or calibration only (ptq)",
        description=(
            "Quantise a zoo model or checkpoint to int8 and write a bundle with one QDQ graph per runtime "
            "(model.onnx: TensorRT, model-openvino.onnx: OpenVINO, model-ort.onnx: ONNX Runtime), measured through "
            "each against fp32."
        ),
    )
    p.add_argument("source", help="registered model name (its shipped weights) or a .safetensors checkpoint")
    p.add_argument("--scale", "-s", type=scale_arg, help="2, 3 or 4 (a checkpoint knows its own)")
    opt = lambda flag, help=None, **kw: add_field_option(p, QuantConfig, flag, help, **kw)  # noqa: E731
    opt("--mode", "qat: calibrate then fine-tune with fake quantisation; ptq: calibrate only")
    p.add_argument("--out", "-o", help="bundle folder (default export/<model>/x<scale>-int8)")
    p.add_argument(
        "--run-dir", help="QAT fine-tune folder, checkpointed for --resume (default runs/quant/<model>_x<s>)"
    )
    opt("--steps", "QAT optimizer steps")
    opt("--batch-size", "QAT batch size (LR patches)")
    opt("--patch-size", "QAT LR patch side in pixels")
    opt("--lr", "QAT learning rate (Adam, cosine schedule)")
    opt("--lr-min", "final learning rate")
    opt("--distill", "0..1: weight of L1 to the float model's own output; the rest is L1 to HR")
    opt("--calib-data", "training folders the calibration images come from", metavar="FOLDER")
    opt("--calib-images", "whole images used to calibrate ranges")
    opt("--calib-method", "range of each activation: MSE-optimal clip, max, or 99.99th percentile")
    opt("--data", "QAT training folders", metavar="FOLDER")
    p.add_argument("--data-root", help="folder holding the dataset folders")
    p.add_argument(
        "--eval-dataset",
        nargs="+",
        default=list(DEFAULT_EVAL),
        metavar="DATASET",
        help="datasets the bundle is measured on through each runtime; the first also drives "
        "--sensitivity and --max-drop-db (default: Set5 Set14)",
    )
    opt("--val-every", "QAT held-out validation interval (steps)")
    opt("--ckpt-every", "QAT checkpoint interval (steps)")
    opt("--seed", "QAT seed")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    opt("--sensitivity", "report each layer's PSNR with only it in int8, then stop (writes nothing)")
    p.add_argument(
        "--max-drop-db",
        type=float,
        help="keep the most sensitive layers in float until the PSNR-Y drop on the first --eval-dataset fits",
    )
    p.add_argument(
        "--float-layer", action="append", default=[], metavar="LAYER", help="keep this layer in float (repeatable)"
    )
    opt("--ptq-engine", "with --mode ptq: sr-edge's own calibration, or the ORT quantize_static / NNCF baselines")
    opt(
        "--fixed-outputs",
        "calibrate, not fine-tune, the conv-output grids only the ONNX Runtime file uses (after PReLU convs)",
    )
    opt("--opset", "ONNX opset of the exported graphs")
    opt("--exporter", "torch ONNX exporter of the float graph the QDQ nodes go into")
    p.add_argument("--resume", action="store_true", help="continue an interrupted QAT fine-tune in --run-dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress output)")
    p.set_defaults(func=cmd_quantize)
