"""The ``sr-edge`` command line: parse, build a config, call the public API.

Every verb is a function ``cmd_<verb>(args) -> int``; user errors raise
:class:`~sr_edge.errors.SrEdgeError` and come out as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cliutil import format_table, scale_arg
from .errors import SrEdgeError, one_line
from .version import __version__

EXIT_USER_ERROR = 2


def cmd_eval(args: argparse.Namespace) -> int:
    from .data.datasets import resolve_datasets
    from .data.degrade import parse_degrade
    from .evaluate import evaluate
    from .resolve import create_upscaler

    # Every --degrade form is checked before any model is loaded or image read.
    degradations = [parse_degrade(spec) for spec in args.degrade] if args.degrade else [None]
    datasets = resolve_datasets(args.dataset, args.data_root)
    scales = args.scale or [2]
    results = []
    for spec in args.model:
        for scale in scales:
            upscaler = create_upscaler(spec, scale, args.backend, args.precision, args.device)
            for ds in datasets:
                for degradation in degradations:
                    results.append(
                        evaluate(upscaler, ds, rgb=args.rgb, progress=not args.json, degradation=degradation)
                    )
    if args.json:
        payload = [r.to_json() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return 0
    degraded = args.degrade is not None
    headers = (
        ["model", "dataset", "scale"]
        + (["input"] if degraded else [])
        + ["images", "PSNR-Y (dB)", "SSIM-Y"]
        + (["PSNR-RGB (dB)"] if args.rgb else [])
    )
    rows = [
        [r.model, r.dataset, f"x{r.scale}"]
        + ([r.degrade or "clean"] if degraded else [])
        + [str(len(r.images)), f"{r.psnr_y:.2f}", f"{r.ssim_y:.4f}"]
        + ([f"{r.psnr_rgb:.2f}"] if args.rgb and r.psnr_rgb is not None else [])
        for r in results
    ]
    print(format_table(headers, rows))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # An empty argument (--out '', an unset shell variable) names nothing; taken as a
        # path it would be the current folder. Refused for every option of every verb.
        if action.nargs not in (argparse.PARSER, argparse.REMAINDER) and "" in arg_strings:
            raise argparse.ArgumentError(action, "empty value; give one or leave the option out")
        return super()._get_values(action, arg_strings)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse, but an unknown option is reported by its verb, with the nearest option it has."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            verbs = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            parser = verbs.get(str(getattr(ns, "command", "")), self)
            options = [s for action in parser._actions for s in action.option_strings]
            unknown = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), None)
            near = difflib.get_close_matches(unknown, options, n=1, cutoff=0.8) if unknown else []
            hint = f"; did you mean {near[0]}?" if near else ""
            parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return ns


def cmd_upscale(args: argparse.Namespace) -> int:
    from .runtime import UpscaleRequest, run

    request = UpscaleRequest(
        model=args.model,
        inputs=tuple(Path(p) for p in args.inputs),
        out=Path(args.out),
        scale=args.scale,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        profile=args.profile,
        results=tuple(Path(r) for r in args.results) if args.results else None,
        tile=args.tile,
        overwrite=args.overwrite,
        recursive=args.recursive,
        codec=args.codec,
        crf=args.crf,
    )
    return run(request)


def _tile_arg(text: str) -> int | str:
    """argparse type of ``upscale --tile`` (one-line usage error for anything else)."""
    from .runtime import parse_tile

    try:
        return parse_tile(text)
    except SrEdgeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _model_options(pairs: Sequence[str] | None) -> tuple[tuple[str, object], ...]:
    import ast

    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SrEdgeError(f"--model-option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = ast.literal_eval(value)  # literals only: numbers, strings, booleans
        except (ValueError, SyntaxError):
            options[key] = value
    return tuple(sorted(options.items()))


def cmd_train(args: argparse.Namespace) -> int:
    from .train import PerceptualConfig, TrainConfig, train

    perceptual = None
    if args.gan or args.perceptual_weights:
        perceptual = PerceptualConfig(vgg_weights=args.perceptual_weights or "", discriminator=args.discriminator)
        from .train.gan import load_vgg19

        load_vgg19(args.perceptual_weights)  # fail now, before loading data, if the file is absent or bad
    config = TrainConfig(
        model=args.model,
        scale=args.scale,
        data=tuple(args.data),
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        lr_min=args.lr_min,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        loss=args.loss,
        augment=not args.no_augment,
        scale_augment=tuple(args.scale_augment),
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        init=args.init,
        skip_small=args.skip_small,
        channels_last=args.channels_last,
        degradation=args.degradation,
        data_root=args.data_root,
        model_options=_model_options(args.model_option),
        perceptual=perceptual,
    )
    from .models import model_card

    model_card(config.model)  # unknown names fail before any data is read
    result = train(config, resume=args.resume)
    if result.interrupted:
        print(
            f"sr-edge: interrupted at step {result.step}; continue with the same command plus --resume", file=sys.stderr
        )
        print(result.last)
        return 130
    val = f", held-out PSNR-Y {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
    print(
        f"trained {config.model} x{config.scale} to step {result.step} in {result.seconds:.0f} s{val}", file=sys.stderr
    )
    print(result.last)
    return 0


_CARD_SETS = ("Set5", "Set14", "B100")
_MODELS_HEADERS = ["model", "family", "colour", "scale", "params", "MACs/out px", "GMACs 720p out", "shipped"]


def _models_output(args: argparse.Namespace, rows: list[list[str]], payload: list[dict[str, Any]]) -> int:
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(_MODELS_HEADERS + [f"{d} PSNR/SSIM" for d in _CARD_SETS], rows))
    return 0


def _quality_cells(quality: dict[str, Any]) -> list[str]:
    return [f"{quality[d]['psnr_y']:.2f} / {quality[d]['ssim_y']:.4f}" if d in quality else "-" for d in _CARD_SETS]


def _shipped_models(args: argparse.Namespace) -> int:
    """``sr-edge models`` on an install without torch: the shipped weights' cards only."""
    from .cards import shipped_cards

    cards = [c for c in shipped_cards() if (not args.names or c["model"] in args.names)]
    cards = [c for c in cards if not args.scale or c["scale"] in args.scale]
    if args.names and not cards:
        names = ", ".join(args.names)
        raise SrEdgeError(f"no shipped weights for {names}; without torch only shipped models are listed")
    rows, payload = [], []
    for c in cards:
        quality = c.get("quality", {})
        rows.append(
            [c["model"], c.get("family", "-"), c.get("color_mode", "-"), f"x{c['scale']}", f"{c['params']:,}",
             f"{c['macs_per_output_pixel']:,.0f}", f"{c['gmacs_1280x720_output']:.2f}", "yes", *_quality_cells(quality)]
        )  # fmt: skip
        payload.append(
            {"model": c["model"], "family": c.get("family"), "color_mode": c.get("color_mode"), "scale": c["scale"],
             "params": c["params"], "macs_per_output_pixel": c["macs_per_output_pixel"], "shipped": True,
             "quality": quality}
        )  # fmt: skip
    if not args.json:
        print("(torch is not installed: the shipped models only; pip install 'sr-edge[train]' lists the whole zoo)")
    return _models_output(args, rows, payload)


def cmd_models(args: argparse.Namespace) -> int:
    from .source import torch_available

    if not torch_available():
        return _shipped_models(args)
    from .models import create_model, list_models, model_card, model_stats, shipped_card

    names = args.names or list_models()
    rows = []
    payload = []
    for name in names:
        card = model_card(name)
        for scale in args.scale or [2, 3, 4]:
            stats = model_stats(create_model(name, scale).deploy(), card.channels, scale)
            shipped = shipped_card(name, scale)
            quality = (shipped or {}).get("quality", {})
            cells = _quality_cells(quality)
            rows.append(
                [name, card.family, card.color_mode, f"x{scale}", f"{stats.params:,}",
                 f"{stats.macs_per_output_pixel:,.0f}", f"{stats.gmacs(1280, 720):.2f}",
                 "yes" if shipped else "-", *cells]
            )  # fmt: skip
            payload.append(
                {"model": name, "family": card.family, "color_mode": card.color_mode, "scale": scale,
                 "params": stats.params, "macs_per_output_pixel": stats.macs_per_output_pixel,
                 "shipped": shipped is not None, "quality": quality}
            )  # fmt: skip
    return _models_output(args, rows, payload)


def _add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """How an exported bundle runs (eval and upscale)."""
    p.add_argument("--backend", "-b", help="runtime for a bundle: ort (default), openvino, tensorrt or torch")
    p.add_argument("--precision", help="fp32, fp16, bf16 or int8 (default: the bundle's own)")
    p.add_argument("--device", help="cpu (default), cuda[:N], gpu, npu or auto, as the backend allows")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sr-edge", description="Super-resolution from training to edge deployment.")
    parser.add_argument("--version", action="version", version=f"sr-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("eval", help="PSNR/SSIM of models on datasets under the standard SR protocol")
    p.add_argument("model", nargs="+", help="bicubic, a model name[:tag], a checkpoint or a bundle folder")
    p.add_argument(
        "--dataset", "-d", action="extend", nargs="+", help="Set5, Set14, B100, ... or a folder (default: samples)"
    )
    p.add_argument("--scale", "-s", action="extend", nargs="+", type=scale_arg, help="2, 3 or 4 (default 2)")
    p.add_argument("--data-root", help="folder holding dataset folders (searched first)")
    p.add_argument("--rgb", action="store_true", help="also report PSNR over RGB")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--degrade",
        action="extend",
        nargs="+",
        metavar="FORM",
        help="degrade the protocol's LR before upscaling, one result per FORM: jpeg:75, noise:5 (Gaussian, "
        "grey levels), noise-grey:5, poisson:1000 (photons at white), blur:1.2 (LR pixels), joined with + "
        "(jpeg:75+noise:5), none (clean), or a .toml file of [[step]] tables; seeded per image",
    )
    _add_backend_arguments(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "upscale",
        help="upscale images, a folder of them or a video",
        description="Upscale image files, a folder of images (layout kept) or a video (audio kept). "
        "Large images run in tiles that overlap by the model's receptive field: no seams. "
        "For camera photos, phone JPEGs, video frames or noisy shots use ecbsr-m4c16-real (x2, x4; trained on "
        "JPEG, noise and blur); the other models assume a clean, bicubic-downscaled input.",
    )
    p.add_argument("model", help="bicubic, a model name[:tag], a checkpoint or a bundle folder")
    p.add_argument(
        "inputs", nargs="+", help="image files (PNG, JPEG, BMP, TIFF; 8 or 16 bit; alpha kept), a folder, or a video"
    )
    p.add_argument("--out", "-o", required=True, help="output file, or a folder (several images, a folder, a video)")
    p.add_argument("--scale", "-s", type=scale_arg, help="2, 3 or 4 (default: a bundle's own, else 2)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: skip / refuse)")
    p.add_argument("--recursive", "-r", action="store_true", help="with a folder: its subfolders too")
    p.add_argument(
        "--tile",
        type=_tile_arg,
        default="auto",
        help="tile side in LR pixels, 0 for the whole image, or auto (default: from the device's memory budget)",
    )
    p.add_argument(
        "--backend",
        "-b",
        default="auto",
        help="auto (default: fastest here, from bench results or the device profile), ort, openvino, tensorrt or torch",
    )
    p.add_argument("--precision", help="fp32, fp16, bf16 or int8 (default: auto's choice, else the bundle's own)")
    p.add_argument("--device", help="cpu, cuda[:N], gpu, npu or auto, as the backend allows (default: the profile's)")
    p.add_argument("--profile", help="device profile for auto choices (sr-edge devices; default: detected)")
    p.add_argument("--results", nargs="+", metavar="JSON", help="sr-edge bench results for --backend auto to read")
    p.add_argument("--codec", help="video encoder (default: libx264 where the container takes it)")
    p.add_argument("--crf", type=int, help="video quality, constant rate factor (default 18; lower is better)")
    p.set_defaults(func=cmd_upscale)

    # Defaults, choices and value types of the training options come from TrainConfig and
    # PerceptualConfig (each is written once, there); sr_edge.train.config imports no torch.
    from .train.config import DEFAULT_DATA, PerceptualConfig, TrainConfig, add_field_option

    p = sub.add_parser("train", help="train a zoo model on folders of HR images")

    def option(flag: str, help: str | None = None, **kw: Any) -> None:
        add_field_option(p, TrainConfig, flag, help, **kw)

    p.add_argument("model", help="registered model name (see sr-edge models)")
    p.add_argument("--scale", "-s", type=scale_arg, required=True)
    p.add_argument(
        "--data",
        nargs="+",
        default=list(DEFAULT_DATA),
        help=f"HR image folders or names (default: {' '.join(DEFAULT_DATA)})",
    )
    p.add_argument("--data-root", help="folder holding training folders (searched first)")
    p.add_argument("--out", "-o", required=True, help="run folder (checkpoints, log.jsonl)")
    option("--steps")
    option("--batch-size")
    option("--patch-size", help="LR patch side (HR patch = this x scale)")
    option("--lr")
    option("--lr-min")
    option("--schedule")
    option("--warmup-steps")
    option("--loss")
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations")
    option("--scale-augment", help="HR downscale factors, e.g. 1 0.9 0.8 0.7 0.6")
    option("--val-fraction", help="share of images held out for validation")
    option("--val-every")
    option("--ckpt-every")
    option("--log-every")
    option("--seed")
    option("--device", help="auto, cpu, cuda or cuda:N")
    option("--threads", help="torch CPU threads")
    option("--init", help="checkpoint to fine-tune from (tensors whose name and shape fit are copied)")
    option("--skip-small", help="skip images smaller than the HR patch instead of failing")
    option(
        "--channels-last",
        help="train in the channels_last memory format (faster on a CPU for some models, e.g. fsrcnn; see README)",
    )
    option(
        "--degradation",
        help="how LR patches are made: bicubic (the protocol's clean LR), realistic (random blur, resampler, "
        "noise and JPEG, for camera photos; see docs/real-photos.md) or a degradation .toml file",
    )
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="architecture option, e.g. features=32")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--gan", action="store_true", help="perceptual + adversarial fine-tuning (RGB models)")
    p.add_argument("--perceptual-weights", help="local torchvision VGG19 state dict for the perceptual loss")
    add_field_option(p, PerceptualConfig, "--discriminator")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="the model zoo: params, MACs, shipped weights and their measured quality")
    p.add_argument("names", nargs="*", help="models to list (default: all)")
    p.add_argument("--scale", "-s", action="extend", nargs="+", type=scale_arg, help="scales (default 2 3 4)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    for module_name in _VERB_MODULES:
        _add_verbs(module_name, sub)
    return parser


# Stage modules that add their own verbs: each defines ``add_commands(subparsers)`` whose
# parsers set ``func``. Listed by name, imported lazily (their heavy imports stay inside
# the command functions).
_VERB_MODULES = (
    "sr_edge.export.cli",
    "sr_edge.compress.prune_cli",
    "sr_edge.compress.quant_cli",
    "sr_edge.backends.cli",
    "sr_edge.bench.cli",
    "sr_edge.select_cli",
    "sr_edge.recipe.cli",
)


def _add_verbs(module_name: str, sub: argparse._SubParsersAction[_Parser]) -> None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            return  # stage not built yet
        raise
    module.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command inside the error boundary (:func:`sr_edge.boundary.run_cli`):
    user errors and expected OS failures are one line and exit 2, Ctrl-C 130, SIGTERM 143."""
    from .boundary import run_cli

    def verb() -> int:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)

    return run_cli(verb)


if __name__ == "__main__":
    sys.exit(main())
