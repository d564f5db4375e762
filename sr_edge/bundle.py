"""The bundle format: what ``sr-edge export`` writes and every backend reads.

A bundle is a folder::

    export/espcn/x2/
        model.onnx      the graph: input ``lr`` N x C x H x W float32 in [0, 1],
                        output ``sr`` N x C x sH x sW; batch, height and width dynamic
        manifest.json   what the graph is and where it came from (see :class:`Bundle`)

``manifest.json`` records the format name and version, the model (name, family, scale,
colour mode, channels), the input/output layout, dtype and value range, the opset and
precision, the sha256 of every file, the parent checkpoint and its sha256, the export
(sr-edge version, git commit, exporter, time) and the PSNR/SSIM measured on the exported
graph. The same facts sit in the ONNX ``metadata_props`` (keys prefixed ``sr_edge.``) so
a lone ``model.onnx`` still says what it is.

Reading a bundle (:func:`read_bundle`) checks the format name and version and the sha256
of every file; each failure is one line naming what to do. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import SrEdgeError, one_line
from .provenance import sha256_file
from .types import ColorMode

FORMAT = "sr-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
METADATA_PREFIX = "sr_edge."

BundlePrecision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the manifest records it."""

    name: str
    layout: str
    dtype: str
    value_range: tuple[float, float]
    shape: tuple[int | str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        lo, hi = d["range"]
        return cls(str(d["name"]), str(d["layout"]), str(d["dtype"]), (float(lo), float(hi)), tuple(d["shape"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layout": self.layout,
            "dtype": self.dtype,
            "range": list(self.value_range),
            "shape": list(self.shape),
        }


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk, its manifest parsed and its files verified.

    ``manifest`` keeps the whole JSON document (source, export and metrics records) for
    tools that want more than the typed fields.
    """

    path: Path
    model: str
    family: str
    scale: int
    color_mode: ColorMode
    channels: int
    opset: int
    precision: BundlePrecision
    input: TensorSpec
    output: TensorSpec
    manifest: Mapping[str, Any]

    @property
    def onnx_path(self) -> Path:
        """The graph file."""
        return self.path / MODEL_FILE

    @property
    def onnx_sha256(self) -> str:
        """sha256 of ``model.onnx`` as the manifest records it (verified on reading)."""
        return str(self.manifest["files"][MODEL_FILE]["sha256"])

    @property
    def source(self) -> Mapping[str, Any]:
        """Where the weights came from: ``kind`` (shipped, checkpoint, module), model, checkpoint, sha256."""
        return dict(self.manifest.get("source", {}))

    @property
    def metrics(self) -> Mapping[str, Any] | None:
        """PSNR/SSIM measured on the exported graph at export time (``None`` if skipped)."""
        m = self.manifest.get("metrics")
        return dict(m) if m else None

    @property
    def name(self) -> str:
        """A short display name: model, scale and precision."""
        return f"{self.model}-x{self.scale}-{self.precision}"


def bundle_dir(path: str | os.PathLike[str]) -> Path:
    """The bundle folder for a folder, its ``manifest.json`` or its ``model.onnx``."""
    p = Path(path)
    if p.name in (MANIFEST, MODEL_FILE) and p.is_file():
        return p.parent
    return p


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a bundle folder (or a file inside one)."""
    return (bundle_dir(path) / MANIFEST).is_file()


def _require(doc: Mapping[str, Any], key: str, where: Path) -> Any:
    if key not in doc:
        raise SrEdgeError(f"{where}: manifest lacks {key!r}; the bundle is incomplete, re-export it")
    return doc[key]


RUN_CHECKPOINTS = ("best.safetensors", "last.safetensors")


def check_not_training_run(path: str | os.PathLike[str]) -> None:
    """One-line error where a training run folder is given in place of a model or bundle."""
    folder = Path(path)
    if not folder.is_dir() or (folder / MANIFEST).is_file():
        return
    for name in RUN_CHECKPOINTS:
        if (folder / name).is_file():
            ckpt = folder / name
            raise SrEdgeError(
                f"{folder}: a training run folder, not a model; use its checkpoint {ckpt} "
                f"(sr-edge export {ckpt} makes a bundle of it)"
            )


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw manifest of a bundle (format name and version checked, files not verified)."""
    folder = bundle_dir(path)
    manifest_path = folder / MANIFEST
    if not folder.exists():
        raise SrEdgeError(f"{folder}: no such bundle folder")
    if not manifest_path.is_file():
        check_not_training_run(folder)
        raise SrEdgeError(f"{folder}: not a bundle (no {MANIFEST}); create one with sr-edge export")
    try:
        doc = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SrEdgeError(f"{manifest_path}: unreadable manifest ({one_line(str(e))})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SrEdgeError(f"{manifest_path}: not an sr-edge bundle manifest (format {found!r})")
    try:
        version = int(doc.get("format_version", 0))
    except (TypeError, ValueError):
        raise SrEdgeError(f"{manifest_path}: bad format_version {doc.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise SrEdgeError(
            f"{folder}: bundle format {version} is newer than this sr-edge reads ({FORMAT_VERSION}); "
            "upgrade sr-edge or re-export the bundle with this version"
        )
    if version < 1:
        raise SrEdgeError(f"{manifest_path}: bad format_version {version}")
    return doc


def verify_files(folder: Path, files: Mapping[str, Any]) -> None:
    """Check that every file the manifest lists exists with the recorded sha256."""
    if MODEL_FILE not in files:
        raise SrEdgeError(f"{folder}: manifest lists no {MODEL_FILE}; the bundle is incomplete, re-export it")
    for name, entry in files.items():
        f = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise SrEdgeError(f"{folder}: manifest lists a file outside the bundle ({name}); refusing it")
        if not f.is_file():
            raise SrEdgeError(f"{f}: missing; the bundle is incomplete, copy the whole folder or re-export it")
        digest = sha256_file(f)
        want = str(entry.get("sha256", "")) if isinstance(entry, Mapping) else ""
        if digest != want:
            raise SrEdgeError(
                f"{f}: sha256 {digest[:12]}... does not match the manifest ({want[:12]}...); "
                "the bundle was modified or damaged, re-export it"
            )


def read_bundle(path: str | os.PathLike[str], verify: bool = True) -> Bundle:
    """Open a bundle folder (or its manifest / model file); ``verify`` checks every sha256."""
    folder = bundle_dir(path)
    doc = read_manifest(folder)
    files = _require(doc, "files", folder)
    if not isinstance(files, Mapping):
        raise SrEdgeError(f"{folder}: manifest 'files' must be a mapping")
    if verify:
        verify_files(folder, files)
    elif not (folder / MODEL_FILE).is_file():
        raise SrEdgeError(f"{folder / MODEL_FILE}: missing; the bundle is incomplete")
    try:
        color_mode = str(_require(doc, "color_mode", folder))
        precision = str(_require(doc, "precision", folder))
        if color_mode not in ("rgb", "y"):
            raise SrEdgeError(f"{folder}: manifest colour mode {color_mode!r} is not 'rgb' or 'y'")
        if precision not in ("fp32", "fp16", "int8"):
            raise SrEdgeError(f"{folder}: manifest precision {precision!r} is not fp32, fp16 or int8")
        return Bundle(
            path=folder,
            model=str(_require(doc, "model", folder)),
            family=str(doc.get("family", "")),
            scale=int(_require(doc, "scale", folder)),
            color_mode=color_mode,  # type: ignore[arg-type]  # checked above
            channels=int(_require(doc, "channels", folder)),
            opset=int(_require(doc, "opset", folder)),
            precision=precision,  # type: ignore[arg-type]  # checked above
            input=TensorSpec.from_json(_require(doc, "input", folder)),
            output=TensorSpec.from_json(_require(doc, "output", folder)),
            manifest=doc,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SrEdgeError(f"{folder}: malformed manifest ({one_line(str(e))}); re-export the bundle") from None


def find_bundles(root: str | os.PathLike[str]) -> list[Path]:
    """Every bundle folder under ``root`` (sorted), e.g. the committed ``export/`` tree."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p.parent for p in base.rglob(MANIFEST) if p.is_file())


def metadata_props(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The manifest's facts as ONNX ``metadata_props`` (strings; nested records as JSON).

    ``files`` is left out: a file cannot hold its own hash.
    """
    out: dict[str, str] = {}
    for key, value in manifest.items():
        if key == "files":
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[METADATA_PREFIX + key] = text
    return out
