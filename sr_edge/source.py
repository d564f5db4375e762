"""One resolver for every model spec a user can name: ``bicubic``, a zoo name, a checkpoint
or a bundle folder, turned into one typed :class:`ModelSource`.

``eval``, ``upscale``, ``export``, ``train --init`` and the torch backend all resolve
through here, so a spec means the same thing to every verb and a wrong one gets the same
one-line error everywhere. Resolving reads only the file system (no torch): whether a zoo
name is registered is checked when its torch model is built (:func:`torch_model`), and a
zoo name on a machine without torch runs its shipped bundle (:func:`shipped_bundle`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .bundle import MANIFEST, MODEL_FILE, bundle_dir, check_not_training_run, is_bundle
from .data.io import IMAGE_SUFFIXES
from .errors import MissingDependencyError, SrEdgeError
from .paths import bundles_dir
from .types import check_scale

if TYPE_CHECKING:
    from .models import SRModel

BICUBIC = "bicubic"
SourceKind = Literal["bicubic", "zoo", "checkpoint", "bundle"]


@dataclass(frozen=True)
class ModelSource:
    """What a model spec names.

    ``kind``: ``bicubic``; ``zoo`` (a registered name, meaning its shipped weights;
    ``name`` holds it and ``tag`` an optional ``:x2``-style suffix); ``checkpoint`` (a
    ``.safetensors`` file at ``path``); ``bundle`` (an exported folder at ``path``).
    """

    kind: SourceKind
    spec: str
    name: str | None = None
    path: Path | None = None
    tag: str | None = None

    def check_tag(self, scale: int) -> None:
        """A ``name:x3`` spec must agree with the scale asked for."""
        if self.tag and self.tag != f"x{scale}":
            raise SrEdgeError(f"{self.name}: unknown weights tag {self.tag!r}; shipped weights are selected by --scale")


def _image_error(spec: str) -> SrEdgeError:
    return SrEdgeError(
        f"{spec}: an image file, not a model; the model argument comes first "
        "(a zoo name such as fsrcnn, a .safetensors checkpoint or a bundle folder)"
    )


def resolve_model(spec: str | os.PathLike[str]) -> ModelSource:
    """Classify ``spec`` (one-line :class:`SrEdgeError` for an image, a run folder, a folder
    that is no bundle, or something that is not a name or a path)."""
    if not isinstance(spec, (str, os.PathLike)):
        raise SrEdgeError(f"model spec must be a name or a path, got {type(spec).__name__}")
    text = os.fspath(spec)
    if not text:
        raise SrEdgeError("model spec is empty; name a zoo model, a checkpoint or a bundle folder")
    if text.lower() == BICUBIC:
        return ModelSource("bicubic", text)
    path = Path(text)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        raise _image_error(text)
    if path.is_dir() or path.name in (MANIFEST, MODEL_FILE):
        folder = bundle_dir(path)
        if is_bundle(folder):
            return ModelSource("bundle", text, path=folder)
        check_not_training_run(folder)
        if not folder.exists():
            raise SrEdgeError(f"{folder}: no such bundle folder")
        raise SrEdgeError(f"{folder}: not a bundle (no {MANIFEST}); create one with sr-edge export")
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise SrEdgeError(f"{path}: no such checkpoint file")
        return ModelSource("checkpoint", text, path=path)
    name, _, tag = text.partition(":")
    return ModelSource("zoo", text, name=name, tag=tag or None)


def torch_available() -> bool:
    """Whether the training side (torch) is installed here."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def require_torch(what: str) -> None:
    """One-line error naming the ``train`` extra when torch is absent."""
    if not torch_available():
        raise MissingDependencyError(what, "train", "torch")


def shipped_bundle(name: str, scale: int) -> Path | None:
    """The committed (or packaged) bundle of zoo model ``name`` at ``scale``, if there is one."""
    folder = bundles_dir() / name / f"x{check_scale(scale)}"
    return folder if is_bundle(folder) else None


def weights_path(source: ModelSource, scale: int) -> Path:
    """The checkpoint file a zoo or checkpoint source stands for (a zoo name: its shipped weights)."""
    if source.kind == "checkpoint" and source.path is not None:
        return source.path
    if source.kind != "zoo" or source.name is None:
        raise SrEdgeError(f"{source.spec}: a {source.kind}, not a zoo model or a checkpoint")
    require_torch(f"loading zoo model {source.name!r}")
    from .models import model_card

    source.check_tag(scale)
    card = model_card(source.name)  # one-line error for an unknown name
    if scale not in card.weights:
        have = ", ".join(f"x{s}" for s in sorted(card.weights)) or "none"
        raise SrEdgeError(f"{source.name}: no shipped weights for x{scale} (shipped: {have})")
    return card.weights_file(scale)


def torch_model(source: ModelSource, scale: int | None) -> tuple[SRModel, dict[str, Any]]:
    """(the model with its weights, a provenance record) for a zoo or checkpoint source.

    ``scale`` None takes a checkpoint's own scale, or a zoo model's only shipped one.
    """
    from .provenance import sha256_file

    if source.kind == "checkpoint" and source.path is not None:
        require_torch(f"running checkpoint {source.path}")
        from .models import model_card, model_from_checkpoint

        model, ckpt = model_from_checkpoint(source.path, scale)
        model_card(ckpt.model)  # a checkpoint of a model this sr-edge does not register
        record: dict[str, Any] = {
            "kind": "checkpoint",
            "model": ckpt.model,
            "scale": ckpt.scale,
            "overrides": ckpt.overrides,
            "checkpoint": str(source.path.resolve()),
            "checkpoint_sha256": sha256_file(source.path),
        }
        if "step" in ckpt.meta:
            record["step"] = ckpt.meta["step"]
        return model, record
    if source.kind != "zoo" or source.name is None:
        what = "bicubic has no network" if source.kind == "bicubic" else f"{source.spec} is an exported bundle"
        raise SrEdgeError(f"{what}; name a zoo model or a .safetensors checkpoint")
    require_torch(f"running zoo model {source.name!r} in PyTorch")
    from .models import create_model, model_card

    card = model_card(source.name)
    if scale is None:
        shipped = sorted(card.weights)
        if len(shipped) != 1:
            have = ", ".join(f"x{s}" for s in shipped) or "none"
            raise SrEdgeError(f"{source.name}: pass --scale (shipped weights: {have})")
        scale = shipped[0]
    source.check_tag(scale)
    model = create_model(source.name, scale, pretrained=True)
    record = {
        "kind": "shipped",
        "model": source.name,
        "scale": scale,
        "checkpoint": f"sr_edge/weights/{card.weights_file(scale).name}",
        "checkpoint_sha256": card.weights[scale],
    }
    return model, record
