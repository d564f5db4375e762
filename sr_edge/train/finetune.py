"""Fine-tuning start (``--init``): a new run's model takes the fitting tensors of earlier weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint, training_stage
from ..errors import SrEdgeError
from ..models import list_models, model_card
from ..models.registry import build_architecture
from ..provenance import sha256_file
from ..source import resolve_model, weights_path


def init_from(model: nn.Module, path: str, model_name: str, scale: int) -> dict[str, Any]:
    """Fine-tuning start: copy every tensor of ``path`` whose name and shape fit.

    ``path`` is a checkpoint file, or a registered model name meaning its shipped weights
    for ``scale`` (``--init ecbsr-m4c16`` to adapt the shipped model to one's own images).
    """
    source = resolve_model(path)
    if source.kind not in ("zoo", "checkpoint"):
        raise SrEdgeError(f"--init {path}: a {source.kind}, not weights; name a zoo model or a .safetensors checkpoint")
    if source.kind == "zoo" and source.name is not None and source.name not in list_models():
        raise SrEdgeError(f"--init {path}: no such checkpoint file or zoo model")
    try:
        path = str(weights_path(source, scale))
    except SrEdgeError as e:
        raise SrEdgeError(f"--init {e}") from None
    ckpt = load_checkpoint(path)
    if model_card(ckpt.model).family != model_card(model_name).family:
        raise SrEdgeError(f"{path}: holds a {ckpt.model} model; cannot initialise a {model_name} from it")
    own = model.state_dict()
    fitting = {k: v for k, v in ckpt.state_dict.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise SrEdgeError(f"{path}: no tensor fits {model_name} (another configuration?)")
    own.update(fitting)
    model.load_state_dict(own)
    return {
        "from": ckpt.model,
        "scale": ckpt.scale,
        "sha256": sha256_file(Path(path)),
        "copied": len(fitting),
        "kept_initial": len(own) - len(fitting),
        "path": path,
        "parent": training_stage(ckpt.meta),  # so a card can list the whole chain of fine-tunes
    }


def init_architecture(
    init: str, model_name: str, scale: int, options: dict[str, Any]
) -> tuple[Callable[[], nn.Module], dict[str, Any]] | None:
    """(model builder, what checkpoints record) when the ``--init`` checkpoint records its own
    architecture (a pruned model): the run trains that architecture, not the registered one.

    None for any other ``--init`` (the registered model is built as usual)."""
    source = resolve_model(init)
    if source.kind != "checkpoint" or source.path is None:
        return None
    ckpt = load_checkpoint(source.path)
    record = ckpt.meta.get("architecture")
    if record is None:
        return None
    if model_card(ckpt.model).family != model_card(model_name).family:
        raise SrEdgeError(f"{source.path}: holds a {ckpt.model} model; cannot initialise a {model_name} from it")
    if ckpt.scale != scale:
        raise SrEdgeError(f"{source.path}: a pruned x{ckpt.scale} model fine-tunes at x{ckpt.scale}, not x{scale}")
    if options:
        raise SrEdgeError(f"{source.path}: a pruned model keeps its recorded architecture; drop --model-option")
    name, path = ckpt.model, str(source.path)
    meta = {"architecture": record, **({"pruning": ckpt.meta["pruning"]} if "pruning" in ckpt.meta else {})}
    return (lambda: build_architecture(name, scale, record, path)), meta
