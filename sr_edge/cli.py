"""The ``sr-edge`` command line: parse, build a config, call the public API.

Every verb is a function ``cmd_<verb>(args) -> int``; user errors raise
:class:`~sr_edge.errors.SrEdgeError` and come out as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import SrEdgeError, one_line

EXIT_USER_ERROR = 2


def _scale(text: str) -> int:
    from .upscale import check_scale

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale must be an integer, got {text!r}") from None
    try:
        return check_scale(value)
    except SrEdgeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def cmd_eval(args: argparse.Namespace) -> int:
    from .data.datasets import resolve_datasets
    from .evaluate import evaluate
    from .resolve import create_upscaler

    datasets = resolve_datasets(args.dataset, args.data_root)
    scales = args.scale or [2]
    results = []
    for spec in args.model:
        for scale in scales:
            upscaler = create_upscaler(spec, scale)
            for ds in datasets:
                results.append(evaluate(upscaler, ds, rgb=args.rgb, progress=not args.json))
    if args.json:
        payload = [r.to_json() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return 0
    headers = ["model", "dataset", "scale", "images", "PSNR-Y (dB)", "SSIM-Y"] + (["PSNR-RGB (dB)"] if args.rgb else [])
    rows = [
        [r.model, r.dataset, f"x{r.scale}", str(len(r.images)), f"{r.psnr_y:.2f}", f"{r.ssim_y:.4f}"]
        + ([f"{r.psnr_rgb:.2f}"] if args.rgb and r.psnr_rgb is not None else [])
        for r in results
    ]
    print(_format_table(headers, rows))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def cmd_upscale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.io import read_image, write_image
    from .resolve import create_upscaler
    from .upscale import upscale_image

    inputs = [Path(p) for p in args.inputs]
    out_arg = Path(args.out)
    if len(inputs) > 1 and not out_arg.is_dir():
        raise SrEdgeError(f"--out {out_arg} must be an existing folder when upscaling several images")
    upscaler = create_upscaler(args.model, args.scale)
    for src in inputs:
        dst = out_arg / f"{src.stem}_x{args.scale}{src.suffix}" if out_arg.is_dir() else out_arg
        if dst.resolve() == src.resolve():
            raise SrEdgeError(f"{dst}: refusing to overwrite the input image; choose another --out")
        if dst.exists() and not args.overwrite:
            raise SrEdgeError(f"{dst} already exists; pass --overwrite to replace it")
        img = read_image(src)
        if min(img.shape[:2]) < 1:
            raise SrEdgeError(f"{src}: image has no pixels")
        write_image(dst, upscale_image(upscaler, img))
        print(dst)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sr-edge", description="Super-resolution from training to edge deployment.")
    parser.add_argument("--version", action="version", version=f"sr-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("eval", help="PSNR/SSIM of models on datasets under the standard SR protocol")
    p.add_argument("model", nargs="+", help="bicubic, a model name[:tag], a checkpoint or a bundle folder")
    p.add_argument(
        "--dataset", "-d", action="extend", nargs="+", help="Set5, Set14, B100, ... or a folder (default: samples)"
    )
    p.add_argument("--scale", "-s", action="extend", nargs="+", type=_scale, help="2, 3 or 4 (default 2)")
    p.add_argument("--data-root", help="folder holding dataset folders (searched first)")
    p.add_argument("--rgb", action="store_true", help="also report PSNR over RGB")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("upscale", help="upscale image files")
    p.add_argument("model", help="bicubic, a model name[:tag], a checkpoint or a bundle folder")
    p.add_argument("inputs", nargs="+", help="image files (PNG, JPEG, BMP, TIFF; 8 or 16 bit; alpha kept)")
    p.add_argument("--out", "-o", required=True, help="output file, or a folder for several inputs")
    p.add_argument("--scale", "-s", type=_scale, default=2, help="2, 3 or 4 (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_upscale)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SrEdgeError as e:
        print(f"sr-edge: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sr-edge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sr-edge eval ... --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
