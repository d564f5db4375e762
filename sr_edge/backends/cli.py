"""Verbs of the backends stage: ``sr-edge check-trt`` and ``sr-edge backends``."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_CHECK_FAILED = 1


def cmd_check_trt(args: argparse.Namespace) -> int:
    from .base import ShapeRange, parse_shape
    from .trt_check import check_tensorrt, format_report

    default = ShapeRange()
    profile = ShapeRange(
        parse_shape(args.min) if args.min else default.min,
        parse_shape(args.opt) if args.opt else default.opt,
        parse_shape(args.max) if args.max else default.max,
    )
    failed = 0
    for path in args.bundles:
        report = check_tensorrt(path, profile)
        for line in format_report(report, verbose=args.verbose):
            print(line)
        failed += not report.ok
    if failed:
        print(f"sr-edge: {failed} of {len(args.bundles)} graph(s) are not TensorRT-friendly")
        return EXIT_CHECK_FAILED
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from .api import BACKENDS

    for name, backend in BACKENDS.items():
        ok = backend.available()
        how = "" if ok else (f"  (pip install 'sr-edge[{backend.extra}]')" if backend.extra else "")
        print(f"{name:<9} {'available' if ok else 'missing':<10} {', '.join(backend.precisions)}{how}")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``check-trt`` and ``backends`` on the ``sr-edge`` subparsers."""
    p = sub.add_parser("check-trt", help="check that bundles are TensorRT-friendly (no TensorRT needed)")
    p.add_argument("bundles", nargs="+", help="bundle folders or .onnx files")
    p.add_argument("--min", help="min optimisation-profile shape, NxHxW or HxW (default 1x8x8)")
    p.add_argument("--opt", help="opt shape (default 1x360x640)")
    p.add_argument("--max", help="max shape (default 1x1088x1920)")
    p.add_argument("--verbose", "-v", action="store_true", help="also print notes and the operator census")
    p.set_defaults(func=cmd_check_trt)

    p = sub.add_parser("backends", help="list inference backends and whether they are installed")
    p.set_defaults(func=cmd_backends)


__all__ = ["add_commands"]
