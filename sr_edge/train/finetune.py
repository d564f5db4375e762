"""Fine-tuning start (``--init``): a new run's model takes the fitting tensors of earlier weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint, training_stage
from ..errors import SrEdgeError
from ..models import list_models, model_card
from ..provenance import sha256_file


def init_from(model: nn.Module, path: str, model_name: str, scale: int) -> dict[str, Any]:
    """Fine-tuning start: copy every tensor of ``path`` whose name and shape fit.

    ``path`` is a checkpoint file, or a registered model name meaning its shipped weights
    for ``scale`` (``--init ecbsr-m4c16`` to adapt the shipped model to one's own images).
    """
    if not Path(path).exists() and path in list_models():
        card = model_card(path)
        if scale not in card.weights:
            raise SrEdgeError(f"--init {path}: no shipped weights for x{scale}")
        path = str(card.weights_file(scale))
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
