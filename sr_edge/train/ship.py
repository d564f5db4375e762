"""Ship a trained run's weights inside the package, with a measured model card.

``python -m sr_edge.train.ship RUN_DIR [--checkpoint last|best]`` copies the weights only
(no optimizer state) to ``sr_edge/weights/<model>_x<scale>.safetensors``, measures PSNR/SSIM
on Set5, Set14 and B100 (and the embedded samples) with the protocol, and writes the card
``<model>_x<scale>.json`` beside it: data, steps, wall time, training config, params, MACs,
the quality table and the file's sha256. The sha256 must then be recorded in the model
family's ``weights={...}`` registration: the loader refuses any other bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..data.datasets import resolve_dataset
from ..errors import SrEdgeError
from ..evaluate import evaluate
from ..models import model_card, model_stats
from ..models.registry import WEIGHTS_DIR
from ..provenance import sha256_file, write_json
from ..resolve import torch_upscaler

CARD_DATASETS = ("Set5", "Set14", "B100", "samples")


def measure(model: Any, name: str, color_mode: str) -> dict[str, dict[str, float]]:
    """PSNR/SSIM-Y of a model on every card dataset that is present."""
    table: dict[str, dict[str, float]] = {}
    for ds_name in CARD_DATASETS:
        try:
            ds = resolve_dataset(None if ds_name == "samples" else ds_name)
        except SrEdgeError:
            continue
        r = evaluate(torch_upscaler(model, name, color_mode), ds)
        table[ds_name] = {"psnr_y": round(r.psnr_y, 4), "ssim_y": round(r.ssim_y, 5)}
    return table


def ship(run_dir: Path, which: str = "last", dest: Path = WEIGHTS_DIR) -> dict[str, Any]:
    src = run_dir / f"{which}.safetensors"
    model, ckpt = model_from_checkpoint(src)
    card = model_card(ckpt.model)
    stats = model_stats(model.deploy(), card.channels, ckpt.scale)
    target = dest / f"{ckpt.model}_x{ckpt.scale}.safetensors"
    keep = {
        k: ckpt.meta[k]
        for k in ("train_config", "data", "step", "wall_seconds", "metrics", "init", "git")
        if k in ckpt.meta
    }
    save_checkpoint(target, ckpt.model, ckpt.scale, model.state_dict(), meta=keep, overrides=ckpt.overrides)
    shipped = load_checkpoint(target)  # round trip: what users will load
    assert shipped.model == ckpt.model
    info = {
        "model": ckpt.model,
        "family": card.family,
        "scale": ckpt.scale,
        "color_mode": card.color_mode,
        "paper": card.paper,
        "params": stats.params,
        "macs_per_output_pixel": round(stats.macs_per_output_pixel, 1),
        "gmacs_1280x720_output": round(stats.gmacs(1280, 720), 3),
        "train_data": ckpt.meta.get("data", {}),
        "train_config": ckpt.meta.get("train_config", {}),
        "init": ckpt.meta.get("init"),
        "steps": ckpt.meta.get("step"),
        "wall_hours": round(float(ckpt.meta.get("wall_seconds", 0.0)) / 3600, 2),
        "git": ckpt.meta.get("git", {}),
        "quality": measure(model, ckpt.model, card.color_mode),
        "sha256": sha256_file(target),
        "file": target.name,
    }
    write_json(target.with_suffix(".json"), info)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sr_edge.train.ship", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with last.safetensors)")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last")
    args = parser.parse_args(argv)
    for run in args.runs:
        info = ship(run, args.checkpoint)
        q = ", ".join(f"{k} {v['psnr_y']:.2f}/{v['ssim_y']:.4f}" for k, v in info["quality"].items())
        print(json.dumps({"model": info["model"], "scale": info["scale"], "sha256": info["sha256"]}))
        print(f"  {q}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
