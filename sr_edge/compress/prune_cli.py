"""The ``sr-edge prune`` verb: structured channel pruning, then fine-tuning (imports no torch
until it runs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_prune(args: argparse.Namespace) -> int:
    from ..cliutil import format_table
    from .prune_config import PruneConfig

    config = PruneConfig(
        source=args.source,
        scale=args.scale,
        out=args.out,
        ratio=args.ratio,
        target_macs=args.target_macs,
        importance=args.importance,
        round_to=args.round_to,
        profile=args.profile,
        distill=args.distill,
        distill_weight=args.distill_weight,
        calibration_batches=args.calibration_batches,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        lr_min=args.lr_min,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        loss=args.loss,
        data=tuple(args.data),
        data_root=args.data_root,
        skip_small=args.skip_small,
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        channels_last=args.channels_last,
        eval_datasets=tuple(args.eval_datasets),
    )
    from .prune import prune  # torch: only once the options are known to be good

    result = prune(config, resume=args.resume)
    if result.interrupted:
        print(
            f"sr-edge: interrupted at step {result.step}; continue with the same command plus --resume", file=sys.stderr
        )
        print(result.checkpoint)
        return 130
    r = result.record
    plan = r["plan"]
    psnr = r["psnr_y"]
    rows = [
        ["params", f"{r['params']['before']:,}", f"{r['params']['after']:,}", ""],
        [
            "MACs / output px",
            f"{plan['macs_before']:,.0f}",
            f"{plan['macs_after']:,.0f}",
            f"-{100 * plan['removed']:.1f}%",
        ],
    ]
    for ds, parent in psnr["parent"].items():
        after = psnr.get("finetuned", {}).get(ds, psnr["pruned"][ds])
        change = f"{after - parent:+.2f} (pruned, not fine-tuned: {psnr['pruned'][ds]:.2f})"
        rows.append([f"{ds} PSNR-Y (dB)", f"{parent:.2f}", f"{after:.2f}", change])
    print(format_table(["", "parent", "pruned", "change"], rows), file=sys.stderr)
    widths = ", ".join(f"{k} {a}->{b}" for k, (a, b) in plan["widths"].items() if a != b)
    print(f"channels: {widths} (multiples of {plan['round_to']}: {r['round_to_reason']})", file=sys.stderr)
    print(result.checkpoint)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``prune`` on the ``sr-edge`` subparsers."""
    from ..cliutil import scale_arg
    from ..train.config import add_field_option
    from .prune_config import PruneConfig

    p = sub.add_parser(
        "prune",
        help="structured channel pruning (torch-pruning), then fine-tuning, optionally distilled from the parent",
        description=(
            "Remove whole channels from a model's deployment form until --ratio of its MACs per output pixel are "
            "gone (or at most --target-macs remain), with channel counts in multiples of --round-to, then "
            "fine-tune it with the trainer. RUN_DIR gets pruned.safetensors (before fine-tuning), last/best "
            "checkpoints, log.jsonl and prune.json (the record). Ctrl-C stops cleanly; --resume continues exactly."
        ),
    )

    def option(flag: str, help: str | None = None, **kw: Any) -> None:
        add_field_option(p, PruneConfig, flag, help, **kw)

    p.add_argument("source", metavar="MODEL_OR_CKPT", help="zoo model name (its shipped weights) or a checkpoint")
    p.add_argument("--scale", "-s", type=scale_arg, required=True, help="2, 3 or 4")
    p.add_argument("--out", "-o", required=True, metavar="RUN_DIR", help="run folder")
    option("--ratio", help="share of the MACs per output pixel to remove, in (0, 1); at least this much goes")
    option("--target-macs", help="MACs per output pixel to stay at or under (instead of --ratio)")
    option("--importance", help="which channels go within a layer: root filter L1, group L2 norm, or Taylor")
    option("--round-to", help="channel counts in multiples of this (default: from the device profile)")
    option("--profile", help="device profile for the --round-to default (default: the detected machine)")
    option("--distill", help="fine-tune towards the unpruned parent's output too")
    option("--distill-weight", help="share of the loss on the parent's output with --distill")
    option("--calibration-batches", help="training batches that rank the layers (and give Taylor its gradients)")
    option("--steps", help="fine-tuning steps (0: prune only)")
    option("--batch-size")
    option("--patch-size", help="LR patch side")
    option("--lr")
    option("--lr-min")
    option("--schedule")
    option("--warmup-steps")
    option("--loss")
    option("--data", help="HR training folders or names")
    option("--data-root", help="folder holding training and eval folders (searched first)")
    option("--skip-small", help="skip training images smaller than the HR patch instead of failing")
    option("--val-fraction", help="share of training images held out for validation")
    option("--val-every")
    option("--ckpt-every")
    option("--log-every")
    option("--seed")
    option("--device", help="torch device for fine-tuning: auto, cpu, cuda or cuda:N")
    option("--threads", help="torch CPU threads")
    option("--channels-last", help="fine-tune in the channels_last memory format")
    option("--eval-datasets", nargs="*", help="PSNR before and after on these (samples where absent; none: skip)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR exactly where it stopped")
    p.set_defaults(func=cmd_prune)
