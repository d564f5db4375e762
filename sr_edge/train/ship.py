"""Ship a trained run's weights inside the package, with a measured model card.

``python -m sr_edge.train.ship RUN_DIR [--checkpoint last|best] [--parents DIR...]`` copies the weights only
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint, save_checkpoint, training_stage
from ..data.datasets import resolve_dataset
from ..data.degrade import parse_degrade
from ..errors import DatasetNotFoundError, SrEdgeError
from ..evaluate import evaluate
from ..models import create_model, load_state, model_card, model_from_checkpoint, model_stats
from ..models.registry import WEIGHTS_DIR
from ..provenance import sha256_file, write_json
from ..resolve import torch_upscaler

CARD_DATASETS = ("Set5", "Set14", "B100", "samples")
# Degraded inputs measured for a model trained on degraded LR (``sr-edge eval --degrade`` forms)
CARD_DEGRADED = ("jpeg:75", "jpeg:50", "noise:5")
CARD_DEGRADED_DATASETS = ("Set5", "Set14")


def measure(
    model: Any, name: str, color_mode: str, datasets: Sequence[str] = CARD_DATASETS, degrade: str | None = None
) -> dict[str, dict[str, float]]:
    """PSNR/SSIM-Y of a model on every card dataset that is present (LR degraded by ``degrade``)."""
    degradation = parse_degrade(degrade) if degrade else None
    table: dict[str, dict[str, float]] = {}
    for ds_name in datasets:
        try:
            ds = resolve_dataset(None if ds_name == "samples" else ds_name)
        except DatasetNotFoundError:
            continue
        r = evaluate(torch_upscaler(model, name, color_mode), ds, degradation=degradation)
        table[ds_name] = {"psnr_y": round(r.psnr_y, 4), "ssim_y": round(r.ssim_y, 5)}
    return table


def _card_lineage(weights: Path, sha: str) -> list[dict[str, Any]] | None:
    """The lineage in the model card beside shipped ``weights``, if the card describes these bytes."""
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return None
    stages = card.get("lineage") if isinstance(card, dict) and card.get("sha256") == sha else None
    if not isinstance(stages, list) or not all(isinstance(st, dict) for st in stages):
        return None
    return stages


def lineage(meta: dict[str, Any], search: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """The chain of training runs behind a checkpoint, newest first.

    A run's ``init`` record names its parent by sha256; the parent's stages come from the
    model card beside a matching file among ``search`` (shipped weights: the card holds
    their whole lineage), from the record itself (runs since the record held it), or from a
    checkpoint among ``search`` whose bytes match. A parent found none of these ways ends
    the chain with ``found: false``.
    """
    by_sha: dict[str, Path] = {}
    carded: dict[str, list[dict[str, Any]]] = {}
    for place in search:
        for f in sorted(place.glob("*.safetensors")) if place.is_dir() else [place]:
            if f.is_file():
                sha = sha256_file(f)
                by_sha.setdefault(sha, f)
                stages = _card_lineage(f, sha)
                if stages:
                    carded.setdefault(sha, stages)
    chain = [training_stage(meta)]
    seen: set[str] = set()
    while True:
        init = chain[-1].pop("init", None)
        if not init:
            break
        if not isinstance(init, dict) or not init.get("sha256"):
            chain[-1]["from"] = {"path": str(init), "found": False}  # recorded before runs kept a sha256
            break
        sha = str(init["sha256"])
        chain[-1]["from"] = {"model": init.get("from"), "scale": init.get("scale"), "sha256": sha}
        if sha in seen:
            break
        seen.add(sha)
        if sha in carded:
            chain.extend(dict(st) for st in carded[sha])
            break
        if isinstance(init.get("parent"), dict):
            chain.append(dict(init["parent"]))
        elif sha in by_sha:
            chain.append(training_stage(load_checkpoint(by_sha[sha]).meta))
        else:
            chain[-1]["from"]["found"] = False
            break
    return chain


def ship(
    run_dir: Path,
    which: str = "last",
    dest: Path = WEIGHTS_DIR,
    search: Sequence[Path] = (),
    name: str | None = None,
) -> dict[str, Any]:
    """Ship a run's weights as ``name`` (default: the run's model; another registered name of
    the same architecture ships a variant, e.g. ``ecbsr-m4c16-real`` beside ``ecbsr-m4c16``)."""
    src = run_dir / f"{which}.safetensors"
    model, ckpt = model_from_checkpoint(src)
    name = name or ckpt.model
    card = model_card(name)
    if name != ckpt.model:  # the variant's own factory must take these tensors as they are
        if card.family != model_card(ckpt.model).family:
            raise SrEdgeError(f"cannot ship a {ckpt.model} run as {name}: another model family")
        load_state(create_model(name, ckpt.scale, **ckpt.overrides), model.state_dict(), str(src))
    stats = model_stats(model.deploy(), card.channels, ckpt.scale)
    target = dest / f"{name}_x{ckpt.scale}.safetensors"
    # Before the old file is replaced: it may be the parent this run was fine-tuned from
    # (or, for a variant, the shipped file named by the run's --init).
    init = ckpt.meta.get("init")
    parent = [Path(init["path"])] if isinstance(init, dict) and init.get("path") else []
    chain = lineage(ckpt.meta, [target, *parent, *search])
    keep: dict[str, Any] = {
        k: ckpt.meta[k]
        for k in ("train_config", "data", "step", "wall_seconds", "metrics", "init", "git", "device", "device_name")
        if k in ckpt.meta
    }
    save_checkpoint(target, name, ckpt.scale, model.state_dict(), meta=keep, overrides=ckpt.overrides)
    shipped = load_checkpoint(target)  # round trip: what users will load
    assert shipped.model == name
    info = {
        "model": name,
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
        "lineage": chain,
        "total_steps": sum(int(st.get("steps") or 0) for st in chain),
        "total_wall_hours": round(sum(float(st.get("wall_seconds") or 0.0) for st in chain) / 3600, 2),
        "steps": ckpt.meta.get("step"),
        "wall_hours": round(float(ckpt.meta.get("wall_seconds", 0.0)) / 3600, 2),
        "git": ckpt.meta.get("git", {}),
        "quality": measure(model, name, card.color_mode),
        **_degraded_quality(model, name, card.color_mode, ckpt.meta.get("train_config", {})),
        "sha256": sha256_file(target),
        "file": target.name,
    }
    write_json(target.with_suffix(".json"), info)
    return info


def _degraded_quality(model: Any, name: str, color_mode: str, train_config: dict[str, Any]) -> dict[str, Any]:
    """For weights trained on degraded LR: the degradation they were trained with and their
    quality on degraded inputs (``{form: {dataset: {psnr_y, ssim_y}}}``); nothing for bicubic training."""
    kind = train_config.get("degradation", "bicubic")
    if kind == "bicubic":
        return {}
    return {
        "degradation": {"name": kind, "settings": train_config.get("degradation_config")},
        "quality_degraded": {
            form: measure(model, name, color_mode, CARD_DEGRADED_DATASETS, degrade=form) for form in CARD_DEGRADED
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sr_edge.train.ship", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with last.safetensors)")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last")
    parser.add_argument(
        "--name",
        help="ship as this registered model (same architecture), e.g. ecbsr-m4c16-real; default: the run's model",
    )
    parser.add_argument(
        "--parents",
        nargs="*",
        type=Path,
        default=[],
        help="run folders or checkpoints to find earlier stages of a fine-tuned run in (matched by sha256)",
    )
    args = parser.parse_args(argv)
    for run in args.runs:
        info = ship(run, args.checkpoint, search=args.parents, name=args.name)
        q = ", ".join(f"{k} {v['psnr_y']:.2f}/{v['ssim_y']:.4f}" for k, v in info["quality"].items())
        print(json.dumps({"model": info["model"], "scale": info["scale"], "sha256": info["sha256"]}))
        print(f"  {q}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
