"""Checkpoints: one safetensors file with the model (and, for resuming, optimizer) tensors,
its metadata in the safetensors header, and a JSON twin beside it for people.

Metadata: model name, scale, configuration overrides, training config, data, step,
metrics, versions and git commit. A file without sr-edge metadata, a truncated file, or
weights for another scale give one-line errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import SrEdgeError, one_line
from .provenance import atomic_path, git_info, library_versions, now_utc

FORMAT = "sr-edge-checkpoint"
FORMAT_VERSION = 1
_OPTIM_PREFIX = "optim."
_MODULE_PREFIX = "module."


@dataclass
class Checkpoint:
    """A loaded checkpoint: model identity, weights, metadata, optional training state.

    ``optimizers`` maps a name (``"model"``, ``"disc"``) to an optimizer state dict and
    ``modules`` maps a name (``"disc"``) to the state dict of an auxiliary module; both are
    only loaded when asked for (resuming), and are absent from shipped weights.
    """

    path: Path
    model: str
    scale: int
    overrides: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def _flatten_optimizer(name: str, state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{_OPTIM_PREFIX}{name}.{idx}.{key}"] = t.detach().contiguous().cpu().clone()
    return tensors, state["param_groups"]


def save_checkpoint(
    path: str | os.PathLike[str],
    model_name: str,
    scale: int,
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    optimizers: dict[str, dict[str, Any]] | None = None,
    modules: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` atomically."""
    from safetensors.torch import save_file

    target = Path(path)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "scale": scale,
        "overrides": overrides or {},
        "saved": now_utc(),
        "git": git_info(),
        "versions": library_versions(),
        **(meta or {}),
    }
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in state_dict.items()}
    groups: dict[str, list[Any]] = {}
    for name, opt_state in (optimizers or {}).items():
        opt_tensors, groups[name] = _flatten_optimizer(name, opt_state)
        tensors.update(opt_tensors)
    for name, module_state in (modules or {}).items():
        tensors.update({f"{_MODULE_PREFIX}{name}.{k}": v.detach().contiguous().cpu() for k, v in module_state.items()})
    if groups:
        header["optimizer_param_groups"] = groups
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={"sr_edge": json.dumps(header)})
    with atomic_path(target.with_suffix(".json")) as tmp:
        public = {k: v for k, v in header.items() if k != "optimizer_param_groups"}
        tmp.write_text(json.dumps(public, indent=2) + "\n")
    return target


def load_checkpoint(path: str | os.PathLike[str], with_training_state: bool = False) -> Checkpoint:
    """Read an sr-edge checkpoint; one-line errors for missing, corrupt or foreign files."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise SrEdgeError(f"{p}: no such checkpoint file")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("sr_edge")
            if raw is None:
                raise SrEdgeError(f"{p}: not an sr-edge checkpoint (no sr-edge metadata in the safetensors header)")
            header = json.loads(raw)
            keys = list(f.keys())
            model = {k[len("model.") :]: f.get_tensor(k) for k in keys if k.startswith("model.")}
            extra = {k: f.get_tensor(k) for k in keys if not k.startswith("model.")} if with_training_state else {}
    except SafetensorError as e:
        raise SrEdgeError(f"{p}: corrupt or not a safetensors checkpoint ({one_line(str(e))})") from None
    except (json.JSONDecodeError, OSError) as e:
        raise SrEdgeError(f"{p}: unreadable checkpoint ({one_line(str(e))})") from None
    if header.get("format") != FORMAT:
        raise SrEdgeError(f"{p}: not an sr-edge checkpoint (format {header.get('format')!r})")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise SrEdgeError(
            f"{p}: checkpoint format {header['format_version']} is newer than this sr-edge reads "
            f"({FORMAT_VERSION}); upgrade sr-edge"
        )
    optimizers: dict[str, dict[str, Any]] = {}
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in extra.items():
        if key.startswith(_OPTIM_PREFIX):
            name, idx, field_name = key[len(_OPTIM_PREFIX) :].split(".", 2)
            opt = optimizers.setdefault(name, {"state": {}, "param_groups": []})
            opt["state"].setdefault(int(idx), {})[field_name] = tensor
        elif key.startswith(_MODULE_PREFIX):
            name, sub = key[len(_MODULE_PREFIX) :].split(".", 1)
            modules.setdefault(name, {})[sub] = tensor
    for name, groups in header.get("optimizer_param_groups", {}).items():
        optimizers.setdefault(name, {"state": {}, "param_groups": []})["param_groups"] = groups
    return Checkpoint(
        path=p,
        model=str(header["model"]),
        scale=int(header["scale"]),
        overrides=dict(header.get("overrides", {})),
        state_dict=model,
        meta=header,
        optimizers=optimizers,
        modules=modules,
    )


def training_stage(meta: dict[str, Any]) -> dict[str, Any]:
    """One training run as its checkpoint metadata tells it: where it started (``init``,
    which holds the parent's own stage for runs that recorded it), steps, time, device."""
    cfg = meta.get("train_config") or {}
    return {
        "model": cfg.get("model"),
        "scale": cfg.get("scale"),
        "steps": meta.get("step"),
        "wall_seconds": meta.get("wall_seconds"),
        "device": meta.get("device"),
        "device_name": meta.get("device_name"),
        "batch_size": cfg.get("batch_size"),
        "patch_size": cfg.get("patch_size"),
        "lr": cfg.get("lr"),
        "init": meta.get("init") or cfg.get("init"),
    }
